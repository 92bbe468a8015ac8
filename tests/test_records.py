"""The files runs, sweeps and reports share (jaxreg/records.py), and the layout of the
sweep and report packages: one status roll-up whoever reads a sweep, the report's
analysis as a notebook API, no import circles, help texts for users."""

import ast
import dataclasses
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxreg import records
from jaxreg.report import analyse, load_sweep, write_report
from jaxreg.sweep import local, parse_axes, prepare, slurm
from tests.conftest import ROOT, python_env, tiny_config
from tests.test_report import SEEDS, _confusion, _summary, _val, make_sweep

AXES = ["reg.l2=0,1e-3,1e-2", "seed=0,1"]


def _sweep_dir(root: Path) -> tuple[Path, dict]:
  """A planned 6-run sweep whose runs are in every state a run directory can hold
  (nothing is trained): run name -> the status each reader must see."""
  config = tiny_config()
  axes = parse_axes(AXES, config)
  runs, meta = prepare(config, root, axes)
  names = [r.name for r in runs]
  done = _summary([[9, 1], [2, 8]], 0.9)
  done["test"]["class_names"] = ["a", "b"]
  for name in names:
    (root / name).mkdir()
  expect = {}
  # done: a summary that reads
  records.write_summary(root / names[0], done)
  expect[names[0]] = "done"
  # a SLURM task's diverged run and a failed one: outcome.json
  records.write_outcome(root / names[1], "diverged", "TrainingDiverged: loss is nan")
  expect[names[1]] = "diverged"
  records.write_outcome(root / names[2], "error", "ValueError: boom")
  expect[names[2]] = "error"
  # killed while writing an old-style summary: not done
  (root / names[3] / records.SUMMARY_FILE).write_text('{"best_step": 3, "test": {"ac')
  expect[names[3]] = "pending"
  # sweep.json says done but the summary was deleted: train again
  meta["runs"][4]["status"] = "done"
  expect[names[4]] = "pending"
  # the local launcher recorded a divergence in sweep.json only
  meta["runs"][5].update(status="diverged", error="TrainingDiverged: loss is inf")
  expect[names[5]] = "diverged"
  records.write_sweep(root, meta)
  return root, expect


class _Recorder:
  """An executor that trains nothing: it records which runs it was given."""

  def __init__(self):
    self.given = []

  def execute(self, runs, on_done):
    self.given += [r.name for r in runs]


def test_every_reader_sees_the_same_status_of_each_run(tmp_path):
  # One roll-up (records.roll_up) for the local launcher, SLURM's collect and the
  # report: before it existed the three disagreed (collect read outcome.json, the
  # local launcher did not and retrained a run a SLURM task saw diverge, the report
  # counted a half-written summary as done).
  root, expect = _sweep_dir(tmp_path / "s")
  report_sees = {r.name: r.status for r in load_sweep(root).runs}
  assert report_sees == expect
  counts = slurm.collect(root, out=open(os.devnull, "w"))
  collected = {e["name"]: e["status"] for e in records.read_sweep(root)["runs"]}
  assert collected == expect
  assert counts == {"done": 1, "diverged": 2, "error": 1, "pending": 2}
  rows = {r["run"]: r for r in records.read_runs_csv(root / records.RUNS_FILE)}
  assert {n: r["status"] for n, r in rows.items()} == \
      {n: s for n, s in expect.items() if s != "pending"}
  assert rows[list(expect)[1]]["error"] == "TrainingDiverged: loss is nan"
  # the local launcher trains exactly the runs that are neither done nor diverged
  executor = _Recorder()
  config = tiny_config()
  local.run_sweep(config, root, parse_axes(AXES, config), executor=executor,
                  out=open(os.devnull, "w"))
  assert sorted(executor.given) == sorted(n for n, s in expect.items()
                                          if s in ("pending", "error"))
  # ... and forgets their old failures before training them
  after = {e["name"]: e for e in records.read_sweep(root)["runs"]}
  failed = list(expect)[2]
  assert after[failed]["status"] == "pending" and "error" not in after[failed]
  assert not (root / failed / records.OUTCOME_FILE).exists()


class _FakeGroups:
  """An executor that trains nothing: the first two runs 'train' as a group of 2 (one
  finishes, one fails), the rest alone, as the real executors report them."""

  def execute(self, runs, on_done):
    group = {"kind": "group", "size": 2, "why": "probe: a group was faster"}
    for i, run in enumerate(runs):
      executor = group if i < 2 else {"kind": "alone", "size": 1, "why": "asked"}
      if i == 1:
        on_done(run, local.Outcome("error", error="ValueError: boom", executor=executor))
        continue
      summary = _summary([[9, 1], [2, 8]], 0.9)
      summary["test"]["class_names"] = ["a", "b"]
      summary["executor"] = executor
      run.workdir.mkdir(parents=True, exist_ok=True)
      records.write_summary(run.workdir, summary)
      on_done(run, local.Outcome("done", summary=summary))


def test_sweep_json_and_runs_csv_record_how_each_run_was_trained(tmp_path):
  # Issue 15: a vmapped member is not bit-identical to its run alone, so the sweep's
  # records say how each run was trained (group of K or alone, and why), failed runs
  # included, and the SLURM roll-up keeps it.
  config = tiny_config()
  root = tmp_path / "s"
  axes = parse_axes(["seed=0,1,2"], config)
  local.run_sweep(config, root, axes, executor=_FakeGroups(), out=open(os.devnull, "w"))
  names = [e["name"] for e in records.read_sweep(root)["runs"]]
  want = [("group", 2, "probe: a group was faster"),
          ("group", 2, "probe: a group was faster"), ("alone", 1, "asked")]
  for _ in range(2):  # as the local launcher wrote them, then after SLURM's collect
    entries = records.read_sweep(root)["runs"]
    assert [(e["executor"]["kind"], e["executor"]["size"], e["executor"]["why"])
            for e in entries] == want
    rows = records.read_runs_csv(root / records.RUNS_FILE)
    assert [r["run"] for r in rows] == names
    assert [(r["status"], r["executor"], r["executor_size"]) for r in rows] == \
        [("done", "group", "2"), ("error", "group", "2"), ("done", "alone", "1")]
    slurm.collect(root, out=open(os.devnull, "w"))


def test_slurm_submission_resubmits_only_unfinished_runs(tmp_path, monkeypatch):
  # A stand-in sbatch on PATH records its arguments and answers a job id.
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  calls = tmp_path / "calls.jsonl"
  sbatch = bin_dir / "sbatch"
  sbatch.write_text(textwrap.dedent(f"""\
      #!{sys.executable}
      import json, sys
      with open({str(calls)!r}, "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
      print("4242")
      """))
  sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  root, expect = _sweep_dir(tmp_path / "s")
  config = tiny_config()
  out = open(os.devnull, "w")
  got = slurm.submit(config, root, parse_axes(AXES, config), out=out)
  names = list(expect)
  retried = [i for i, n in enumerate(names) if expect[n] in ("pending", "error")]
  assert got == {"array": "4242", "collect": "4242", "indices": retried}
  array_args = json.loads(calls.read_text().splitlines()[0])
  assert f"--array={','.join(map(str, retried))}" in array_args
  entries = {e["name"]: e for e in records.read_sweep(root)["runs"]}
  for i in retried:  # resubmitted runs forget their old failure
    assert entries[names[i]]["status"] == "pending"
    assert not (root / names[i] / records.OUTCOME_FILE).exists()
  assert (root / names[1] / records.OUTCOME_FILE).exists()  # diverged: kept
  again = slurm.submit(config, root, parse_axes(AXES, config), retry_diverged=True,
                       out=out)
  assert again["indices"] == sorted(retried + [1, 5])


# ------------------------------------------------------ the analysis, from Python


@pytest.fixture(scope="module")
def l2_sweep(tmp_path_factory):
  root = tmp_path_factory.mktemp("nb") / "wd"
  return make_sweep(root, {"reg.weight_decay": [0.0, 1e-4, 1e-3, 1e-2], "seed": SEEDS},
                    _confusion, _val)


def _tree(path: Path) -> dict:
  return {p.relative_to(path).as_posix(): p.stat().st_mtime_ns
          for p in sorted(path.rglob("*"))}


def test_analyse_is_a_frozen_result_of_arrays_that_writes_nothing(l2_sweep):
  before = _tree(l2_sweep)
  result = analyse(load_sweep(l2_sweep), axis="reg.weight_decay", baseline=1e-4)
  assert _tree(l2_sweep) == before
  with pytest.raises(dataclasses.FrozenInstanceError):
    result.baseline = 0.0
  assert result.baseline == 1e-4 and result.values == [0.0, 1e-4, 1e-3, 1e-2]
  assert list(result.changes) == [0.0, 1e-3, 1e-2]
  change = result.changes[1e-2]
  # ABBR (class 2): 9 of 9 at 1e-4 in four seeds and 8 in one, against 1, 2, 1, 2, 1
  assert isinstance(change.delta, np.ndarray) and change.delta.shape == (3,)
  assert change.delta[2] == pytest.approx((7 - 44) / 45)
  assert change.drop.tolist() == [False, False, True] and change.paired == 5
  assert result.level(1e-2).accuracy.mean[2] == pytest.approx(7 / 45)
  assert result.chosen == 1e-3 and result.class_names == ("big_a", "big_b", "ABBR")
  # the text form of the baseline (as --baseline takes it) is the same analysis
  same = analyse(load_sweep(l2_sweep), axis="reg.weight_decay", baseline="1e-4")
  np.testing.assert_array_equal(same.changes[1e-2].p_adjusted, change.p_adjusted)


def test_the_tables_are_the_reports_csv_files(l2_sweep, tmp_path):
  result = analyse(load_sweep(l2_sweep), reps=500)
  write_report(l2_sweep, reps=500)
  for table, name in ((result.change_table(), "per_class_change.csv"),
                      (result.accuracy_table(), "per_class_accuracy.csv")):
    csv_rows = records.read_runs_csv(l2_sweep / "report" / name)  # any CSV reads
    assert len(table) == len(csv_rows)
    for row, csv_row in zip(table, csv_rows):
      assert list(row) == list(csv_row)
      for key, value in row.items():
        if isinstance(value, (float, np.floating)) and not np.isfinite(value):
          assert csv_row[key] == ""
        elif isinstance(value, (float, np.floating)):
          assert float(csv_row[key]) == value
        elif isinstance(value, (bool, np.bool_)):
          assert csv_row[key] == ("true" if value else "false")
        else:
          assert csv_row[key] == str(value)
  try:
    import pandas  # noqa: F401 - optional: not a jaxreg dependency
  except ImportError:
    with pytest.raises(ImportError, match="needs pandas.*change_table"):
      result.to_frame("change")
  else:
    frame = result.to_frame("change")
    assert list(frame.columns) == list(result.change_table()[0])
    assert len(frame) == len(result.change_table())


def _python(*args, site: str = "", tmp_path: Path | None = None):
  """`python ARGS` in a fresh process on this checkout; `site`: the text of a
  sitecustomize.py (written to tmp_path) that runs before it."""
  env = python_env()
  if site:
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(site))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_importing_the_report_changes_no_plotting_state_and_loads_no_jax():
  # the stored backend setting is read raw: resolving it would import pyplot itself
  probe = _python("-c", textwrap.dedent("""\
      import sys, matplotlib
      raw = lambda: dict.__getitem__(matplotlib.rcParams, "backend")
      backend = raw()
      import jaxreg.report, jaxreg.sweep, jaxreg.records
      print(backend == raw(), "matplotlib.pyplot" in sys.modules, "jax" in sys.modules)
      """))
  assert probe.stdout.split() == ["True", "False", "False"], probe.stderr[-2000:]


# ----------------------------------------------------------------- the layout


def _imports(path: Path, files) -> set[str]:
  """The jaxreg modules the module at `path` imports, anywhere in its body
  (`from a import b` imports a.b when that is a module, else a)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                else node.module for a in node.names}
  return found & files.keys()


def import_graph() -> dict[str, set[str]]:
  """jaxreg's modules -> the jaxreg modules each imports (a package: its __init__)."""
  files = {}
  for path in sorted((ROOT / "jaxreg").rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    files[name] = path
  graph = {}
  for name, path in files.items():
    graph[name] = set()
    for m in _imports(path, files):
      # importing a.b.c runs a/__init__ and a/b/__init__ first, unless the importer
      # is inside that package (then it is being initialized already)
      parts = m.split(".")
      graph[name] |= {p for p in (".".join(parts[:i]) for i in range(2, len(parts) + 1))
                      if p in files and not name.startswith(p + ".")}
    graph[name].discard(name)
  return graph


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
  """The groups of modules that import each other (strongly connected components
  of more than one module, Tarjan's algorithm)."""
  index, low, on_stack, stack, found = {}, {}, set(), [], []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for nxt in graph.get(node, ()):
      if nxt not in index:
        visit(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in on_stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      group = set()
      while True:
        member = stack.pop()
        on_stack.discard(member)
        group.add(member)
        if member == node:
          break
      if len(group) > 1:
        found.append(group)

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return found


KNOWN_CYCLES: set = set()  # (the data layer's images <-> tfds_images went with issue 15)


def test_no_import_circle_in_jaxreg():
  graph = import_graph()
  assert "jaxreg.sweep.slurm" in graph and "jaxreg.report.analysis" in graph
  assert [c for c in import_cycles(graph) if frozenset(c) not in KNOWN_CYCLES] == []
  # the records module is a low floor: the trainer imports it, it imports no sweep
  assert "jaxreg.records" in graph["jaxreg.train.evaluation"]
  assert not {m for m in graph["jaxreg.records"] if m.startswith(("jaxreg.sweep",
                                                                  "jaxreg.report"))}


def test_cycles_are_found():  # the check above can fail
  assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == \
      [{"a", "b", "c"}]


def test_only_records_spells_the_names_of_its_files():
  # records.py alone knows the shared files' names: a module that writes its own
  # "summary.json" would silently disagree with the readers if the name changed.
  names = {records.SUMMARY_FILE, records.PREDICTIONS_FILE, records.OUTCOME_FILE,
           records.SWEEP_FILE, records.RUNS_FILE}
  found = []
  for path in sorted((ROOT / "jaxreg").rglob("*.py")):
    if path.name == "records.py":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Constant) and isinstance(node.value, str) \
          and any(node.value in (n, f"/{n}") or node.value.startswith(f"/{n})")
                  for n in names):  # a path, not a name in a sentence
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
  assert found == []


PROJECT_PACKAGES = ("jaxreg", "bench", "tests", "configs")


def private_uses(path: Path) -> list[str]:
  """Where the file at `path` reaches a private name (`_x`, not dunder) of another
  module of the project: `from M import _x`, or `m._x` for a module `m` it imports.
  (A leading underscore means: only this module relies on it.)"""
  tree = ast.parse(path.read_text())
  ours = lambda module: (module or "").split(".")[0] in PROJECT_PACKAGES  # noqa: E731
  private = lambda name: name.startswith("_") and not name.startswith("__")  # noqa: E731
  modules, found = set(), []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      modules |= {a.asname or a.name.split(".")[0] for a in node.names if ours(a.name)}
    elif isinstance(node, ast.ImportFrom) and (ours(node.module) or node.level):
      for a in node.names:
        if private(a.name):
          found.append(f"{path.name}:{node.lineno}: from {node.module} import {a.name}")
        modules.add(a.asname or a.name)  # a module or not: `x._y` is private either way
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and private(node.attr) \
        and isinstance(node.value, ast.Name) and node.value.id in modules:
      found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
  return sorted(found, key=lambda u: int(u.split(":")[1]))


def test_no_module_uses_another_modules_private_names():
  files = [p for d in ("jaxreg", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
  assert len(files) > 50
  assert [u for f in files for u in private_uses(f)] == []


def test_private_uses_are_found(tmp_path):  # the check above can fail
  f = tmp_path / "m.py"
  f.write_text("from jaxreg import train\nfrom jaxreg.train import loop as L\n"
               "from tests.test_group import _data\nimport os\n"
               "train._helper()\nL._Loop\nos._exit(0)\nself._x\n")
  assert private_uses(f) == ["m.py:3: from tests.test_group import _data",
                             "m.py:5: train._helper", "m.py:6: L._Loop"]


@pytest.mark.parametrize("module", ["jaxreg.sweep", "jaxreg.report", "jaxreg.slurm"])
def test_a_command_loads_each_of_its_modules_once(module, tmp_path):
  # `python -m jaxreg.sweep` used to run sweep.py as __main__ and import it again as
  # jaxreg.sweep (through slurm.py): two SweepError classes in one process.
  proc = _python("-m", module, "--help", tmp_path=tmp_path, site="""\
      import atexit, sys
      def _report():
        files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
        files = [f for f in files if f and "jaxreg" in f]
        sys.stderr.write("TWICE " + repr(sorted({f for f in files
                                                 if files.count(f) > 1})) + "\\n")
      atexit.register(_report)
      """)
  assert proc.stdout.startswith(("python -m", "usage:")), proc.stderr[-2000:]
  assert "TWICE []" in proc.stderr, proc.stderr[-2000:]


DEVELOPER_NOTES = ("contract", "executors to come", "jaxreg/", "EXECUTORS", "`plan_lines`",
                   "train_and_evaluate", "Flags only", "orbax", "README")


@pytest.mark.parametrize("module,names,flag_names", [
    ("jaxreg.main", ["summary.json", "checkpoint", "resume", "--config.KEY",
                     "python -m jaxreg.config", "Exit codes", "--coordinator_address"],
     ["--workdir", "--config"]),
    ("jaxreg.sweep", ["sweep.json", "runs.csv", "--axis", "--executor", "resume"],
     ["--workdir", "--axis"]),
    ("jaxreg.report", ["report.md", "--baseline", "--plan", "calibrate", "analyse"],
     ["--workdir", "--axis"]),
    ("jaxreg.evaluate", ["eval/", "--checkpoint", "while"],
     ["--workdir", "--split", "--checkpoint"]),
    ("jaxreg.config", ["--changed", "--markdown", "doc"], ["--config", "--[no]changed"]),
])
def test_help_is_written_for_users(module, names, flag_names):
  # What the command does and how to use it, with no notes for jaxreg's developers
  # (module names, the code's contracts, another document's section).
  proc = _python("-m", module, "--help")
  intro, flags_part = proc.stdout.split("\nflags:")  # absl's --help exits 1
  for flag in flag_names:
    assert f"{flag}:" in flags_part, flag
  assert intro.startswith(f"python -m {module} ")
  for name in names:
    assert name in intro, name
  for note in DEVELOPER_NOTES:
    assert note not in intro, note


def test_the_executor_flag_lists_every_executor():
  # (in a fresh process: the CLI's flags would clash with another command's here)
  proc = _python("-m", "jaxreg.sweep", "--help")
  assert f"--executor: <{'|'.join(sorted(local.EXECUTORS))}>:" in proc.stdout


# ------------------------------------------------------ tables people load


_ODD_CLASSES = ["A/B", "x,y", 'say "hi"']


def _finished_sweep(root: Path, optim: str) -> tuple[Path, dict]:
  """A 2-run sweep over reg.l2 (seed fixed at 7, `optim.name` fixed) whose runs
  finished with classes whose names hold '/', ',' and quotes; nothing is trained."""
  config = tiny_config(**{"seed": 7, "optim.name": optim})
  runs, meta = prepare(config, root, parse_axes(["reg.l2=0,1e-3"], config))
  summaries = {}
  for i, run in enumerate(runs):
    s = _summary([[9 - i, 1 + i, 0], [2, 8, 0], [0, 1, 3 + i]], 0.9)
    s["test"]["class_names"] = list(_ODD_CLASSES)
    summaries[run.name] = s
  for entry in meta["runs"]:
    entry["status"] = "done"
  records.write_status(root, meta, summaries)
  return root, summaries


def test_runs_csv_carries_every_config_key_and_per_class_csv_is_long(tmp_path):
  # Issue 16 item 6: runs.csv held only the swept columns, so the fixed
  # --config.optim.name of a sweep was lost once two sweeps' tables were concatenated;
  # a class named 'A/B' gave a column 'test_acc/A/B'. Read with pandas, as users do.
  import pandas as pd
  sgd, summaries = _finished_sweep(tmp_path / "sgd", "sgd")
  adam, _ = _finished_sweep(tmp_path / "adam", "adam")
  runs = pd.concat([pd.read_csv(d / records.RUNS_FILE) for d in (sgd, adam)])
  assert list(runs["config.optim.name"]) == ["sgd", "sgd", "adam", "adam"]
  assert list(runs["config.seed"]) == [7] * 4
  assert list(runs["config.reg.l2"]) == list(runs["reg.l2"]) == [0.0, 1e-3] * 2
  # every key of the resolved config, after the columns older readers know
  flat = records.run_config(records.read_sweep(sgd)["base_config"], {})
  header = list(pd.read_csv(sgd / records.RUNS_FILE).columns)
  first_config = header.index("config." + next(iter(flat)))
  assert header[first_config:] == ["config." + k for k in flat]
  # older readers see the columns they knew, in their order: the config is appended
  assert header[:first_config] == records.runs_table(
      records.read_sweep(sgd)["runs"], ["reg.l2"], summaries)[0]
  assert header[:3] == ["run", "status", "reg.l2"]
  assert header[first_config - 2 * len(_ODD_CLASSES):first_config] == \
      [f"test_acc/{c}" for c in _ODD_CLASSES] + [f"test_count/{c}" for c in _ODD_CLASSES]

  per_class = pd.read_csv(sgd / records.PER_CLASS_FILE)
  assert list(per_class.columns) == ["run", "reg.l2", "seed", "split", "class_index",
                                     "class", "n", "correct", "accuracy"]
  assert len(per_class) == 2 * len(_ODD_CLASSES)
  assert list(per_class["class"]) == _ODD_CLASSES * 2  # each name one value, as given
  second = per_class[per_class["reg.l2"] == 1e-3].set_index("class")
  assert second.loc["A/B", "n"] == 10 and second.loc["A/B", "correct"] == 8
  assert second.loc['say "hi"', "correct"] == 4 and second.loc['say "hi"', "n"] == 5
  assert second.loc["x,y", "accuracy"] == pytest.approx(0.8)
  assert set(per_class["seed"]) == {7} and set(per_class["split"]) == {"test"}

"""The notebook API (jaxreg/notebook.py, docs/notebook.md): docs/notebook.md's example
runs as written, and what it returns equals the files the commands write (runs.csv,
per_class.csv, summary.json, the report's per_class_change.csv) and the run the CLI
trains."""

import csv
import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jaxreg import config as config_lib, notebook, records
from tests.conftest import ROOT, python_env
from tests.test_sweep import RUNS, tiny_sweep  # noqa: F401 (the shared session fixture)

DOC = ROOT / "docs" / "notebook.md"


def _doc_code() -> str:
  blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
  assert blocks, "docs/notebook.md has no python example"
  return "\n".join(blocks)


def _number(text: str):
  """A runs.csv / per_class.csv cell as the value it spells ('' -> NaN)."""
  if text == "":
    return math.nan
  if text in ("true", "false"):
    return text == "true"
  try:
    return float(text)
  except ValueError:
    return text


def _same(frame_value, text: str) -> bool:
  want = _number(text)
  if isinstance(want, float):
    got = float(frame_value)
    return (math.isnan(got) and math.isnan(want)) or got == want
  if isinstance(want, bool):
    return bool(frame_value) is want or str(frame_value).lower() == text
  return str(frame_value) == want


def _assert_frame_equals_csv(frame: pd.DataFrame, path):
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
    header = next(csv.reader(open(path, newline="")))
  assert list(frame.columns) == header
  assert len(frame) == len(rows)
  for i, row in enumerate(rows):
    for col in header:
      assert _same(frame.iloc[i][col], row[col]), (path.name, i, col, frame.iloc[i][col],
                                                    row[col])


def test_import_jaxreg_loads_no_jax_and_no_pandas():
  code = ("import sys, jaxreg\n"
          "assert callable(jaxreg.fit) and callable(jaxreg.load_sweep)\n"
          "heavy = {m.split('.')[0] for m in sys.modules} & "
          "{'jax', 'jaxlib', 'flax', 'pandas', 'tensorflow', 'scipy'}\n"
          "print(sorted(heavy))\n")
  out = subprocess.run([sys.executable, "-c", code], env=python_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"
  with pytest.raises(AttributeError, match="no attribute 'fitt'"):
    import jaxreg
    jaxreg.fitt  # noqa: B018


def test_bad_key_or_config_is_one_line_and_writes_nothing(tmp_path):
  workdir = tmp_path / "never"
  with pytest.raises(config_lib.ConfigError, match=r"'reg\.l3' \(did you mean reg\.l2\?\)"):
    notebook.fit("lstm:tiny", workdir, reg__l3=1e-3)
  with pytest.raises(config_lib.ConfigError, match="not one of"):
    notebook.fit("lstm:tiny", workdir, **{"optim.name": "adamx"})
  with pytest.raises(config_lib.ConfigError, match="packaged configs"):
    notebook.load_config("lsmt:tiny")
  with pytest.raises(config_lib.ConfigError, match="variant 'tinyy'"):
    notebook.load_config("lstm:tinyy")
  assert not workdir.exists()
  # Both spellings of a dotted key set it; the file's own variants and defaults hold.
  c = notebook.load_config("lstm:tiny", reg__l2=1e-3, **{"optim.learning_rate": 0.5})
  assert (c.reg.l2, c.optim.learning_rate, c.train.epochs) == (1e-3, 0.5, 2)


def test_loading_what_is_not_a_run_or_sweep_says_so(tmp_path):
  with pytest.raises(FileNotFoundError, match="sweep.json"):
    notebook.load_sweep(tmp_path)
  with pytest.raises(FileNotFoundError, match="config.json"):
    notebook.load_run(tmp_path)


@pytest.mark.slow
def test_the_documented_example_runs_and_equals_the_files(tiny_sweep, tmp_path,
                                                          monkeypatch):
  # The example's sweep is tests/test_sweep.py's (reg.l2 = 0, 1e-2 x seed = 0, 1, the
  # CLI with --executor=sequential): a copy of it makes run_sweep resume a finished
  # sweep, which must plan exactly the CLI's runs (else it refuses the directory).
  shutil.copytree(tiny_sweep, tmp_path / "runs" / "nb_sweep")
  before = (tmp_path / "runs" / "nb_sweep" / records.RUNS_FILE).read_bytes()
  monkeypatch.chdir(tmp_path)
  scope = {}
  exec(compile(_doc_code(), str(DOC), "exec"), scope)  # noqa: S102 - our own docs
  sweep_dir = tmp_path / "runs" / "nb_sweep"
  assert (sweep_dir / records.RUNS_FILE).read_bytes() == before  # nothing retrained

  # fit: the run the CLI sweep trained alone with the same config (reg.l2=1e-2, seed 0).
  summary, cli_summary = scope["summary"], records.read_summary(sweep_dir / RUNS[2])
  assert summary == records.read_summary(tmp_path / "runs" / "nb_run")
  for split in ("val", "test"):
    assert summary[split] == cli_summary[split], split

  # load_run: per-class rows are summary.json's, in class order.
  run = scope["run"]
  test = summary["test"]
  pc = run.per_class.sort_values("class_index")
  assert list(pc["class"]) == test["class_names"]
  assert np.allclose(pc["accuracy"], test["per_class_accuracy"], rtol=0, atol=0)
  assert list(pc["n"]) == test["per_class_count"]
  assert list(pc["correct"]) == list(np.diag(test["confusion_matrix"]))
  assert (pc["seed"] == 0).all() and (pc["split"] == "test").all()
  assert list(scope["worst_first"]["accuracy"]) == sorted(test["per_class_accuracy"])
  assert len(scope["curves"]) == summary["epochs_completed"]
  # predict: jaxreg.inference's probabilities, argmax = predicted.
  probs = scope["probs"]
  assert list(probs.columns) == ["input", "predicted", *test["class_names"]]
  values = probs[test["class_names"]].to_numpy()
  assert np.allclose(values.sum(axis=1), 1.0, atol=1e-5)
  assert list(probs["predicted"]) == [test["class_names"][i] for i in values.argmax(1)]

  # load_sweep: the DataFrames are runs.csv and per_class.csv cell for cell ...
  sweep = scope["sweep"]
  _assert_frame_equals_csv(scope["runs"], sweep_dir / records.RUNS_FILE)
  _assert_frame_equals_csv(scope["per_class"], sweep_dir / records.PER_CLASS_FILE)
  # ... and their numbers are the runs' summary.json.
  for name in RUNS:
    s = records.read_summary(sweep_dir / name)
    row = scope["runs"].set_index("run").loc[name]
    assert row["test_accuracy"] == s["test"]["accuracy"]
    rows = scope["per_class"].query("run == @name").sort_values("class_index")
    assert list(rows["accuracy"]) == s["test"]["per_class_accuracy"]
    assert row[f"test_acc/{s['test']['class_names'][0]}"] == \
        s["test"]["per_class_accuracy"][0]
  assert scope["table"].shape == (len(test["class_names"]), 2)

  # analyse: the report's per_class_change.csv and per_class_accuracy.csv, row by row.
  from jaxreg import report
  report.write_report(sweep_dir, axis="reg.l2", baseline="0")
  for frame, name in ((scope["change"], "per_class_change.csv"),
                      (scope["accuracy"], "per_class_accuracy.csv")):
    written = pd.read_csv(sweep_dir / "report" / name, converters={"class": str})
    assert list(frame.columns) == list(written.columns), name
    assert len(frame) == len(written) == (
        len(test["class_names"]) * (1 if name == "per_class_change.csv" else 2)
        + (0 if name == "per_class_change.csv" else 2 * len(report.analysis.METRICS)))
    for col in frame.columns:
      mine, theirs = frame[col], written[col]
      if pd.api.types.is_numeric_dtype(theirs) and not pd.api.types.is_bool_dtype(theirs):
        mine = pd.to_numeric(mine.replace("", np.nan))  # '': the CSV's empty cell
        assert np.allclose(mine.astype(float), theirs, rtol=1e-6, equal_nan=True), \
            (name, col)
      else:
        assert [str(x) for x in mine] == [str(x) for x in theirs], (name, col)
  # The flags are the analysis's own (two seeds: nothing can be flagged).
  assert scope["flagged"].empty and scope["change"]["p"].isna().all()


def test_run_sweep_takes_an_upstream_sweep_as_the_cli_does(tmp_path):
  # the same check as `jaxreg.sweep --upstream`: a directory that is no sweep is named,
  # and nothing is written (the training path itself: tests/test_upstream_sweep.py)
  from jaxreg.sweep import SweepError
  with pytest.raises(SweepError, match="nope"):
    notebook.run_sweep("lstm:tiny", tmp_path / "down", {"seed": [0]},
                       upstream=tmp_path / "nope")
  assert not (tmp_path / "down").exists()

"""The Python API for notebooks (docs/notebook.md): train, sweep, load, analyse, with
pandas DataFrames back. `import jaxreg` exposes these names lazily, so importing jaxreg
stays cheap (no jax, no pandas) until one is used:

  import jaxreg
  summary = jaxreg.fit("lstm:tiny", "runs/nb", **{"reg.l2": 1e-3})   # summary.json
  run = jaxreg.load_run("runs/nb")          # .summary, .per_class, .metrics, .predict()
  sweep = jaxreg.run_sweep("lstm:tiny", "runs/nb_sweep",
                           axes={"reg.l2": [0.0, 1e-2], "seed": [0, 1]})
  sweep.runs, sweep.per_class               # runs.csv, per_class.csv as DataFrames
  result = sweep.analyse(axis="reg.l2")     # the report's analysis (jaxreg.report)
  result.to_frame("change")                 # per-class change, 95% CI, p, flags

(`jaxreg.train`, `jaxreg.sweep` and `jaxreg.report` are the packages that do the work,
hence `fit` and `run_sweep`.) Everything here calls those packages: the trainer, the
sweep launcher, jaxreg/records.py's readers and tables, the report's `analyse` and
jaxreg.inference; this module only puts them behind one short call each.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Mapping

from jaxreg import config as config_lib, configs, records

__all__ = ["Run", "SweepResults", "fit", "load_config", "load_run", "load_sweep",
           "run_sweep"]


# ------------------------------------------------------------------ configs


def _set_overrides(config, overrides: Mapping[str, Any]):
  """A copy of `config` with each dotted key set; `reg__l2` means `reg.l2` (a Python
  keyword cannot hold a dot). ConfigError naming an unknown key and the nearest one."""
  from jaxreg.sweep import config_for  # light (no jax): the sweep's own setter
  dotted = {k.replace("__", "."): v for k, v in overrides.items()}
  for key in dotted:
    message = config_lib.unknown_key(config, key)
    if message:
      raise config_lib.ConfigError(message)
  return config_for(config, dotted)


def load_config(config="lstm", **overrides):
  """The ConfigDict of `config` with `overrides` set: a packaged config's name with an
  optional variant ('lstm', 'lstm:tiny', 'bert:trec'), a config file's path
  ('configs/lstm.py:trec', 'my_config.py'), or a ConfigDict (copied). Validated: a
  bad key or value raises ConfigError with the one line the commands print."""
  if isinstance(config, (str, Path)):
    config = _config_from_file(str(config))
  config = _set_overrides(config, overrides)
  config_lib.validate(config)
  return config


def _config_from_file(spec: str):
  # As --config does (ml_collections' config_flags): the file run as a module, then
  # its get_config(VARIANT). configs.resolve turns a packaged name into its path.
  path, sep, variant = configs.resolve(spec).partition(":")
  if not Path(path).is_file():
    raise config_lib.ConfigError(
        f"config {spec!r}: no such file, and not one of the packaged configs "
        f"({', '.join(configs.names())}){config_lib.missing_file_hint(path)}")
  module_spec = importlib.util.spec_from_file_location("jaxreg_notebook_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(variant) if sep else module.get_config()
  except ValueError as e:  # an unknown variant: the config file's own one line
    raise config_lib.ConfigError(f"config {spec!r}: {e}") from None


# ------------------------------------------------------------------ training


def fit(config, workdir, **overrides) -> dict:
  """Trains `config` (as `load_config` takes it) into `workdir` and returns its
  summary.json as a dict; the same run as `jaxreg train --config=... --workdir=...`
  (call again to resume; a finished run trains no further). Dotted keys:
  `fit("lstm:tiny", d, **{"reg.l2": 1e-3})` or `fit("lstm:tiny", d, reg__l2=1e-3)`."""
  config = load_config(config, **overrides)
  from jaxreg import train  # here: it imports jax
  return train.train_and_evaluate(config, workdir)


def run_sweep(config, workdir, axes: Mapping[str, Any], executor: str = "sequential",
              budget: int = 0, sampler_seed: int = 0, upstream=None,
              **overrides) -> "SweepResults":
  """Trains a sweep and returns it loaded (`load_sweep`), as `jaxreg sweep` would:
  `axes` maps a dotted key to its values, a list (`{"reg.l2": [0, 1e-3]}`) or the
  text --axis takes after `KEY=` (`"loguniform:1e-5,1e-2"`, with `budget` runs of a
  random search); `executor`: one of jaxreg.sweep's (sequential, group, auto);
  `upstream`: an upstream sweep directory, as `--upstream` (one run per finished
  upstream run and point, starting from it; docs/transfer.md). Rerun to resume."""
  from jaxreg.sweep import SweepError, format_value, parse_axes  # light (no jax)
  base = load_config(config, **overrides)
  specs = [f"{key}={values}" if isinstance(values, str)
           else f"{key}={','.join(format_value(v) for v in values)}"
           for key, values in axes.items()]
  from jaxreg.sweep import local  # here: it imports the trainer (jax)
  if executor not in local.EXECUTORS:
    raise SweepError(f"executor={executor!r} is not one of: "
                     f"{', '.join(local.EXECUTORS)}")
  from jaxreg.sweep.plan import load_upstream
  local.run_sweep(base, workdir, parse_axes(specs, base), budget=budget,
                  sampler_seed=sampler_seed, executor=local.EXECUTORS[executor](),
                  upstream=None if upstream is None else load_upstream(upstream))
  return load_sweep(workdir)


# ------------------------------------------------------------------ reading


def _pandas():
  import pandas as pd  # here: `import jaxreg` stays light
  return pd


def _read_table(path_or_text, text_columns):
  """A CSV of records.py (a path, or the text) as a DataFrame: `text_columns` (run and
  class names) stay strings even when they look like numbers or like 'NA'; other
  empty cells are NaN."""
  import io as stdio
  source = stdio.StringIO(path_or_text) if isinstance(path_or_text, str) else path_or_text
  return _pandas().read_csv(source, converters={c: str for c in text_columns})


@dataclasses.dataclass(frozen=True)
class SweepResults:
  """A sweep directory written by `jaxreg sweep` or `run_sweep`, read (nothing is
  written): `runs` (runs.csv) and `per_class` (per_class.csv) as DataFrames, `meta`
  (sweep.json) and `analyse` (the report's analysis)."""
  workdir: Path
  meta: dict

  @property
  def runs(self):
    """runs.csv: one row per finished or failed run (docs/sweeps.md lists the
    columns), the whole resolved config in its `config.*` columns."""
    return _read_table(self.workdir / records.RUNS_FILE, ["run", "error"])

  @property
  def per_class(self):
    """per_class.csv: one row per finished run and test class (run, the axis values,
    seed, split, class_index, class, n, correct, accuracy)."""
    return _read_table(self.workdir / records.PER_CLASS_FILE, ["run", "class"])

  def analyse(self, axis: str | None = None, baseline=None, **options):
    """The report's analysis (jaxreg.report.analyse; `options`: fix, correction,
    alpha, reps, seed, null_split), a frozen result: `.to_frame("change")` is the
    per-class change with its 95% interval, p-values and flags (the report's
    per_class_change.csv), `.to_frame("accuracy")` each class's accuracy per value."""
    from jaxreg import report  # here: scipy
    return report.analyse(report.load_sweep(self.workdir), axis=axis,
                          baseline=baseline, **options)


def load_sweep(workdir) -> SweepResults:
  """The sweep in `workdir`; FileNotFoundError when it holds no sweep.json. The
  statuses are those of runs.csv, written when the sweep last ran."""
  workdir = Path(workdir)
  meta = records.read_sweep(workdir)
  if meta is None:
    raise FileNotFoundError(f"{workdir / records.SWEEP_FILE} not found: not a "
                            "directory written by jaxreg sweep")
  return SweepResults(workdir, meta)


@dataclasses.dataclass(frozen=True)
class Run:
  """A run directory written by `jaxreg train`, `fit` or a sweep, read: `summary`
  (summary.json: None while the run has not finished), `per_class` and `metrics` as
  DataFrames, `config` and `predict` (the trained model, from the workdir alone)."""
  workdir: Path
  summary: dict | None

  @property
  def per_class(self):
    """The test classes as a sweep's per_class.csv gives them (run, seed, split,
    class_index, class, n, correct, accuracy); worst first: `.sort_values("accuracy")`."""
    name = self.workdir.name
    summaries = {name: self.summary} if self.summary else {}
    configs = {name: records.run_config(records.read_config(self.workdir) or {}, {})}
    header, rows = records.per_class_table([{"name": name, "values": {}}], [],
                                           summaries, configs)
    return _read_table(records.csv_text(header, rows), ["run", "class"])

  @property
  def metrics(self):
    """metrics.jsonl: one row per logged record (train steps and evaluations)."""
    from jaxreg import logs  # here: it imports jax
    return _pandas().DataFrame(logs.MetricsLog(self.workdir / logs.METRICS_FILE).read())

  @property
  def config(self):
    """The run's resolved ConfigDict (config.json over the current defaults)."""
    from jaxreg.train import workdir as workdir_lib  # here: it imports jax
    return workdir_lib.run_config(self.workdir)

  def predictor(self, checkpoint: str = "best"):
    """jaxreg.inference's Predictor of the checkpoint ('best', 'latest' or a step)."""
    from jaxreg import inference  # here: it imports jax
    return inference.load(self.workdir, checkpoint)

  def predict(self, items, checkpoint: str = "best"):
    """Class probabilities of `items` (texts, or image paths for an image run),
    preprocessed as in training: a DataFrame with `input`, `predicted` and one
    column per class, in input order."""
    from jaxreg import inference  # here: it imports jax
    p = self.predictor(checkpoint)
    items = [items] if isinstance(items, (str, Path)) else list(items)
    probs, classes = inference.predict_items(p, items)
    frame = _pandas().DataFrame(probs, columns=p.class_names)
    frame.insert(0, "predicted", [p.class_names[int(c)] for c in classes])
    frame.insert(0, "input", [str(i) for i in items])
    return frame


def load_run(workdir) -> Run:
  """The run in `workdir`; FileNotFoundError when it is not a run directory."""
  workdir = Path(workdir)
  if records.read_config(workdir) is None:
    raise FileNotFoundError(f"{workdir / records.CONFIG_FILE} not found: not a "
                            "directory written by jaxreg train")
  return Run(workdir, records.read_summary(workdir))

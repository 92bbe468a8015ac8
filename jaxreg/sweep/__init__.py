"""Sweeps: many runs of one config over a grid or a random search of its keys.

  axes.py   --axis=KEY=VALUES parsed against the config; values as text
  plan.py   the points, their run names and configs, sweep.json (`prepare`)
  local.py  the local launcher and its executors (one run after another, or vmapped
            groups); imports the trainer
  slurm.py  the SLURM launcher (job arrays; the tasks' commands are jaxreg/slurm.py)
  cli.py    `python -m jaxreg.sweep` (help text in __main__.py)

The files a sweep shares with runs and the report (sweep.json, runs.csv, summary.json,
...) are read and written by jaxreg/records.py. This package imports no jax except
through local.py, so planning, the report and SLURM submission stay light.
"""

from jaxreg.records import read_runs_csv
from jaxreg.sweep.axes import (FOLD_KEY, REPLICATE_KEYS, Axis, SweepError, add_folds,
                               cast_value, display_value, display_values, format_value,
                               load_axes, parse_axes, parse_axis)
from jaxreg.sweep.plan import (Run, config_for, expand, plan, plan_runs,
                               prepare, run_name)

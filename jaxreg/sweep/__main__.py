"""python -m jaxreg.sweep --config=configs/lstm.py[:VARIANT] --workdir=DIR --axis=KEY=VALUES ...

Trains one run per point of a sweep over any config keys. Each run gets its own
directory DIR/<run>, named by its values (e.g. reg.l2=0.001__seed=2), with the outputs
of `python -m jaxreg.main`, so `python -m jaxreg.evaluate --workdir=DIR/<run>` works.
DIR/sweep.json records the plan and each run's status; DIR/runs.csv has one row per
finished or failed run. `python -m jaxreg.report --workdir=DIR` then writes the
per-class report.

  --axis=reg.weight_decay=0,1e-4,1e-3     values, cast to the key's type (grid)
  --axis=optim.learning_rate=loguniform:1e-5:1e-2   with --budget=N (random search)
  --axis=optim.learning_rate=uniform:1e-3:1e-2
  --axis=optim.name=choice:adam,sgd       (a plain list is `choice` in random mode)
  --axis=reg.decay_mask=all;ndim>1        ';' separates values that contain commas

A grid by default (every combination, first axis outermost); `--budget=N` draws N
distinct points instead, seeded by `--sampler_seed` (continuous draws are rounded to 4
significant digits, so a run's name gives its exact value). `--config.KEY=VALUE` sets a
key for every run. `--folds=K` runs every point on each of K folds of the training set
(k-fold validation).

`--upstream=UP_DIR`: one run per finished run of the upstream sweep UP_DIR and point,
each starting from it (model.init_from), its axis values as upstream.KEY columns; the
report's unit of replication is then the upstream run (docs/transfer.md).

Rerun the same command to resume: finished runs are skipped, interrupted ones resume
from their checkpoints, runs that failed with an error are retried, and runs that
diverged are skipped unless `--retry_diverged`. A directory holds one sweep: other axes
or another base config are refused; a random search may be rerun with a larger
--budget to extend it.

`--executor=auto` (the default) trains runs that differ only in continuous
hyperparameters and seed as one vmapped program where a short timing probe says that
is faster; `sequential` never does, `group` always does. `--launcher=slurm` submits the
runs as a SLURM job array instead of training them here.

Exit code 0 when no run failed with an error (a diverged run is a result), 1 otherwise,
2 on bad input.
"""

from absl import flags

from jaxreg.sweep import cli

flags.adopt_module_key_flags(cli)  # --help lists the flags defined in cli.py

if __name__ == "__main__":
  cli.run()

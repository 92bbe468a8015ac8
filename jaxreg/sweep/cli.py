"""The flags and main of `python -m jaxreg.sweep` (the help text is in __main__.py)."""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxreg import cli, preemption
from jaxreg.sweep import slurm
from jaxreg.sweep.axes import SweepError, add_folds, parse_axes
from jaxreg.sweep.plan import load_upstream

EXECUTOR_NAMES = ("auto", "group", "sequential")  # = sorted(local.EXECUTORS)
LAUNCHERS = ("local", "slurm")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally :VARIANT (see configs/); "
    "--config.KEY=VALUE sets a key for every run.", lock_config=True)
flags.DEFINE_string("workdir", None, "Sweep directory: sweep.json, runs.csv and one "
                    "subdirectory per run.")
flags.DEFINE_multi_string(
    "axis", [], "KEY=V1,V2,... or KEY=loguniform:LO:HI | uniform:LO:HI | "
    "choice:A,B (repeat for more axes).")
flags.DEFINE_integer("budget", 0, "Random search: this many points (0: grid).")
flags.DEFINE_integer("sampler_seed", 0, "Seed of the random-search sampler.")
flags.DEFINE_enum("executor", "auto", list(EXECUTOR_NAMES),
                  "sequential: one run after another; group: runs differing only in "
                  "continuous hyperparameters and seed as one vmapped program; auto: "
                  "group where a short timing probe says it is faster.")
flags.DEFINE_bool("retry_diverged", False, "Train runs that diverged before again.")
flags.DEFINE_integer("folds", 0, "k-fold validation: run every point on each of K "
                     "stratified folds of train (data.folds=K, axis data.fold); 0: "
                     "the held-out data.val_fraction.")
flags.DEFINE_enum("launcher", "local", list(LAUNCHERS),
                  "local: train here with --executor; slurm: submit a SLURM job "
                  "array, one task per unfinished run (see --slurm_*).")
flags.DEFINE_string("upstream", None, "An upstream sweep directory: one run per "
                    "finished upstream run and point, starting from it "
                    "(model.init_from); its axis values become upstream.KEY columns.")
slurm.define_flags()


def main(argv):
  config, _ = cli.config_and_workdir(argv, FLAGS)
  preemption.install()  # SIGTERM/SIGINT: the current run checkpoints, the sweep stops
  with cli.user_errors(FLAGS.workdir):
    try:
      axes = parse_axes(FLAGS.axis, config)
      upstream = load_upstream(FLAGS.upstream) if FLAGS.upstream else None
      if FLAGS.folds:
        config = config.copy_and_resolve_references()  # FLAGS.config stays as parsed
        axes = add_folds(config, axes, FLAGS.folds)
      if FLAGS.launcher == "slurm":
        if upstream is not None:
          raise SweepError("--upstream runs with --launcher=local only (not yet "
                           "with slurm)")
        slurm.submit(config, FLAGS.workdir, axes, budget=FLAGS.budget,
                     sampler_seed=FLAGS.sampler_seed,
                     retry_diverged=FLAGS.retry_diverged,
                     opts=slurm.options_from_flags(FLAGS))
        return
      # After flag parsing (as jaxreg.main): the trainer imports jax, --help need not.
      from jaxreg.sweep import local
      outcomes = local.run_sweep(config, FLAGS.workdir, axes, budget=FLAGS.budget,
                                 sampler_seed=FLAGS.sampler_seed,
                                 executor=local.EXECUTORS[FLAGS.executor](),
                                 retry_diverged=FLAGS.retry_diverged,
                                 upstream=upstream)
    except SweepError as e:
      cli.fail(str(e))
  if any(o.status == "error" for o in outcomes.values()):
    sys.exit(1)


def run():
  app.run(main, flags_parser=cli.parse_flags)

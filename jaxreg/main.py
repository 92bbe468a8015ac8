"""python -m jaxreg.main --config=configs/lstm.py[:VARIANT] --workdir=DIR [--config.KEY=V]

Trains one model with the config FILE (a file of configs/, optionally one of its
variants, e.g. configs/lstm.py:tiny) and writes into DIR: config.json, metrics.jsonl,
tensorboard/, checkpoints/, and at the end summary.json (per-class validation and test
metrics of the evaluated checkpoint) and predictions_test.npz. `--config.KEY=VALUE`
changes one key (e.g. --config.reg.weight_decay=1e-4); `python -m jaxreg.config
--config=FILE` lists every key with its value and doc. Rerun the same command to
resume an interrupted run from its last checkpoint.

Exit codes (each but 0 with one line on stderr):
  0    done (under SLURM also: preempted and requeued)
  1    the loss became NaN or inf; the last good checkpoint is kept
  2    bad input (a config key or value, a data file, a workdir in use by another
       process or holding another run); nothing was written
  74   the filesystem refused a write (disk full): free space and rerun
  75   preempted (SIGTERM or SIGUSR1) outside SLURM: a checkpoint was saved; rerun
  130  interrupted (Ctrl-C): a checkpoint was saved; rerun

Several processes (srun, mpirun, or --coordinator_address, --num_processes and
--process_id on each) train on one mesh over all their devices.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from jaxreg import cli

# (The work is in jaxreg.train.train_and_evaluate; this module only reads the flags.)
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally :VARIANT (see configs/).",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for config, metrics and checkpoints.")
cli.define_distributed_flags()


def main(argv):
  config, workdir = cli.config_and_workdir(argv, FLAGS)
  cli.start_processes(FLAGS)  # jax.distributed + preemption signal handlers
  from jaxreg import distributed, records, train  # after flag parsing: fast `--help`
  with cli.user_errors(workdir):
    summary = train.train_and_evaluate(config, workdir)
  if not distributed.is_main():
    return
  from jaxreg import metrics, records  # with train: `--help` stays fast
  test = summary["test"]
  print(f"test per class, worst first (checkpoint step {summary['evaluated_step']}):")
  print(metrics.format_worst_first(test))
  print(f"test accuracy {test['accuracy']:.4f}  balanced {test['balanced_accuracy']:.4f}"
        f"  worst class {test['worst_class_accuracy']:.4f}  "
        f"({Path(workdir) / records.SUMMARY_FILE})")
  print(f"files in {workdir}: {'  '.join(records.run_files(workdir))}")


def run():
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()

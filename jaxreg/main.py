"""python -m jaxreg.main --config=configs/lstm.py[:VARIANT] --workdir=DIR [--config.KEY=V]

Flags only; the work is in train.train_and_evaluate. Bad input exits with code 2 and
one line naming the key or value and the allowed choices (nothing written); a diverged
run exits 1; a write the filesystem refuses (full disk) exits 74; a preempted run
(SIGTERM/SIGUSR1) saves a checkpoint, requeues itself under SLURM and exits 0, or exits
75 elsewhere; SIGINT saves a checkpoint and exits 130 (rerun to resume); README "Exit
codes". Another process training in the same workdir: exit 2. Several processes (srun,
mpirun, or --coordinator_address/--num_processes/--process_id) join one
jax.distributed mesh.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxreg import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally :VARIANT (see configs/).",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for config, metrics and checkpoints.")
cli.define_distributed_flags()


def main(argv):
  config, workdir = cli.config_and_workdir(argv, FLAGS)
  cli.start_processes(FLAGS)  # jax.distributed + preemption signal handlers
  from jaxreg import distributed, train  # after flag parsing: `--help` stays fast
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
        f"({workdir}/summary.json)")
  print(f"files in {workdir}: {'  '.join(records.run_files(workdir))}")


def run():
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()

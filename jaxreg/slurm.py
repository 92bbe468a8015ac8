"""The commands a sweep's SLURM jobs run (jaxreg/sweep/slurm.py submits them):

  python -m jaxreg.slurm task --workdir=DIR --index=I   train run I of the sweep in DIR
  python -m jaxreg.slurm collect --workdir=DIR          write DIR/runs.csv and the runs'
                                                        status in DIR/sweep.json

`collect` may be run by hand at any time; it reads each run's directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jaxreg import cli, lock, preemption, records, train
from jaxreg.sweep import slurm
from jaxreg.sweep.axes import SweepError


def run_task(workdir, index: int, out=None) -> int:
  """Trains run `index` of the sweep in `workdir`; the process's exit code."""
  out = out or sys.stderr
  workdir = Path(workdir)
  meta = slurm.read_plan(workdir)
  entry = meta["runs"][index]
  run_dir = workdir / entry["name"]
  if records.read_summary(run_dir) is not None:
    print(f"run {entry['name']}: finished already", file=out, flush=True)
    return 0
  restarts = os.environ.get("SLURM_RESTART_COUNT")
  print(f"run {index} {entry['name']} (job {os.environ.get('SLURM_JOB_ID', '-')}"
        + (f", restart {restarts}" if restarts else "") + ")", file=out, flush=True)
  (run_dir / records.OUTCOME_FILE).unlink(missing_ok=True)  # a retry forgets a failure
  try:
    summary = train.train_and_evaluate(slurm.run_config(meta, index), run_dir,
                                       executor={"why": "one SLURM array task per run"})
  except preemption.Preempted as e:
    print(str(e), file=out, flush=True)
    if e.interrupted:
      return preemption.INTERRUPTED_EXIT
    return 0 if preemption.requeue(out) else preemption.PREEMPTED_EXIT
  except lock.LockHeld:
    raise  # another task trains this run: its directory is left alone
  except train.TrainingDiverged as e:  # a result, not a failure of the task
    records.write_outcome(run_dir, "diverged", records.one_line(e))
    print(f"run {entry['name']}: diverged: {e}", file=out, flush=True)
    return 0
  except Exception as e:  # noqa: BLE001 - recorded for collect, then the task fails
    records.write_outcome(run_dir, "error", records.one_line(e))
    raise
  test = summary["test"]
  print(f"run {entry['name']}: test acc {test['accuracy']:.4f}, worst class "
        f"{test['worst_class_accuracy']:.4f}", file=out, flush=True)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m jaxreg.slurm",
      description="The commands of a sweep's SLURM jobs (submitted by `python -m "
      "jaxreg.sweep ... --launcher=slurm`).")
  sub = parser.add_subparsers(dest="command", required=True)
  task = sub.add_parser("task", help="train one run of a sweep (an array task)")
  task.add_argument("--workdir", required=True, help="the sweep directory")
  task.add_argument("--index", type=int, required=True,
                    help="the run's index in sweep.json")
  col = sub.add_parser("collect", help="write runs.csv and the runs' status in "
                       "sweep.json from the run directories")
  col.add_argument("--workdir", required=True, help="the sweep directory")
  args = parser.parse_args(argv)
  if args.command == "collect":
    try:
      slurm.collect(args.workdir)
    except SweepError as e:
      cli.fail(str(e))
    return 0
  cli.quiet_libraries()
  preemption.install()
  with cli.user_errors():
    return run_task(args.workdir, args.index)


if __name__ == "__main__":
  sys.exit(main())

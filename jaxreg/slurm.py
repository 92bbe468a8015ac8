"""Sweeps as SLURM job arrays: `python -m jaxreg.sweep ... --launcher=slurm`.

The submitting command plans the sweep exactly as the local launcher does (DIR/sweep.json,
the same run names and configs), then submits

* one array job, one task per unfinished run (`--array=I,J,...%max_parallel`, I the
  run's index in sweep.json), from the script it writes to DIR/slurm/array.sbatch:
  `--requeue`, a warning signal `--signal=B:USR1@SECONDS`, resources from the flags, a
  log per task in DIR/slurm/logs/<array job>_<index>.out. The script `exec`s Python, so
  the signal reaches the run, which checkpoints at the next step boundary and requeues
  itself (jaxreg.preemption); the requeued task resumes from that checkpoint;
* a collect job (`--dependency=afterany:<array job>`) that writes DIR/runs.csv and the
  runs' status in sweep.json once every task has ended (`python -m jaxreg.slurm
  collect --workdir=DIR` does the same by hand, at any time).

Each task writes only its own run directory (a failed run also DIR/<run>/outcome.json),
so tasks never race on shared files. Resubmitting the same command submits only the
runs without a summary.json (and, unless --retry_diverged, not the diverged ones).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from jaxreg import sweep

OUTCOME_FILE = "outcome.json"  # a failed task's status: diverged or error
SLURM_DIR = "slurm"


@dataclasses.dataclass
class Options:
  """Resources and behaviour of the array job (the --slurm_* flags)."""
  partition: str = ""
  time: str = ""
  cpus_per_task: int = 1
  mem: str = ""
  gpus_per_task: int = 0
  max_parallel: int = 0
  signal_seconds: int = 120
  extra: tuple[str, ...] = ()
  wait: bool = False
  python: str = sys.executable


def define_flags() -> None:
  from absl import flags
  flags.DEFINE_string("slurm_partition", "", "--launcher=slurm: partition ('' default).")
  flags.DEFINE_string("slurm_time", "", "--launcher=slurm: time limit per run, e.g. "
                      "2:00:00 ('' partition default).")
  flags.DEFINE_integer("slurm_cpus_per_task", 1, "--launcher=slurm: CPUs per run.")
  flags.DEFINE_string("slurm_mem", "", "--launcher=slurm: memory per run, e.g. 8G.")
  flags.DEFINE_integer("slurm_gpus_per_task", 0, "--launcher=slurm: GPUs per run.")
  flags.DEFINE_integer("slurm_max_parallel", 0, "--launcher=slurm: at most this many "
                       "runs at once (array %N; 0: no limit).")
  flags.DEFINE_integer("slurm_signal_seconds", 120, "--launcher=slurm: USR1 this many "
                       "seconds before the time limit (checkpoint and requeue).")
  flags.DEFINE_multi_string("slurm_extra", [], "--launcher=slurm: more sbatch options, "
                            "e.g. --slurm_extra=--account=abc (repeatable).")
  flags.DEFINE_bool("slurm_wait", False, "--launcher=slurm: block until the array "
                    "and the collect job have ended (sbatch --wait).")


def options_from_flags(f) -> Options:
  return Options(partition=f.slurm_partition, time=f.slurm_time,
                 cpus_per_task=f.slurm_cpus_per_task, mem=f.slurm_mem,
                 gpus_per_task=f.slurm_gpus_per_task, max_parallel=f.slurm_max_parallel,
                 signal_seconds=f.slurm_signal_seconds, extra=tuple(f.slurm_extra),
                 wait=f.slurm_wait)


# ------------------------------------------------------------------ the sweep's runs


def _read_outcome(run_dir: Path) -> dict | None:
  try:
    return json.loads((run_dir / OUTCOME_FILE).read_text())
  except (OSError, json.JSONDecodeError):
    return None


def _meta(workdir: Path) -> dict:
  path = Path(workdir) / sweep.SWEEP_FILE
  if not path.exists():
    raise sweep.SweepError(f"{workdir} holds no {sweep.SWEEP_FILE}: not a sweep directory")
  return json.loads(path.read_text())


def run_config(meta: dict, index: int):
  """The full config of run `index`, rebuilt from sweep.json as the local launcher
  builds it (sweep.config_for over the resolved base config)."""
  import ml_collections
  base = ml_collections.ConfigDict(meta["base_config"])
  return sweep.config_for(base, meta["runs"][index]["values"])


def collect(workdir, out=None) -> dict[str, int]:
  """Status of every run from its directory -> sweep.json and runs.csv; the counts.
  Holds the sweep directory's lock while it writes them."""
  from jaxreg import lock
  with lock.acquire(_sweep_dir(workdir), "sweep directory"):
    return _collect(workdir, out)


def _sweep_dir(workdir) -> Path:
  workdir = Path(workdir)
  _meta(workdir)  # SweepError unless it holds a sweep.json; creates nothing
  return workdir


def _collect(workdir, out=None) -> dict[str, int]:
  out = out or sys.stdout
  workdir = Path(workdir)
  meta = _meta(workdir)
  axes = sweep.load_axes(meta)
  runs = [sweep.Run(i, r["name"], r["values"], None, workdir / r["name"])
          for i, r in enumerate(meta["runs"])]
  status, summaries = {}, {}
  for run, entry in zip(runs, meta["runs"]):
    summary = sweep.read_summary(run.workdir / "summary.json")
    outcome = _read_outcome(run.workdir)
    if summary is not None:
      summaries[run.name] = summary
      entry["status"] = "done"
      entry.pop("error", None)
    elif outcome is not None:
      entry["status"], entry["error"] = outcome["status"], outcome.get("error", "")
    else:
      entry["status"] = "pending"
    status[run.name] = entry
  sweep.atomic_write(workdir / sweep.SWEEP_FILE, json.dumps(meta, indent=2) + "\n")
  sweep.write_runs_csv(workdir / sweep.RUNS_FILE,
                       *sweep.rows_for(runs, axes, status, summaries))
  counts = {s: sum(1 for e in meta["runs"] if e["status"] == s)
            for s in ("done", "diverged", "error", "pending")}
  print(f"sweep {workdir}: {counts['done']}/{len(runs)} finished"
        + "".join(f", {counts[s]} {s}" for s in ("diverged", "error", "pending")
                  if counts[s])
        + f" ({workdir / sweep.RUNS_FILE})", file=out, flush=True)
  return counts


# ------------------------------------------------------------------- submission


def array_script(workdir: Path, opts: Options) -> str:
  """The sbatch script of the array (also written to DIR/slurm/array.sbatch)."""
  logs = workdir / SLURM_DIR / "logs"
  lines = ["#!/bin/bash", "#SBATCH --job-name=jaxreg-sweep",
           f"#SBATCH --output={logs}/%A_%a.out", "#SBATCH --open-mode=append",
           "#SBATCH --requeue", f"#SBATCH --signal=B:USR1@{opts.signal_seconds}",
           "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={opts.cpus_per_task}"]
  if opts.partition:
    lines.append(f"#SBATCH --partition={opts.partition}")
  if opts.time:
    lines.append(f"#SBATCH --time={opts.time}")
  if opts.mem:
    lines.append(f"#SBATCH --mem={opts.mem}")
  if opts.gpus_per_task:
    lines.append(f"#SBATCH --gpus-per-task={opts.gpus_per_task}")
  lines += [f"#SBATCH {e}" for e in opts.extra]
  lines += [
      "# One run of the sweep per array task: run index = SLURM_ARRAY_TASK_ID.",
      "# exec: the warning signal (B:USR1) goes to Python itself, not to a shell.",
      f"cd {shlex.quote(os.getcwd())}",
      f"exec {shlex.quote(opts.python)} -m jaxreg.slurm task "
      f"--workdir={shlex.quote(str(workdir))} --index=\"$SLURM_ARRAY_TASK_ID\"",
  ]
  return "\n".join(lines) + "\n"


def _sbatch(args: list[str]) -> str:
  try:
    p = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True)
  except FileNotFoundError:
    raise sweep.SweepError("--launcher=slurm: sbatch is not on PATH (run this on a "
                           "SLURM login node)") from None
  if p.returncode:
    raise sweep.SweepError(f"sbatch failed: {' '.join(p.stderr.split())}")
  return p.stdout.strip().split(";")[0]


def submit(base_config, workdir, axes, *, budget: int = 0, sampler_seed: int = 0,
           retry_diverged: bool = False, opts: Options | None = None,
           out=None) -> dict:
  """Plans the sweep and submits its unfinished runs as an array plus a collect job.

  Returns {'array': job id or None, 'collect': job id or None, 'indices': [...]}.
  """
  out = out or sys.stdout
  opts = opts or Options()
  import shutil
  if shutil.which("sbatch") is None:
    raise sweep.SweepError("--launcher=slurm: sbatch is not on PATH (run this on a "
                           "SLURM login node)")
  workdir = Path(workdir).resolve()
  # The sweep directory is locked while sweep.json is written and the array submitted
  # (not while `--slurm_wait` waits: the collect job locks it to write runs.csv).
  with sweep.locked(base_config, workdir, axes, budget=budget,
                    sampler_seed=sampler_seed):
    submitted = _submit_array(base_config, workdir, axes, budget, sampler_seed,
                              retry_diverged, opts, out)
  if submitted is None:
    collect(workdir, out)
    return {"array": None, "collect": None, "indices": []}
  return _after_submit(workdir, *submitted, opts, out)


def _submit_array(base_config, workdir: Path, axes, budget: int, sampler_seed: int,
                  retry_diverged: bool, opts: Options, out):
  """sweep.json, the array script and the array job; (array id, indices, slurm dir),
  or None when every run finished or diverged."""
  runs, _ = sweep.prepare(base_config, workdir, axes, budget=budget,
                          sampler_seed=sampler_seed)
  pending = []
  for run in runs:
    outcome = _read_outcome(run.workdir)
    if run.finished:
      continue
    if outcome and outcome["status"] == "diverged" and not retry_diverged:
      continue
    pending.append(run)
  if not pending:
    print(f"sweep {workdir}: nothing to submit (every run finished or diverged)",
          file=out, flush=True)
    return None
  for run in pending:  # a retried run must not keep its old failure
    (run.workdir / OUTCOME_FILE).unlink(missing_ok=True)
  slurm_dir = workdir / SLURM_DIR
  (slurm_dir / "logs").mkdir(parents=True, exist_ok=True)
  script = slurm_dir / "array.sbatch"
  from jaxreg import io
  io.atomic_write(script, array_script(workdir, opts))
  indices = [r.index for r in pending]
  spec = ",".join(map(str, indices))
  if opts.max_parallel:
    spec += f"%{opts.max_parallel}"
  array_id = _sbatch([f"--array={spec}", str(script)])
  print(f"submitted {len(pending)} of {len(runs)} runs as SLURM array job {array_id} "
        f"(logs: {slurm_dir / 'logs'}); runs.csv is written by a collect job when it "
        "ends", file=out, flush=True)
  with (slurm_dir / "jobs.jsonl").open("a") as f:
    f.write(json.dumps({"array": array_id, "indices": indices,
                        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
  return array_id, indices, slurm_dir


def _submit_collect(workdir: Path, array_id: str, slurm_dir: Path, opts: Options
                    ) -> str:
  collect_cmd = (f"exec {shlex.quote(opts.python)} -m jaxreg.slurm collect "
                 f"--workdir={shlex.quote(str(workdir))}")
  collect_args = [f"--dependency=afterany:{array_id}", "--job-name=jaxreg-collect",
                  f"--output={slurm_dir}/logs/collect_%j.out", "--ntasks=1",
                  "--cpus-per-task=1", f"--chdir={os.getcwd()}"]
  if opts.partition:
    collect_args.append(f"--partition={opts.partition}")
  collect_args += list(opts.extra)
  if opts.wait:
    collect_args.append("--wait")
  return _sbatch([*collect_args, "--wrap", collect_cmd])


def _after_submit(workdir, array_id, indices, slurm_dir, opts, out) -> dict:
  collect_id = _submit_collect(workdir, array_id, slurm_dir, opts)
  if opts.wait:
    collect(workdir, out)  # the collect job has run; report here too
  return {"array": array_id, "collect": collect_id, "indices": indices}


# ------------------------------------------------------------------ the task side


def run_task(workdir, index: int, out=None) -> int:
  """Trains run `index` of the sweep in `workdir`; the process's exit code."""
  from jaxreg import lock, preemption, train
  out = out or sys.stderr
  workdir = Path(workdir)
  meta = _meta(workdir)
  entry = meta["runs"][index]
  run_dir = workdir / entry["name"]
  if sweep.read_summary(run_dir / "summary.json") is not None:
    print(f"run {entry['name']}: finished already", file=out, flush=True)
    return 0
  restarts = os.environ.get("SLURM_RESTART_COUNT")
  print(f"run {index} {entry['name']} (job {os.environ.get('SLURM_JOB_ID', '-')}"
        + (f", restart {restarts}" if restarts else "") + ")", file=out, flush=True)
  (run_dir / OUTCOME_FILE).unlink(missing_ok=True)  # a retry forgets the old failure
  try:
    summary = train.train_and_evaluate(run_config(meta, index), run_dir)
  except preemption.Preempted as e:
    print(str(e), file=out, flush=True)
    if e.interrupted:
      return preemption.INTERRUPTED_EXIT
    return 0 if preemption.requeue(out) else preemption.PREEMPTED_EXIT
  except lock.LockHeld:
    raise  # another task trains this run: its directory is left alone
  except train.TrainingDiverged as e:  # a result, not a failure of the task
    _write_outcome(run_dir, "diverged", e)
    print(f"run {entry['name']}: diverged: {e}", file=out, flush=True)
    return 0
  except Exception as e:  # noqa: BLE001 - recorded for collect, then the task fails
    _write_outcome(run_dir, "error", e)
    raise
  test = summary["test"]
  print(f"run {entry['name']}: test acc {test['accuracy']:.4f}, worst class "
        f"{test['worst_class_accuracy']:.4f}", file=out, flush=True)
  return 0


def _write_outcome(run_dir: Path, status: str, e: BaseException) -> None:
  sweep.atomic_write(run_dir / OUTCOME_FILE, json.dumps(
      {"status": status, "error": sweep._one_line(e)}) + "\n")


def main(argv=None) -> int:
  """python -m jaxreg.slurm task --workdir=DIR --index=I | collect --workdir=DIR"""
  import argparse
  parser = argparse.ArgumentParser(prog="python -m jaxreg.slurm", description=main.__doc__)
  sub = parser.add_subparsers(dest="command", required=True)
  task = sub.add_parser("task", help="train one run of a sweep (an array task)")
  task.add_argument("--workdir", required=True)
  task.add_argument("--index", type=int, required=True)
  col = sub.add_parser("collect", help="write runs.csv and sweep.json statuses")
  col.add_argument("--workdir", required=True)
  args = parser.parse_args(argv)
  from jaxreg import cli
  if args.command == "collect":
    try:
      collect(args.workdir)
    except sweep.SweepError as e:
      cli.fail(str(e))
    return 0
  from jaxreg import preemption
  cli.quiet_libraries()
  preemption.install()
  with cli.user_errors():
    return run_task(args.workdir, args.index)


if __name__ == "__main__":
  sys.exit(main())

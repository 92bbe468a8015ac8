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
The commands the tasks run (`task`, `collect`) are in jaxreg/slurm.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
from absl import flags

from jaxreg import io, lock, records
from jaxreg.sweep.axes import SweepError
from jaxreg.sweep.plan import config_for, locked, prepare

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


def read_plan(workdir) -> dict:
  """sweep.json; SweepError unless `workdir` holds one (creates nothing)."""
  meta = records.read_sweep(workdir)
  if meta is None:
    raise SweepError(f"{workdir} holds no {records.SWEEP_FILE}: not a sweep directory")
  return meta


def run_config(meta: dict, index: int):
  """The full config of run `index`, rebuilt from sweep.json as the local launcher
  builds it (config_for over the resolved base config)."""
  base = ml_collections.ConfigDict(meta["base_config"])
  entry = meta["runs"][index]
  return config_for(base, entry["values"], entry.get("init_from"))


def collect(workdir, out=None) -> dict[str, int]:
  """Status of every run from its directory -> sweep.json and runs.csv; the counts.
  Holds the sweep directory's lock while it writes them."""
  workdir = Path(workdir)
  read_plan(workdir)  # a sweep directory, before the lock creates anything in it
  with lock.acquire(workdir, "sweep directory"):
    meta = read_plan(workdir)
    summaries = {}
    for entry in meta["runs"]:
      summary = records.roll_up(workdir / entry["name"], entry)
      if summary is not None:
        summaries[entry["name"]] = summary
    records.write_status(workdir, meta, summaries)
  print(records.status_line(workdir, meta["runs"]), file=out or sys.stdout, flush=True)
  return {s: sum(1 for e in meta["runs"] if e["status"] == s) for s in records.STATUSES}


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


NO_SBATCH = ("--launcher=slurm: sbatch is not on PATH (run this on a SLURM login "
             "node)")


def _sbatch(args: list[str]) -> str:
  try:
    p = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True)
  except FileNotFoundError:
    raise SweepError(NO_SBATCH) from None
  if p.returncode:
    raise SweepError(f"sbatch failed: {' '.join(p.stderr.split())}")
  return p.stdout.strip().split(";")[0]


def submit(base_config, workdir, axes, *, budget: int = 0, sampler_seed: int = 0,
           retry_diverged: bool = False, opts: Options | None = None,
           out=None) -> dict:
  """Plans the sweep and submits its unfinished runs as an array plus a collect job.

  Returns {'array': job id or None, 'collect': job id or None, 'indices': [...]}.
  """
  out = out or sys.stdout
  opts = opts or Options()
  if shutil.which("sbatch") is None:
    raise SweepError(NO_SBATCH)
  workdir = Path(workdir).resolve()
  # The sweep directory is locked while sweep.json is written and the array submitted
  # (not while `--slurm_wait` waits: the collect job locks it to write runs.csv).
  with locked(base_config, workdir, axes, budget=budget,
              sampler_seed=sampler_seed) as planned:
    submitted = _submit_array(base_config, workdir, axes, planned, budget, sampler_seed,
                              retry_diverged, opts, out)
  if submitted is None:
    collect(workdir, out)
    return {"array": None, "collect": None, "indices": []}
  array_id, indices, slurm_dir = submitted
  collect_id = _submit_collect(workdir, array_id, slurm_dir, opts)
  if opts.wait:
    collect(workdir, out)  # the collect job has run; report here too
  return {"array": array_id, "collect": collect_id, "indices": indices}


def _submit_array(base_config, workdir: Path, axes, planned, budget: int,
                  sampler_seed: int, retry_diverged: bool, opts: Options, out):
  """sweep.json, the array script and the array job; (array id, indices, slurm dir),
  or None when every run finished or diverged."""
  runs, meta = prepare(base_config, workdir, axes, budget=budget,
                       sampler_seed=sampler_seed, runs=planned)
  pending = []
  for run, entry in zip(runs, meta["runs"]):
    records.roll_up(run.workdir, entry)
    if records.needs_training(entry, retry_diverged):
      records.retry(run.workdir, entry)  # a retried run must not keep its old failure
      pending.append(run)
  if not pending:
    print(f"sweep {workdir}: nothing to submit (every run finished or diverged)",
          file=out, flush=True)
    return None
  records.write_sweep(workdir, meta)
  slurm_dir = workdir / SLURM_DIR
  (slurm_dir / "logs").mkdir(parents=True, exist_ok=True)
  script = slurm_dir / "array.sbatch"
  io.atomic_write(script, array_script(workdir, opts))
  indices = [r.index for r in pending]
  spec = ",".join(map(str, indices))
  if opts.max_parallel:
    spec += f"%{opts.max_parallel}"
  array_id = _sbatch([f"--array={spec}", str(script)])
  print(f"submitted {len(pending)} of {len(runs)} runs as SLURM array job {array_id} "
        f"(logs: {slurm_dir / 'logs'}); runs.csv is written by a collect job when it "
        "ends", file=out, flush=True)
  io.append_line(slurm_dir / "jobs.jsonl", json.dumps(
      {"array": array_id, "indices": indices,
       "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}))
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

"""Preemption: SIGTERM or SIGUSR1 asks for a checkpoint at the next step boundary.

A scheduler warns before it kills a job (SLURM: `--signal=B:USR1@120` for a batch
script that `exec`s Python, `--signal=USR1@120` for the tasks of `srun`; SIGTERM
before SIGKILL on cancel, requeue or preemption). `install()` turns those signals into
a flag; the training loop polls it between steps (`stop_now`), saves a checkpoint of
the state as it is mid-epoch and raises `Preempted`; the entry point then calls
`requeue()`: under SLURM, `scontrol requeue $SLURM_JOB_ID` (an exit code alone
requeues only where an administrator configured it), else the exit code
`PREEMPTED_EXIT` tells whoever launched the run to rerun it. The rerun resumes from
that checkpoint and ends with the same metrics as an uninterrupted run.

SIGINT (Ctrl-C) is the same request from a person: a checkpoint at the next step
boundary, one line, exit code `INTERRUPTED_EXIT` (130, the shell's code for SIGINT),
never a requeue; a second SIGINT stops the process at once (`os._exit`, no
checkpoint: the rerun resumes from the last one; a kill leaves nothing torn).

orbax's own preemption support (`CheckpointManager.reached_preemption`) rests on
jax's preemption sync manager, which listens to SIGTERM only and needs
jax.distributed; this flag covers SIGUSR1 and single-process runs as well, and in a
multi-process run the processes agree through one all-gather per step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: checkpoint saved, run again to resume
INTERRUPTED_EXIT = 130  # 128 + SIGINT: stopped by a person

_flag = threading.Event()
_received: list[str] = []


class Preempted(Exception):
  """Training stopped at a step boundary after a preemption signal; a checkpoint of
  that step is on disk."""

  def __init__(self, step: int, signal_name: str):
    if signal_name == "SIGINT":
      message = (f"interrupted (SIGINT) at step {step}; checkpoint saved, rerun the "
                 "same command to resume")
    else:
      message = f"preempted by {signal_name} at step {step}; checkpoint saved"
    super().__init__(message)
    self.step, self.signal_name = step, signal_name

  @property
  def interrupted(self) -> bool:
    """Stopped by a person (SIGINT): exit 130, no requeue."""
    return self.signal_name == "SIGINT"


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
  if signum == signal.SIGINT and "SIGINT" in _received:
    # os.write, not print: the main thread may be inside a print to stderr, and a
    # buffered write from a signal handler would then raise a reentrancy error.
    os.write(2, b"error: interrupted again (SIGINT): stopped at once, without a "
             b"checkpoint; rerun the same command to resume from the last one\n")
    os._exit(INTERRUPTED_EXIT)
  _received.append(signal.Signals(signum).name)
  _flag.set()


def install() -> bool:
  """Installs the handlers (main thread only; returns False elsewhere)."""
  if threading.current_thread() is not threading.main_thread():
    return False
  for sig in SIGNALS:
    signal.signal(sig, _handler)
  return True


def requested() -> bool:
  """This process received a preemption signal."""
  return _flag.is_set()


def signal_name() -> str:
  return _received[0] if _received else "request"


def exit_code(e: Preempted) -> int:
  """What the entry point exits with after `e`: 130 for SIGINT; 0 when SLURM took
  a requeue; else PREEMPTED_EXIT."""
  if e.interrupted:
    return INTERRUPTED_EXIT
  return 0 if requeue() else PREEMPTED_EXIT


def request() -> None:
  """Asks for a stop as a signal would (tests, or an embedding program)."""
  _received.append("request")
  _flag.set()


def clear() -> None:
  _flag.clear()
  _received.clear()


def stop_now() -> bool:
  """Whether every process should stop at this step boundary.

  One process: the local flag. Several: the flag is all-gathered so that all of them
  stop at the same step (the checkpoint save is collective); a blocking exchange per
  step, negligible beside a multi-host model's step.
  """
  if jax.process_count() == 1:
    return _flag.is_set()
  flags = multihost_utils.process_allgather(np.int32(_flag.is_set()))
  return bool(np.any(flags))


def requeue(out=None) -> bool:
  """After a preemption checkpoint: `scontrol requeue $SLURM_JOB_ID` from process 0.

  Returns True if SLURM accepted the requeue (SLURM then ends this job and starts it
  again later), False when not under SLURM or the requeue failed (the caller exits
  with PREEMPTED_EXIT).
  """
  out = out or sys.stderr
  job = os.environ.get("SLURM_JOB_ID")
  if not job:
    return False
  if jax.process_index() != 0:
    return True
  try:
    p = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True,
                       timeout=60)
  except (OSError, subprocess.TimeoutExpired) as e:
    print(f"scontrol requeue {job} failed: {e}", file=out, flush=True)
    return False
  if p.returncode:
    print(f"scontrol requeue {job} failed: {p.stderr.strip()}", file=out, flush=True)
    return False
  print(f"requeued SLURM job {job}", file=out, flush=True)
  return True

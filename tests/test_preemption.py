"""Preemption: a signal -> checkpoint at the next step boundary -> the rerun resumes
mid-epoch and ends exactly like an uninterrupted run."""

import json
import signal
import subprocess
import sys

import pytest

from jaxreg import checkpoint, preemption, train
from tests.conftest import ROOT, python_env, tiny_config

EPOCHS = 3
STEPS_PER_EPOCH = 12  # tiny: 360 training examples, batch 32


def _records(workdir):
  """metrics.jsonl without what legitimately differs between attempts (timings)."""
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _same_results(a, b):
  sa, sb = (json.loads((w / "summary.json").read_text()) for w in (a, b))
  for key in ("best_step", "evaluated_step", "epochs_completed", "val", "test"):
    assert sa[key] == sb[key], key
  assert _records(a) == _records(b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  train.train_and_evaluate(tiny_config(**{"train.epochs": EPOCHS}), workdir)
  return workdir


@pytest.fixture(autouse=True)
def _clear_flag():
  preemption.clear()
  yield
  preemption.clear()


def test_a_request_saves_mid_epoch_and_the_rerun_matches(tmp_path, uninterrupted):
  config = tiny_config(**{"train.epochs": EPOCHS})
  preemption.request()  # as a signal handler would, before the first step
  with pytest.raises(preemption.Preempted) as info:
    train.train_and_evaluate(config, tmp_path)
  assert info.value.step == 1
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.all_steps() == [1]  # mid-epoch: not a multiple of the epoch's 12 steps
  ckpt.close()
  assert not (tmp_path / "summary.json").exists()
  preemption.clear()
  train.train_and_evaluate(config, tmp_path)
  _same_results(tmp_path, uninterrupted)


@pytest.mark.slow
def test_sigusr1_to_a_run_checkpoints_exits_75_and_the_rerun_matches(tmp_path,
                                                                     uninterrupted):
  cmd = [sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
         f"--workdir={tmp_path}", f"--config.train.epochs={EPOCHS}"]
  env = python_env()
  env.pop("SLURM_JOB_ID", None)
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
  log = tmp_path / "metrics.jsonl"
  import time
  deadline = time.time() + 240
  while proc.poll() is None and time.time() < deadline and not (
      log.exists() and '"train_step"' in log.read_text()):
    time.sleep(0.02)
  proc.send_signal(signal.SIGUSR1)
  stderr = proc.communicate(timeout=240)[1]
  assert proc.returncode == preemption.PREEMPTED_EXIT, stderr[-2000:]
  assert "preempted by SIGUSR1" in stderr
  assert _stray(stderr) == []  # e.g. orbax's "Requested `tracked_metric`" warning
  steps = checkpoint.Checkpointer(tmp_path / "checkpoints").all_steps()
  assert steps and steps[-1] < EPOCHS * STEPS_PER_EPOCH
  rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from step {steps[-1]}" in rerun.stderr
  _same_results(tmp_path, uninterrupted)


def _stray(stderr: str) -> list[str]:
  """stderr lines that are neither jaxreg's progress nor its one closing line."""
  ours = ("train ", "epoch ", "resumed from step ", "preempted by ", "interrupted ")
  return [l for l in stderr.splitlines() if l.strip() and not l.startswith(ours)]


def _cmd(workdir, *extra):
  return [sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
          f"--workdir={workdir}", f"--config.train.epochs={EPOCHS}", *extra]


def _env():
  env = python_env()
  env.pop("SLURM_JOB_ID", None)
  return env


@pytest.mark.slow
def test_sigint_checkpoints_exits_130_in_one_line_and_the_rerun_matches(tmp_path,
                                                                        uninterrupted):
  import time
  proc = subprocess.Popen(_cmd(tmp_path), cwd=ROOT, env=_env(), stderr=subprocess.PIPE,
                          text=True)
  log = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while proc.poll() is None and time.time() < deadline and not (
      log.exists() and '"val"' in log.read_text()):
    time.sleep(0.02)
  proc.send_signal(signal.SIGINT)  # Ctrl-C
  stderr = proc.communicate(timeout=240)[1]
  assert proc.returncode == preemption.INTERRUPTED_EXIT, stderr[-2000:]
  assert _stray(stderr) == [], stderr[-2000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("interrupted (SIGINT) at step ") and "checkpoint saved" in last
  steps = checkpoint.Checkpointer(tmp_path / "checkpoints", read_only=True).all_steps()
  assert steps and steps[-1] < EPOCHS * STEPS_PER_EPOCH
  rerun = subprocess.run(_cmd(tmp_path), cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=240)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from step {steps[-1]}" in rerun.stderr
  assert _stray(rerun.stderr) == [], rerun.stderr[-2000:]
  _same_results(tmp_path, uninterrupted)


def _handlers_installed(pid: int) -> bool:
  """jaxreg's handlers are in place: SIGUSR1 is caught (/proc/PID/status SigCgt)."""
  try:
    with open(f"/proc/{pid}/status") as f:
      caught = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
  except (OSError, StopIteration):
    return False
  return bool(caught & (1 << (signal.SIGUSR1 - 1)))


@pytest.mark.slow
def test_a_second_sigint_stops_at_once(tmp_path):
  import time
  # A large generated set: data loading keeps the run away from its first step.
  proc = subprocess.Popen(_cmd(tmp_path, "--config.data.synthetic.train_size=60000"),
                          cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not _handlers_installed(proc.pid):
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGINT)
  time.sleep(0.3)
  proc.send_signal(signal.SIGINT)
  t0 = time.time()
  stderr = proc.communicate(timeout=60)[1]
  assert time.time() - t0 < 5
  assert proc.returncode == preemption.INTERRUPTED_EXIT, stderr[-2000:]
  lines = [l for l in stderr.splitlines() if l.strip()]
  assert lines == ["error: interrupted again (SIGINT): stopped at once, without a "
                   "checkpoint; rerun the same command to resume from the last one"]
  assert not (tmp_path / "checkpoints").exists() or not any(
      p.name.isdigit() for p in (tmp_path / "checkpoints").iterdir())

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
  steps = checkpoint.Checkpointer(tmp_path / "checkpoints").all_steps()
  assert steps and steps[-1] < EPOCHS * STEPS_PER_EPOCH
  rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from step {steps[-1]}" in rerun.stderr
  _same_results(tmp_path, uninterrupted)

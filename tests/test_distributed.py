"""Multi-process data parallel: 2 CPU processes joined by jax.distributed (gloo) train
like 1 process with the same global batch; only process 0 writes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import checkpoint, distributed
from tests.conftest import ROOT, python_env

# Few steps, one compiled shape: gloo collectives between two processes are slow on a
# busy 2-core machine.
OVERRIDES = ["--config.train.epochs=1", "--config.data.synthetic.train_size=200",
             "--config.data.buckets=", "--config.train.log_every_steps=1"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env():
  env = python_env()
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  for k in list(env):
    if k.startswith(("SLURM_", "OMPI_")):
      env.pop(k)
  return env


def _main(workdir, *extra, run=None):
  """jaxreg.main's command line; `run`: (config, overrides) instead of the LSTM's."""
  config, overrides = run or ("configs/lstm.py:tiny", OVERRIDES)
  return [sys.executable, "-m", "jaxreg.main", f"--config={config}",
          f"--workdir={workdir}", *overrides, *extra]


def _final_params(workdir, like=None):
  """The latest checkpoint's params; `like`: a restored tree whose structure and
  single-device placement to restore into (needed for a checkpoint saved across two
  processes' devices)."""
  import jax
  target = None
  if like is not None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=device), like)
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints")
  state, _ = ckpt.restore(ckpt.latest_step(), target)
  ckpt.close()
  return state


def test_detects_only_several_processes(monkeypatch):
  for k in list(os.environ):
    if k.startswith(("SLURM_", "OMPI_")):
      monkeypatch.delenv(k, raising=False)
  assert distributed.launched_processes() is None
  monkeypatch.setenv("SLURM_JOB_ID", "7")  # a batch script or array task: one process
  monkeypatch.setenv("SLURM_PROCID", "0")
  assert distributed.launched_processes() is None
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")  # srun --ntasks=2
  assert distributed.launched_processes() == ("slurm", 2)
  monkeypatch.delenv("SLURM_STEP_NUM_TASKS")
  monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
  assert distributed.launched_processes() == ("ompi", 4)


def test_partial_flags_are_a_usage_error():
  with pytest.raises(ValueError, match="go together"):
    distributed.initialize("127.0.0.1:1234", None, 0)
  assert distributed.initialize("127.0.0.1:1234", 1, 0) is False  # one process: no-op


def _start_two(workdir, env, run=None):
  port = _free_port()
  return [subprocess.Popen(
      _main(workdir, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
            f"--process_id={i}", run=run), cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  one = tmp_path_factory.mktemp("one")
  single = subprocess.run(_main(one), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-1500:]
  return one


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, one_process):
  env, two, one = _env(), tmp_path / "two", one_process
  procs = _start_two(two, env)
  outs = [p.communicate(timeout=500)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outs)
  assert "test accuracy" in outs[0] and "test accuracy" not in outs[1]  # console: p0
  _assert_like_one(two, one)


@pytest.mark.slow
def test_two_processes_preempted_through_one_resume_like_one(tmp_path, one_process):
  """USR1 to process 1 only: both agree on the step, save together, exit 75; the
  rerun of both restores collectively and ends like the single process."""
  import signal
  import time
  env, two = _env(), tmp_path / "two"
  procs = _start_two(two, env)
  log = two / "metrics.jsonl"
  deadline = time.time() + 400
  while procs[1].poll() is None and time.time() < deadline and not (
      log.exists() and '"train_step"' in log.read_text()):
    time.sleep(0.02)
  procs[1].send_signal(signal.SIGUSR1)
  outs = [p.communicate(timeout=500)[0] for p in procs]
  assert [p.returncode for p in procs] == [75, 75], "\n".join(o[-1500:] for o in outs)
  steps = checkpoint.Checkpointer(two / "checkpoints").all_steps()
  assert len(steps) == 1 and steps[0] < 6  # mid-epoch
  procs = _start_two(two, env)
  outs = [p.communicate(timeout=500)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outs)
  assert f"resumed from step {steps[0]}" in outs[0]
  _assert_like_one(two, one_process)


def _streamed_run(tmp_path):
  """A ResNet on a generated ImageNet-layout folder, streamed (data.stream=always)."""
  from tests import imagenet_folder
  root = imagenet_folder.make(tmp_path / "inet", classes=6, train_per_class=16,
                              val_per_class=4)
  return ("configs/resnet.py:tiny", [
      "--config.data.source=image_folder", f"--config.data.root={root}",
      "--config.data.image_size=16", "--config.data.stream=always",
      f"--config.data.cache_dir={tmp_path / 'cache'}",
      "--config.train.batch_size=16", "--config.data.eval_batch_size=16",
      "--config.train.epochs=1", "--config.train.log_every_steps=1"])


@pytest.mark.slow
def test_two_processes_streaming_a_folder_match_one(tmp_path):
  """Under jax.distributed each process reads only its own columns of every row
  (stream.columns) and the global batch is assembled across processes: the run ends
  as the same streamed run in one process does."""
  run, env = _streamed_run(tmp_path), _env()
  single = subprocess.run(_main(tmp_path / "one", run=run), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-1500:]
  procs = _start_two(tmp_path / "two", env, run=run)
  outs = [p.communicate(timeout=500)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outs)
  _assert_like_one(tmp_path / "two", tmp_path / "one")


def _assert_like_one(two, one):

  def records(w):
    return [json.loads(l) for l in (w / "metrics.jsonl").read_text().splitlines()]
  r2, r1 = records(two), records(one)
  # one writer: the same lines as one process, none twice
  assert [(r["split"], r["step"]) for r in r2] == [(r["split"], r["step"]) for r in r1]
  losses2 = [r["loss"] for r in r2 if r["split"] == "train_step"]
  losses1 = [r["loss"] for r in r1 if r["split"] == "train_step"]
  assert len(losses1) >= 5
  np.testing.assert_allclose(losses2, losses1, rtol=1e-3)
  state1 = _final_params(one)
  p2, p1 = _final_params(two, like=state1)["params"], state1["params"]
  import jax
  assert len(jax.tree.leaves(p1)) > 0
  for a, b in zip(jax.tree.leaves(p2), jax.tree.leaves(p1)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
  s2, s1 = (json.loads((w / "summary.json").read_text()) for w in (two, one))
  assert len(s2["provenance"]["devices"]) == 2  # one mesh over both processes
  assert abs(s2["test"]["accuracy"] - s1["test"]["accuracy"]) <= 2 / 80


@pytest.mark.slow
def test_a_held_workdir_stops_both_processes_with_one_line_each(tmp_path):
  """Process 0 alone takes the lock (after jax.distributed.initialize) and tells
  process 1, so both exit 2 instead of one waiting forever at a collective."""
  from jaxreg import lock
  workdir = tmp_path / "w"
  with lock.acquire(workdir):  # another run holds it (this test process)
    procs = _start_two(workdir, _env())
    outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [2, 2], "\n".join(o[-1500:] for o in outs)
  for i, out in enumerate(outs):
    # gloo's C++ prints its connection line itself, in every multi-process CPU run
    lines = [l for l in out.splitlines() if l.strip() and not l.startswith("[Gloo]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), out[-1500:]
    assert f"workdir {workdir} is in use by another jaxreg process" in lines[0]
  assert f"(pid {os.getpid()} on " in outs[0]
  assert sorted(p.name for p in workdir.iterdir()) == [lock.LOCK_FILE]

"""One writer per workdir, nothing half-written, and a rerun after any interruption
ends exactly like the uninterrupted run (issue 14): the lock, validation before the
first write, metrics.jsonl repair, the config kept in every checkpoint, corrupt
checkpoints set aside, evaluate reading without touching the trainer's files."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxreg import checkpoint, config as config_lib, io, lock, logs, preemption, sweep, train
from jaxreg.evaluate import evaluate_workdir
from tests.conftest import ROOT, python_env, tiny_config

OVERRIDES = {"train.epochs": 3, "train.log_every_steps": 5}  # 12 steps an epoch
ARGS = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]


def _config(**more):
  return tiny_config(**OVERRIDES, **more)


def _records(workdir):
  return [json.loads(l) for l in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _same_run(a, b):
  """Two workdirs hold the same result: summary (bar timings) and every log line."""
  sa, sb = (json.loads((Path(w) / "summary.json").read_text()) for w in (a, b))
  for key in ("best_step", "evaluated_step", "epochs_completed", "val", "test"):
    assert sa[key] == sb[key], key
  assert _records(a) == _records(b)


def _snapshot(path: Path):
  import hashlib
  if not path.exists():
    return None
  return {p.relative_to(path).as_posix(): "dir" if p.is_dir() else
          hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  train.train_and_evaluate(_config(), workdir)
  return workdir


@pytest.fixture(autouse=True)
def _clear_preemption():
  preemption.clear()
  yield
  preemption.clear()


class _Killed(BaseException):
  """Stands for SIGKILL in-process: nothing catches it, nothing after it runs."""


def _kill_at_save(monkeypatch, n: int):
  """The n-th checkpoint save (1-based) dies before it writes anything."""
  real, calls = checkpoint.Checkpointer.save, []

  def save(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == n:
      raise _Killed()
    return real(self, *args, **kwargs)
  monkeypatch.setattr(checkpoint.Checkpointer, "save", save)


# ------------------------------------------------------------------------ the lock


def test_a_second_trainer_is_refused_and_the_workdir_left_as_it_was(tmp_path):
  workdir = tmp_path / "w"
  with lock.acquire(workdir):  # another process would hold it the same way
    before = _snapshot(workdir)
    with pytest.raises(lock.LockHeld) as info:
      train.train_and_evaluate(_config(), workdir)
    assert _snapshot(workdir) == before
  message = str(info.value)
  assert f"pid {os.getpid()} on {socket.gethostname()}" in message
  assert "\n" not in message


HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from jaxreg import lock
held = lock.acquire(sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
  proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), str(tmp_path)],
                          stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(lock.LockHeld, match=f"pid {proc.pid} "):
      lock.acquire(tmp_path)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  with lock.acquire(tmp_path) as held:  # the kernel released it with the process
    assert held.held
    assert lock.holder(tmp_path).startswith(f"pid {os.getpid()} ")


def test_a_filesystem_without_locks_warns_once_and_goes_on(tmp_path, monkeypatch, capsys):
  import fcntl

  def no_locks(fd, op):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
  monkeypatch.setattr(fcntl, "flock", no_locks)
  with lock.acquire(tmp_path) as held:
    assert not held.held
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("warning: cannot lock")
  assert "no working file locks" in err[0]


def _wait_for(predicate, timeout, proc=None):
  deadline = time.time() + timeout
  while not predicate():
    assert time.time() < deadline, "timed out"
    assert proc is None or proc.poll() is None, "the process ended first"
    time.sleep(0.02)


@pytest.mark.slow
def test_two_trainers_on_one_workdir_leave_one_clean_run_and_one_refusal(tmp_path):
  """The issue's command: `for d in 0 1; do (sleep $d; jaxreg.main ...) & done`."""
  workdir, epochs = tmp_path / "w", 12  # long enough to still train when 2 starts
  cmd = [sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
         f"--workdir={workdir}", f"--config.train.epochs={epochs}"]
  procs = []
  for delay in (0, 1):
    time.sleep(delay)
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=python_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  outs = [p.communicate(timeout=300) for p in procs]
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 2], [o[1][-1500:] for o in outs]
  winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
  lines = outs[loser][1].strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), outs[loser][1]
  assert f"in use by another jaxreg process (pid {procs[winner].pid} on " in lines[0]
  keys = [(r["split"], r["step"]) for r in _records(workdir)]
  assert len(keys) == len(set(keys))  # every line once
  assert [s for split, s in keys if split == "val"] == list(range(12, 12 * epochs + 1, 12))
  assert [split for split, _ in keys].count("test") == 1
  assert json.loads((workdir / "summary.json").read_text())["epochs_completed"] == epochs


# ------------------------------------------------------------- validate, then write


def test_the_corrected_rerun_after_a_misspelt_data_file_works(tmp_path):
  words = {"a": "apple pear", "b": "bus train", "c": "cat dog"}
  train_file = tmp_path / "train.csv"
  train_file.write_text("text,label\n" + "".join(
      f"{words[c]} {i},{c}\n" for i in range(40) for c in "abc"))
  data = {"data.source": "csv", "data.test_fraction": 0.2,
          "data.cache_dir": str(tmp_path / "cache"), "train.epochs": 1}
  workdir = tmp_path / "w"
  with pytest.raises(FileNotFoundError, match="trian.csv"):
    train.train_and_evaluate(tiny_config(**data, **{"data.train_file": str(
        tmp_path / "trian.csv")}), workdir)
  assert not workdir.exists()  # not even config.json or an empty directory
  summary = train.train_and_evaluate(
      tiny_config(**data, **{"data.train_file": str(train_file)}), workdir)
  assert summary["epochs_completed"] == 1


# ------------------------------------------------------------------- metrics.jsonl


def test_a_kill_before_the_first_checkpoint_leaves_no_stale_lines(tmp_path, monkeypatch,
                                                                  uninterrupted):
  _kill_at_save(monkeypatch, 1)
  with pytest.raises(_Killed):
    train.train_and_evaluate(_config(), tmp_path)
  assert any(r["split"] == "val" for r in _records(tmp_path))  # written, not saved
  monkeypatch.undo()
  train.train_and_evaluate(_config(), tmp_path)
  _same_run(tmp_path, uninterrupted)


def test_a_torn_last_line_is_dropped_with_a_warning_and_the_rerun_matches(
    tmp_path, monkeypatch, capsys, uninterrupted):
  _kill_at_save(monkeypatch, 2)
  with pytest.raises(_Killed):
    train.train_and_evaluate(_config(), tmp_path)
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"split": "train_step", "step": 2')  # a write cut by the kill
  monkeypatch.undo()
  capsys.readouterr()
  train.train_and_evaluate(_config(), tmp_path)
  warnings = [l for l in capsys.readouterr().err.splitlines() if "cut short" in l]
  assert len(warnings) == 1 and warnings[0].startswith("warning: ")
  _same_run(tmp_path, uninterrupted)


# ------------------------------------------------------- the config travels along


def test_a_deleted_config_json_is_checked_against_the_checkpoint(tmp_path, uninterrupted):
  workdir = tmp_path / "w"
  shutil.copytree(uninterrupted, workdir)
  original = (workdir / "config.json").read_text()
  (workdir / "config.json").unlink()
  with pytest.raises(config_lib.ConfigError,
                     match=r"other settings \(optim.learning_rate; from checkpoint"):
    train.train_and_evaluate(_config(**{"optim.learning_rate": 0.1}), workdir)
  assert not (workdir / "config.json").exists()
  # evaluate reads the checkpoint's copy too
  assert evaluate_workdir(workdir, "test")["accuracy"] == json.loads(
      (workdir / "summary.json").read_text())["test"]["accuracy"]
  train.train_and_evaluate(_config(), workdir)  # the same settings: fine, file restored
  assert (workdir / "config.json").read_text() == original


# ------------------------------------------------------------ corrupt checkpoints


def _flip_low_bit(step_dir: Path) -> Path:
  """Flips the lowest bit of one float32 of the largest array file (a value still
  plausible, so only a checksum can tell)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  big = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(big.read_bytes())
  data[len(data) // 2 & ~3] ^= 1
  big.write_bytes(bytes(data))
  return big


def _truncate(step_dir: Path) -> None:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  big = max(files, key=lambda p: p.stat().st_size)
  big.write_bytes(big.read_bytes()[: big.stat().st_size // 3])


def _preempted_at_step_30(workdir, monkeypatch):
  """Trains until a preemption checkpoint at step 30 (mid epoch 3): kept are that
  step and the best of steps 12 and 24."""
  real = logs.MetricsLog.write

  def write(self, record):
    real(self, record)
    if record.get("split") == "train_step" and record["step"] == 30:
      preemption.request()
  monkeypatch.setattr(logs.MetricsLog, "write", write)
  with pytest.raises(preemption.Preempted):
    train.train_and_evaluate(_config(), workdir)
  monkeypatch.undo()
  preemption.clear()
  ckpt = checkpoint.Checkpointer(Path(workdir) / "checkpoints")
  steps, best = ckpt.all_steps(), ckpt.best_step()
  ckpt.close()
  assert steps[-1] == 30 and len(steps) == 2, steps
  return best


def test_a_corrupt_latest_checkpoint_is_set_aside_and_the_replay_matches(
    tmp_path, monkeypatch, capsys, uninterrupted):
  best = _preempted_at_step_30(tmp_path, monkeypatch)
  _truncate(tmp_path / "checkpoints" / "30")
  capsys.readouterr()
  train.train_and_evaluate(_config(), tmp_path)
  err = capsys.readouterr().err
  warning = [l for l in err.splitlines() if l.startswith("warning")]
  assert len(warning) == 1 and warning[0].startswith("warning: checkpoint step 30 (")
  assert f"resuming from step {best}" in warning[0]
  assert (tmp_path / "checkpoints.set-aside" / "30-corrupt").is_dir()
  _same_run(tmp_path, uninterrupted)


def test_a_flipped_bit_in_the_only_earlier_checkpoint_stops_with_what_to_do(
    tmp_path, monkeypatch, uninterrupted):
  best = _preempted_at_step_30(tmp_path, monkeypatch)
  _flip_low_bit(tmp_path / "checkpoints" / str(best))
  before = _snapshot(tmp_path)
  with pytest.raises(config_lib.ConfigError) as info:
    train.train_and_evaluate(_config(), tmp_path)
  message = str(info.value)
  assert f"checkpoint step {best} ({tmp_path / 'checkpoints' / str(best)}) is corrupt" \
      in message and "does not match its checksum" in message
  assert f"move {tmp_path / 'checkpoints'} aside" in message
  assert _snapshot(tmp_path) == before
  # doing what it says trains again from the start, to the same result
  (tmp_path / "checkpoints").rename(tmp_path / "checkpoints.old")
  train.train_and_evaluate(_config(), tmp_path)
  _same_run(tmp_path, uninterrupted)


# ---------------------------------------------------- evaluate reads, never writes


def test_evaluate_leaves_a_running_trainers_files_alone(tmp_path, uninterrupted):
  workdir = tmp_path / "w"
  shutil.copytree(uninterrupted, workdir)
  in_flight = workdir / "checkpoints" / "48.orbax-checkpoint-tmp"
  (in_flight / "state").mkdir(parents=True)  # a save the trainer is writing now
  before = _snapshot(workdir)
  evaluate_workdir(workdir, "val", "latest")
  after = _snapshot(workdir)
  assert in_flight.is_dir()
  assert {k: v for k, v in after.items() if not k.startswith("eval")} == before


def test_a_checkpoint_deleted_while_evaluate_reads_it_is_one_line(tmp_path, monkeypatch,
                                                                  uninterrupted):
  workdir = tmp_path / "w"
  shutil.copytree(uninterrupted, workdir)
  real = checkpoint.Checkpointer.restore

  def trainer_deletes_it_meanwhile(self, step, target):
    shutil.rmtree(Path(self.directory) / str(step))
    return real(self, step, target)
  monkeypatch.setattr(checkpoint.Checkpointer, "restore", trainer_deletes_it_meanwhile)
  with pytest.raises(FileNotFoundError) as info:
    evaluate_workdir(workdir, "test", "best")
  assert "was deleted while it was read" in str(info.value)
  assert "\n" not in str(info.value)


# ---------------------------------------------------------------- atomic files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
  path = tmp_path / "summary.json"
  io.atomic_write_json(path, {"old": 1})

  def disk_full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, "fsync", disk_full)
  with pytest.raises(OSError) as info:
    io.atomic_write_json(path, {"new": 2})
  monkeypatch.undo()
  assert json.loads(path.read_text()) == {"old": 1}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
  message = io.refused_write(info.value, tmp_path)
  assert message.startswith(f"no space left on device writing {path} (")
  assert " free)" in message


def test_a_refused_orbax_write_is_named_with_the_free_space(tmp_path):
  error = ValueError(f'RESOURCE_EXHAUSTED: Error writing local file "{tmp_path}/c/1/x": '
                     "Failed to write 5733 bytes to file 11: No space left on device "
                     "[os_error_code='28']")
  message = io.refused_write(RuntimeError("wrapped"), tmp_path) or ""
  assert message == ""
  wrapped = RuntimeError("save failed")
  wrapped.__cause__ = error
  message = io.refused_write(wrapped)
  assert message.startswith(f"no space left on device writing {tmp_path}/c/1/x (")


def test_a_half_written_summary_does_not_count_as_done(tmp_path):
  run = sweep.Run(0, "r", {}, None, tmp_path)
  (tmp_path / "summary.json").write_text('{"best_step": 12, "test": {"acc')
  assert not run.finished
  (tmp_path / "summary.json").write_text(json.dumps({"best_step": 12, "test": {}}))
  assert run.finished


@pytest.fixture
def small_disk(tmp_path):
  """A 600 kB tmpfs (a full disk for real), where mounting is allowed (root, CI)."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs",
                          str(disk)], capture_output=True, text=True)
  if mount.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
  try:
    yield disk
  finally:
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_path_and_the_rerun_resumes(small_disk,
                                                                       uninterrupted):
  workdir = small_disk / "w"
  cmd = [sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
         f"--workdir={workdir}", *ARGS]
  full = subprocess.run(cmd, cwd=ROOT, env=python_env(), capture_output=True, text=True,
                        timeout=300)
  assert full.returncode == io.WRITE_REFUSED, full.stderr[-3000:]
  ours = ("train ", "epoch ")
  others = [l for l in full.stderr.splitlines() if l.strip() and not l.startswith(ours)]
  # the file that was refused, or the workdir when the error (e.g. from orbax's
  # tensorstore) carries no file name: which write hits the full disk is timing
  assert len(others) == 1 and re.match(
      rf"error: no space left on device writing {re.escape(str(workdir))}[/ ]",
      others[0]), full.stderr[-3000:]
  assert " free); free some space, then rerun" in others[0]
  # more space, the same command: it resumes and ends like the uninterrupted run
  subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
  rerun = subprocess.run(cmd, cwd=ROOT, env=python_env(), capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  _same_run(workdir, uninterrupted)


def test_a_group_with_a_member_in_use_is_refused_and_writes_nothing(tmp_path):
  from jaxreg import group
  configs = [_config(**{"seed": s}) for s in (0, 1)]
  workdirs = [tmp_path / "m0", tmp_path / "m1"]
  with lock.acquire(workdirs[1]):
    with pytest.raises(lock.LockHeld, match="m1 is in use"):
      group.train_group(configs, workdirs)
  assert not workdirs[0].exists()
  assert sorted(p.name for p in workdirs[1].iterdir()) == [lock.LOCK_FILE]

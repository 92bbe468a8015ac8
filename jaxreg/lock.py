"""One writer per directory: an OS file lock held while a process trains into it.

`acquire(directory)` takes an exclusive `fcntl.flock` on `directory/.jaxreg.lock`
without waiting and writes the holder (pid, host, start time) into the file. The
kernel releases the lock when the holder's file descriptor closes, which includes
any death of the process (SIGKILL, OOM kill, a crash): a lock is never stale, and
the lock file itself is left in place (deleting it would let two processes lock two
different files). A second process gets `LockHeld`, one line naming the holder;
`jaxreg.main` exits 2 with it.

Why flock and not a pid file: a pid file outlives a killed holder and needs guessing
("is pid 1234 on host X still alive?"); flock has no such state.

Shared filesystems: flock works across hosts on NFS (Linux emulates it with NFS
byte-range locks; needs lockd, i.e. not the `nolock` mount option) and on Lustre
mounted with `-o flock`. With `-o localflock` (Lustre) or `nolock` (NFS) a lock is
only seen by processes on the same host: two hosts can then train into one workdir
and corrupt it. Where the filesystem refuses locks altogether (Lustre `noflock`:
ENOSYS), the run goes on unlocked after a one-line warning.

Multi-process runs (`jax.distributed`) lock in process 0 only (`acquire_main`),
after initialization; its verdict is broadcast, so every process exits 2 together.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import socket
import sys
from pathlib import Path

from jaxreg import config as config_lib

LOCK_FILE = ".jaxreg.lock"
_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class LockHeld(config_lib.ConfigError):
  """Another live process holds the directory's lock (a usage error: exit 2)."""


class DirectoryLock:
  """A held lock (or, on a filesystem without locks, a placeholder); release() or
  use as a context manager. Released by the kernel if the process dies."""

  def __init__(self, path: Path, fd: int | None):
    self.path, self._fd = path, fd

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # closing the descriptor drops the flock
      self._fd = None

  def __enter__(self) -> "DirectoryLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def holder(directory: str | os.PathLike) -> str:
  """What the lock file says about its holder ('' when empty or unreadable)."""
  try:
    return (Path(directory) / LOCK_FILE).read_text().strip()
  except OSError:
    return ""


def check(directory: str | os.PathLike, what: str = "workdir") -> None:
  """Raises LockHeld if a live process holds `directory`'s lock; creates nothing
  (a quick refusal before a run loads its data; `acquire` decides)."""
  path = Path(directory) / LOCK_FILE
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return  # no lock file (or unreadable): `acquire` will tell
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise LockHeld(_held_message(Path(directory), what)) from None
  finally:
    os.close(fd)


def _held_message(directory: Path, what: str) -> str:
  who = holder(directory) or "holder unknown"
  return (f"{what} {directory} is in use by another jaxreg process ({who}); wait for "
          "it to end, or use another --workdir")


def acquire(directory: str | os.PathLike, what: str = "workdir") -> DirectoryLock:
  """Creates `directory` if needed and locks it; raises LockHeld if another process
  holds it. `what` names the directory in the message (workdir, sweep directory)."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise LockHeld(_held_message(directory, what)) from None
    if e.errno in _UNSUPPORTED:
      print(f"warning: cannot lock {path} ({os.strerror(e.errno)}): this filesystem "
            "has no working file locks, so nothing stops a second run on this "
            f"{what} (see jaxreg/lock.py)", file=sys.stderr, flush=True)
      return DirectoryLock(path, None)
    raise
  started = datetime.datetime.now().isoformat(timespec="seconds")
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n"
            .encode(), 0)
  return DirectoryLock(path, fd)


def acquire_main(directory: str | os.PathLike, what: str = "workdir"
                 ) -> DirectoryLock | None:
  """`acquire` in process 0 of a multi-process run (None elsewhere), with its verdict
  shared so that all processes raise LockHeld together; `acquire` in a single one."""
  # Here, not at the top: the report and the sweep's planning lock directories and
  # need no jax; only a run's workdir (jaxreg.train) comes here.
  import jax
  if jax.process_count() == 1:
    return acquire(directory, what)
  import numpy as np
  from jax.experimental import multihost_utils
  lock, message = None, ""
  if jax.process_index() == 0:
    try:
      lock = acquire(directory, what)
    except LockHeld as e:
      message = str(e)
  ok = multihost_utils.broadcast_one_to_all(np.int32(not message))
  if not int(ok):
    raise LockHeld(message or f"{what} {directory} is in use by another jaxreg process "
                   "(process 0 could not lock it; see its message)")
  return lock

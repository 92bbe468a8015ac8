"""Files in a workdir: written whole or not at all, and one line when the disk refuses.

Every file jaxreg writes in a workdir or sweep directory (config.json, summary.json,
predictions, eval outputs, sweep.json, runs.csv, plots) goes through `atomic_write`:
the bytes go to a unique temporary name in the same directory, are fsynced, and are
renamed over the target (`os.replace`, atomic on POSIX filesystems), then the
directory is fsynced. A reader, or a rerun after a kill at any instant, sees the old
file or the new one, never a part. A failed write removes its temporary file.

`metrics.jsonl` is the one file appended to (`append_line`: one whole line per
write); `logs.MetricsLog` drops a torn last line on resume.

`refused_write(e, where)` turns an OSError (or an orbax/tensorstore error that wraps
one) from a full disk, a quota or a permission change into one line naming the path
and the free space; `cli.user_errors` exits with `WRITE_REFUSED` for it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from jaxreg.config import ConfigError  # light: ml_collections only

# EX_IOERR (BSD sysexits): the filesystem refused a write after the run had started.
WRITE_REFUSED = 74
_REFUSED = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
            errno.EROFS: "read-only filesystem"}


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
  """Replaces `path` with `data` (str is UTF-8) atomically; returns the path."""
  path = Path(path)
  if isinstance(data, str):
    data = data.encode("utf-8")
  with naming(path):
    return _atomic_write(path, data)


def _atomic_write(path: Path, data: bytes) -> Path:
  # A unique name: two writers of one file (e.g. two `jaxreg.evaluate`) never share
  # a temporary. os.open with mode 0o666 keeps the umask's permissions (mkstemp: 0600).
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except OSError:
      pass
    raise
  _fsync_dir(path.parent)
  return path


def atomic_write_json(path: str | os.PathLike, obj, **dumps_kwargs) -> Path:
  """`obj` as indented JSON plus a newline (the format of every jaxreg .json file)."""
  dumps_kwargs.setdefault("indent", 2)
  return atomic_write(path, json.dumps(obj, **dumps_kwargs) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
  """Appends one line in one write call (a kill leaves at most a torn last line)."""
  with naming(path), open(path, "a", encoding="utf-8") as f:
    f.write(line.rstrip("\n") + "\n")


@contextlib.contextmanager
def naming(path):
  """An OSError from writing `path` names it (a failed flush or close does not)."""
  try:
    yield
  except OSError as e:
    if e.filename is None and e.errno is not None:
      raise type(e)(e.errno, e.strerror, os.fspath(path)) from e
    raise


def _fsync_dir(directory: Path) -> None:
  """Makes a rename durable across a power loss (not needed against a kill)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def free_space(path: str | os.PathLike) -> str:
  """'12.3 MB free' on the filesystem holding `path` (or its nearest existing parent)."""
  p = Path(os.path.abspath(path))
  while not p.exists() and p != p.parent:
    p = p.parent
  try:
    free = shutil.disk_usage(p).free
  except OSError:
    return "free space unknown"
  for unit in ("B", "kB", "MB", "GB", "TB"):
    if free < 1000 or unit == "TB":
      return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
    free /= 1000
  return ""  # unreachable


# tensorstore (orbax's array writer) reports OS errors inside its own message:
# 'Error writing local file "PATH": ... [os_error_code=\'28\']'; some name a key
# inside the checkpoint ("opt_state.../0.0") instead of a file: absolute paths only.
_TS_PATH = re.compile(r'"(/[^"]+)"')
_TS_CODE = re.compile(r"os_error_code='?(\d+)")


def _os_error_in(e: BaseException) -> tuple[int, str | None] | None:
  """(errno, filename) of the first refused write in `e` or its causes."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _REFUSED:
      return e.errno, e.filename
    text = str(e)
    code = _TS_CODE.search(text)
    if code and int(code.group(1)) in _REFUSED:
      where = _TS_PATH.search(text)
      return int(code.group(1)), where.group(1) if where else None
    if "No space left on device" in text:
      where = _TS_PATH.search(text)
      return errno.ENOSPC, where.group(1) if where else None
    e = e.__cause__ or e.__context__
  return None


def refused_write(e: BaseException, where: str | os.PathLike | None = None) -> str | None:
  """One line for a write the filesystem refused (full disk, quota, permissions),
  naming the file and the free space of its filesystem; None for other errors.
  `where`: the directory to name when the error carries no file name."""
  found = _os_error_in(e)
  if found is None:
    return None
  code, filename = found
  path = filename or where
  what = _REFUSED[code]
  hint = ("free some space, then rerun the same command to resume"
          if code in (errno.ENOSPC, errno.EDQUOT) else
          "make it writable, then rerun the same command to resume")
  if path is None:
    return f"{what} while writing; {hint}"
  return f"{what} writing {os.fspath(path)} ({free_space(path)}); {hint}"


def check_writable_dir(path: str | os.PathLike, what: str = "workdir") -> None:
  """Raises ConfigError (one line) unless `path` is a directory this process can
  write, or can be created as one. Leaves the filesystem as it found it: the probe
  is an unnamed file (O_TMPFILE where the filesystem has it), never a directory."""
  path = Path(path)
  probe = path
  while not probe.exists():
    if probe.is_symlink():  # a dangling link cannot be made a directory
      raise ConfigError(f"{what} {path} cannot be created: {probe} is a broken "
                        "symbolic link")
    if probe == probe.parent:
      break
    probe = probe.parent
  if not probe.is_dir():
    where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
    raise ConfigError(f"{what} {path} {where}, not a directory; use another --workdir")
  try:
    with tempfile.TemporaryFile(dir=probe):
      pass
  except OSError as e:
    reason = _REFUSED.get(e.errno, os.strerror(e.errno) if e.errno else str(e))
    where = "" if probe == path else f" (its parent {probe} is not writable)"
    raise ConfigError(f"{what} {path} is not writable{where}: {reason}; use another "
                      "--workdir or fix its permissions") from None

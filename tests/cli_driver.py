"""Runs many command lines of one jaxreg CLI in one process (tests/test_bad_inputs.py).

  python -m tests.cli_driver jaxreg.main < cases.json   ->  {id: {code, stderr}} on stdout

Each case is {"id", "argv": [...], "inject": null | {"errno": "ENOSPC", "under": DIR}}.
The module's flags are parsed from scratch for every case (as `app.run` would), and
file descriptor 2 is captured, so anything a library prints to stderr is seen.
`inject` makes every write the process attempts under DIR fail with that errno, as a
full disk or a permission problem would, even when running as root (CI does).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import importlib
import json
import os
import sys
import tempfile
import traceback


def _under(path, root: str) -> bool:
  try:
    path = os.path.abspath(os.fspath(path))
  except TypeError:  # a file descriptor
    return False
  return path == root or path.startswith(root.rstrip("/") + "/")


@contextlib.contextmanager
def inject(spec):
  """os.open/open/mkdir of a path under spec['under'] for writing -> OSError(errno)."""
  if not spec:
    yield
    return
  code = getattr(errno, spec["errno"])
  root = os.path.abspath(spec["under"])
  real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
  writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

  def refuse(path):
    raise OSError(code, os.strerror(code), os.fspath(path))

  def fake_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and _under(file, root):
      refuse(file)
    return real_open(file, mode, *args, **kwargs)

  def fake_os_open(path, flags, *args, **kwargs):
    if flags & writing and _under(path, root):
      refuse(path)
    return real_os_open(path, flags, *args, **kwargs)

  def fake_mkdir(path, *args, **kwargs):
    if _under(path, root):
      refuse(path)
    return real_mkdir(path, *args, **kwargs)

  builtins.open, os.open, os.mkdir = fake_open, fake_os_open, fake_mkdir
  try:
    yield
  finally:
    builtins.open, os.open, os.mkdir = real_open, real_os_open, real_mkdir


@contextlib.contextmanager
def captured_stderr():
  """fd 2 -> a temporary file for the block; yields a list that gets its text."""
  out: list[str] = []
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as f:
    os.dup2(f.fileno(), 2)
    try:
      yield out
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      f.seek(0)
      out.append(f.read().decode("utf-8", "replace"))


def run_case(module, case) -> dict:
  from absl import flags
  from jaxreg import cli, preemption
  # A fresh start, as in a new process: config_flags defines one flag per
  # --config.KEY override while parsing, and loads config files as module
  # 'config_config' (re-executed into the old module, whose names would survive).
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  for name in [n for n in sys.modules if n.startswith("config_")]:
    del sys.modules[name]
  preemption.clear()
  sys.argv = list(case["argv"])
  code = 0

  def exit_now(status):  # cli exits at once after a refused write: not the driver
    raise SystemExit(status)
  real_exit, os._exit = os._exit, exit_now
  with captured_stderr() as err:
    with inject(case.get("inject")):
      try:
        module.main(cli.parse_flags(sys.argv))
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except BaseException:  # noqa: BLE001 - an uncaught error is a finding
        traceback.print_exc()
        code = "uncaught"
  os._exit = real_exit
  return {"code": code, "stderr": err[0]}


def main() -> None:
  name = sys.argv[1]
  cases = json.load(sys.stdin)
  module = importlib.import_module(name)
  if hasattr(module, "__path__"):  # a package (jaxreg.sweep): its CLI is in cli.py
    module = importlib.import_module(f"{name}.cli")
  results = {case["id"]: run_case(module, case) for case in cases}
  sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
  main()

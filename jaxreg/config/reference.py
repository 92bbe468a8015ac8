"""The schema in words: docs/config.md and the listing of `python -m jaxreg.config`.

Both are generated from jaxreg/config/schema.py, so a key's doc is written once;
tests/test_config.py keeps the checked-in docs/config.md equal to `markdown()`.
"""

from __future__ import annotations

import json
import textwrap

from jaxreg.config import flatten, schema

DOC_PATH = "docs/config.md"

_INTRO = """\
Configs are Python files whose `get_config(arg=None)` returns an `ml_collections`
ConfigDict built on `jaxreg.config.get_base_config()`: they override keys, never add
them (a key the schema does not know is an error, with the nearest known key).
`--config=lstm:NAME` (a config shipped in jaxreg/configs, by name) or
`--config=PATH.py:NAME` (any file, e.g. configs/lstm.py) calls `get_config("NAME")`;
`--config.KEY=VALUE` overrides one key on the command line. Every key is checked before anything is read or
written; a bad value exits with code 2 and one line naming the key and what is
allowed.

    jaxreg config --config=lstm:tiny --config.reg.l2=1e-4
    python -m jaxreg.config --config=configs/resnet.py --changed

print a resolved config, every key with its value and doc (`--changed`: only the keys
a config file or override changed)."""


def _section_of(name: str) -> str:
  return name.rsplit(".", 1)[0] if "." in name else ""


def _value(value) -> str:
  """A value as a config file or --config.KEY would spell it."""
  return repr(value) if isinstance(value, str) else json.dumps(value)


def _shown(value) -> str:
  """A default in the reference: strings bare ('' when empty), the rest as JSON."""
  if isinstance(value, str):
    return value or "''"
  return json.dumps(value)


def _cell(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
  """docs/config.md: every key's type, default, allowed values and doc, by section."""
  docs = {s.name: s.doc for s in schema.KEYS if isinstance(s, schema.Section)}
  out = [f"<!-- Generated from jaxreg/config/schema.py by `python -m jaxreg.config "
         f"--markdown > {DOC_PATH}`; edit the schema, not this file. -->",
         "", "# Config reference", "", _INTRO]
  section = None
  for key in schema.KEYS:
    if isinstance(key, schema.Section):
      continue
    where = _section_of(key.name)
    if where != section:
      section = where
      out += ["", f"## `{where}`" if where else "## Top level", ""]
      if docs.get(where):
        out += [docs[where], ""]
      out += ["| key | type | default | allowed | meaning |",
              "| --- | --- | --- | --- | --- |"]
    out.append(f"| `{key.name}` | {key.type} | `{_cell(_shown(key.default))}` | "
               f"{_cell(key.rule.allowed())} | {_cell(key.doc)} |")
  out += ["", "## Rules between keys", "",
          "Checked after every key passed its own rule, in this order:", ""]
  for rule in schema.CROSS_KEY_RULES:
    out.append(f"- {' '.join((rule.__doc__ or '').split())}")
  return "\n".join(out) + "\n"


def listing(config, only_changed: bool = False, width: int = 88) -> str:
  """A resolved config, a paragraph a key: `KEY = VALUE` (and the default when it
  differs), the doc, what is allowed."""
  flat = flatten(json.loads(config.to_json()))
  out = []
  for key in schema.KEYS:
    if isinstance(key, schema.Section):
      continue
    value = flat[key.name]
    changed = value != key.default or type(value) is not type(key.default)
    if only_changed and not changed:
      continue
    head = f"{key.name} = {_value(value)}"
    if changed:
      head += f"    # default: {_value(key.default)}"
    doc = textwrap.fill(key.doc, width=width, initial_indent="    ",
                        subsequent_indent="    ")
    out += [head, doc, f"    allowed: {key.rule.allowed()}"]
  return "\n".join(out) + "\n"


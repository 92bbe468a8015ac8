"""How much disk a jaxreg install takes, with and without its extras (docs/install.md).

  .venv/bin/python bench/install_size.py [--extras=test,tfds,trackers] [--json]

Reads pyproject.toml's requirements and walks them through the installed packages'
own metadata (their Requires-Dist, extras and markers evaluated here), then adds up the
files each distribution's RECORD lists. So it needs the full install (`make test`'s
.venv) and no network: `lean` is what `pip install jaxreg` would install on this
platform, `full` adds the extras the Makefile installs. A requirement not installed
here is named, not counted. jaxreg itself and what is installed beside it (the MiniLM
of tests/test_bert.py, pip) are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MIB = 2 ** 20


def installed() -> dict[str, metadata.Distribution]:
  return {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}


def dist_bytes(dist: metadata.Distribution) -> int:
  total = 0
  for f in dist.files or ():
    try:
      total += os.path.getsize(dist.locate_file(f))
    except OSError:  # listed in RECORD, not on disk (a .pyc never written)
      pass
  return total


def closure(requirements: list[str], dists: dict) -> tuple[set[str], set[str]]:
  """(installed distributions the requirements pull in, requirements not installed)."""
  env = default_environment()
  found, absent = set(), set()
  todo = [(Requirement(r), "") for r in requirements]
  seen = set()
  while todo:
    req, extra = todo.pop()
    if req.marker and not req.marker.evaluate({**env, "extra": extra}):
      continue
    name = canonicalize_name(req.name)
    key = (name, frozenset(req.extras))
    if key in seen:
      continue
    seen.add(key)
    if name not in dists:
      absent.add(name)
      continue
    found.add(name)
    for spec in dists[name].requires or ():
      sub = Requirement(spec)
      # Base requirements always; extra-gated ones only for the extras asked for.
      for e in ("", *req.extras):
        if not sub.marker or sub.marker.evaluate({**env, "extra": e}):
          todo.append((sub, e))
          break
  return found, absent


def measure(extras: list[str]) -> dict:
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  dists = installed()
  core = list(project["dependencies"])
  optional = project.get("optional-dependencies", {})
  unknown = [e for e in extras if e not in optional]
  if unknown:
    raise SystemExit(f"error: --extras: {', '.join(unknown)} not in pyproject.toml "
                     f"(one of: {', '.join(optional)})")
  lean, lean_absent = closure(core, dists)
  full, full_absent = closure(core + [r for e in extras for r in optional[e]], dists)
  size = {n: dist_bytes(dists[n]) for n in full | lean}
  only_full = sorted(full - lean, key=lambda n: -size[n])
  return {
      "extras": extras,
      "lean": {"distributions": len(lean), "mib": round(sum(size[n] for n in lean) / MIB)},
      "full": {"distributions": len(full), "mib": round(sum(size[n] for n in full) / MIB)},
      "extras_add": [{"name": n, "mib": round(size[n] / MIB, 1)} for n in only_full],
      "largest_lean": [{"name": n, "mib": round(size[n] / MIB, 1)}
                       for n in sorted(lean, key=lambda n: -size[n])[:8]],
      "not_installed_here": sorted(lean_absent | full_absent),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--extras", default="test,tfds,trackers",
                      help="extras of the full install (comma-separated)")
  parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
  args = parser.parse_args(argv)
  result = measure([e for e in args.extras.split(",") if e])
  if args.json:
    print(json.dumps(result, indent=2))
    return 0
  for kind in ("full", "lean"):
    r = result[kind]
    label = f"jaxreg[{','.join(result['extras'])}]" if kind == "full" else "jaxreg"
    print(f"{kind:5s} {label}: {r['distributions']} distributions, {r['mib']} MiB")
  print("the extras add: " + ", ".join(f"{d['name']} {d['mib']:g}"
                                      for d in result["extras_add"]))
  print("largest in the lean install: " + ", ".join(
      f"{d['name']} {d['mib']:g}" for d in result["largest_lean"]))
  if result["not_installed_here"]:
    print("not installed here (not counted): " + ", ".join(result["not_installed_here"]),
          file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""The documentation holds together: every relative link in README.md and docs/ reaches a
file (and, with `#anchor`, a heading of it), and the README stays a short entry point."""

import re

import pytest

from tests.conftest import ROOT

README_MAX_LINES = 300
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str) -> list[str]:
  """The lines outside fenced code blocks (a `# comment` in a bash block is no heading,
  and `](` in code is no link)."""
  lines, in_code = [], False
  for line in text.splitlines():
    if FENCE.match(line.lstrip()):
      in_code = not in_code
    elif not in_code:
      lines.append(line)
  return lines


def _anchors(path) -> set[str]:
  """GitHub's heading ids: lowercased, punctuation dropped, spaces to hyphens, a repeated
  heading numbered -1, -2, ..."""
  seen: dict[str, int] = {}
  for line in _prose(path.read_text()):
    m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not m:
      continue
    slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    if n:
      seen[f"{slug}-{n}"] = 1
  return set(seen)


def _local_links(path) -> list[str]:
  links = []
  for line in _prose(path.read_text()):
    for target in LINK.findall(line):
      if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
        links.append(target)
  return links


def test_pages_exist():
  names = {p.relative_to(ROOT).as_posix() for p in PAGES}
  for page in ("workdir", "config", "regularizers", "data", "images", "bert", "sweeps",
               "cluster", "benchmarks", "design", "own_data"):
    assert f"docs/{page}.md" in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
  broken = []
  for target in _local_links(page):
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / file_part).resolve() if file_part else page
    if not dest.exists():
      broken.append(f"{target}: no such file")
    elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
      broken.append(f"{target}: no heading #{anchor} in {dest.name}")
  assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_is_short():
  n = len((ROOT / "README.md").read_text().splitlines())
  assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"


def test_multi_gpu_readers_find_that_jit_over_a_mesh_replaces_pmap():
  # Users asking for "multi-GPU pmap runs" look in the README and the cluster page.
  for page in ("README.md", "docs/cluster.md"):
    text = (ROOT / page).read_text()
    assert "pmap" in text and "mesh" in text, page


def test_own_data_walkthrough_uses_real_keys_and_variants():
  """docs/own_data.md's commands name config keys and a variant that exist."""
  from jaxreg import config as config_lib
  from jaxreg.configs import lstm
  text = (ROOT / "docs" / "own_data.md").read_text()
  keys = set(re.findall(r"--config\.([a-z_.]+)=", text))
  assert {"data.val_file", "data.strip_html", "data.max_length"} <= keys
  assert keys <= set(config_lib.KEY_BY_NAME), keys - set(config_lib.KEY_BY_NAME)
  assert "--config=lstm:reg" in text
  lstm.get_config("reg")

"""The data layer's dependency graph, read from the source (every import, function-local
ones included): data/ never reads the config module, is in no import circle, calls no
other module's private names, and says why wherever it imports inside a function."""

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "jaxreg"
DATA = PACKAGE / "data"


def module_name(path: Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
  return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[ast.AST, str]]:
  """(node, jaxreg module) for every import of a jaxreg module in the file."""
  out = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out += [(node, a.name) for a in node.names if a.name in known]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:  # `from jaxreg.data import text` names a module
        sub = f"{node.module}.{a.name}"
        out.append((node, sub if sub in known else node.module))
  return [(n, m) for n, m in out if m in known]


def graph() -> dict[str, set[str]]:
  mods = modules()
  return {name: {m for _, m in imports(path, set(mods))} - {name}
          for name, path in mods.items()}


def test_data_does_not_import_the_config_module():
  for name, path in modules().items():
    if name.startswith("jaxreg.data"):
      assert "jaxreg.config" not in {m for _, m in imports(path, set(modules()))}, name


def test_no_import_circle_runs_through_data():
  edges = graph()

  def reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
      for nxt in edges.get(todo.pop(), ()):
        if nxt == goal:
          return True
        if nxt not in seen:
          seen.add(nxt)
          todo.append(nxt)
    return False

  circles = [(a, b) for a in edges if a.startswith("jaxreg.data")
             for b in edges[a] if reaches(b, a)]
  assert not circles, circles


def test_no_private_names_of_other_modules_and_local_imports_say_why():
  known = set(modules())
  for path in sorted(DATA.glob("*.py")):
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    bound = set()  # local names of imported jaxreg modules
    for node, mod in imports(path, known):
      for a in node.names:
        if isinstance(node, ast.ImportFrom) and a.name.startswith("_"):
          raise AssertionError(f"{path.name}:{node.lineno} imports private {a.name}")
        full = f"{node.module}.{a.name}" if isinstance(node, ast.ImportFrom) else a.name
        if full in known:
          bound.add(a.asname or a.name)
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id in bound and node.attr.startswith("_")
          and not node.attr.startswith("__")):
        raise AssertionError(f"{path.name}:{node.lineno} calls "
                             f"{node.value.id}.{node.attr}")
    for fn in ast.walk(tree):
      if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      for node in ast.walk(fn):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
          said = [lines[node.lineno - 1]] + lines[max(node.lineno - 3, 0):node.lineno - 1]
          assert any("#" in line for line in said), \
              f"{path.name}:{node.lineno}: a function-local import without a comment why"

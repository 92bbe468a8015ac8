"""The README documents every config key (the table is the user's reference)."""

from jaxreg.config import get_base_config
from tests.conftest import ROOT


def _keys(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _keys(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


def test_every_config_key_is_in_the_readme():
  readme = (ROOT / "README.md").read_text()
  missing = [k for k in _keys(get_base_config().to_dict()) if f"`{k}`" not in readme]
  assert not missing, f"README lacks: {missing}"


def test_quick_start_commands_are_the_makefile_targets():
  readme = (ROOT / "README.md").read_text()
  makefile = (ROOT / "Makefile").read_text()
  assert "make run" in readme and "make test" in readme
  assert "\nrun:" in makefile and "\ntest:" in makefile
  assert "make test" in (ROOT / ".ci" / "run").read_text()

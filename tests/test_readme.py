"""The README's quick start matches the Makefile (the config reference, docs/config.md, is
tests/test_config.py's)."""

from tests.conftest import ROOT


def test_quick_start_commands_are_the_makefile_targets():
  readme = (ROOT / "README.md").read_text()
  makefile = (ROOT / "Makefile").read_text()
  assert "make run" in readme and "make test" in readme
  assert "\nrun:" in makefile and "\ntest:" in makefile
  assert "make test" in (ROOT / ".ci" / "run").read_text()

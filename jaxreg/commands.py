"""`jaxreg COMMAND [FLAGS]`: the console command installed with the package
(pyproject's [project.scripts]). Each command is the `python -m` module it names, run
as that module's main with the remaining flags, so both forms behave the same:

  jaxreg train    --config=lstm --workdir=DIR     python -m jaxreg.main
  jaxreg evaluate --workdir=DIR --split=test      python -m jaxreg.evaluate
  jaxreg predict  --workdir=DIR ...               python -m jaxreg.predict
  jaxreg export   --workdir=DIR ...               python -m jaxreg.export
  jaxreg sweep    --config=lstm --workdir=DIR --axis=reg.l2=0,1e-3   python -m jaxreg.sweep
  jaxreg report   --workdir=DIR                   python -m jaxreg.report
  jaxreg config   --config=lstm:trec              python -m jaxreg.config

`jaxreg COMMAND --help` lists a command's flags. A command whose module this jaxreg
lacks exits 2 with one line saying so.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

USAGE_ERROR = 2  # as jaxreg.cli: bad input exits 2 with one line on stderr

COMMANDS = {
    "train": "jaxreg.main",
    "evaluate": "jaxreg.evaluate",
    "predict": "jaxreg.predict",
    "export": "jaxreg.export",
    "sweep": "jaxreg.sweep",
    "report": "jaxreg.report",
    "config": "jaxreg.config",
}


def _usage() -> str:
  return (f"usage: jaxreg {{{','.join(COMMANDS)}}} [FLAGS]  "
          "(jaxreg COMMAND --help lists its flags)")


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(__doc__.strip() if len(argv) >= 2 else _usage(),
          file=sys.stdout if len(argv) >= 2 else sys.stderr)
    sys.exit(0 if len(argv) >= 2 else USAGE_ERROR)
  command, rest = argv[1], argv[2:]
  module = COMMANDS.get(command)
  if module is None:
    print(f"error: unknown command {command!r}: one of {', '.join(COMMANDS)}",
          file=sys.stderr)
    sys.exit(USAGE_ERROR)
  if importlib.util.find_spec(module) is None:  # predict/export: newer jaxreg only
    print(f"error: 'jaxreg {command}' is not available in this jaxreg "
          f"(no module {module})", file=sys.stderr)
    sys.exit(USAGE_ERROR)
  # What `python -m MODULE FLAGS` does: the module runs as __main__ (absl's --help
  # prints __main__'s docstring) with sys.argv[0] its file.
  sys.argv = [sys.argv[0], *rest]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()

"""The class-dependence report of a sweep.

  load.py         a sweep directory read (plan, statuses, summaries, predictions)
  analysis.py     `analyse`: the per-class numbers, a frozen result (no rendering)
  figures.py      the PNG figures (matplotlib's object API; no pyplot state)
  text.py         numbers and tables as text (markdown, CSV)
  markdown.py     `write_report`: DIR/report.md and DIR/report/
  power.py        --plan: how many seeds a sweep needs
  calibration.py  `calibrate`: simulated sweeps that check the flag
  cli.py          `python -m jaxreg.report` (help text in __main__.py)

  from jaxreg.report import analyse, load_sweep
  result = analyse(load_sweep("runs/sweep_l2"), axis="reg.l2")
"""

from jaxreg.report.analysis import Analysis, Change, Level, analyse
from jaxreg.report.load import ReportError, Sweep, load_sweep
from jaxreg.report.markdown import write_report

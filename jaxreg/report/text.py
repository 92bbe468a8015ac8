"""How the report writes numbers, names and tables (markdown and CSV)."""

from __future__ import annotations

import csv
import io as stdio
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxreg import io
from jaxreg.sweep.axes import display_value

SMALL_N = 50   # classes with fewer test examples get "(n=...)" beside their name
# Above MANY_CLASSES classes the report shows the movers (Analysis.most_changed): its
# markdown tables list TABLE_ROWS classes, its figures a bounded number; the CSV
# tables keep every class.
MANY_CLASSES = 20
TABLE_ROWS = 20
fmt = display_value  # an axis value as the report prints it ('' for the empty string)


def prose(name: str) -> str:
  """A class name as report.md shows it: in backticks when it holds a list separator
  (`,` or `;`), so 'Small classes: `x, y`, z' names two classes, not three. The CSV
  files keep the names as they are (their quoting keeps any name one value)."""
  if any(sep in name for sep in ",;") and "`" not in name:
    return f"`{name}`"
  return name


def prose_names(names: Sequence[str]) -> list[str]:
  return [prose(n) for n in names]


def label(name: str, n: int) -> str:
  """A class name, with its test count when it is small ('ABBR (n=9)')."""
  return f"{name} (n={int(n)})" if n < SMALL_N else name


def some(names: Sequence[str], k: int = 10) -> str:
  """'a, b, c' or, past k names, 'a, ..., j and 40 more'."""
  names = list(names)
  if len(names) <= k:
    return ", ".join(names)
  return ", ".join(names[:k]) + f" and {len(names) - k} more"


def pct(x, digits: int = 1) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def signed(x, digits: int = 1) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:+.{digits}f}"


def pval(p) -> str:
  if p is None or not np.isfinite(p):
    return "-"
  return f"{p:.2g}" if p >= 0.001 else "<0.001"


def p_is(p) -> str:
  """'= 0.012' or '< 0.001', to follow 'p '."""
  text = pval(p)
  return text.replace("<", "< ") if text.startswith("<") else f"= {text}"


def ci(m, lo, hi) -> str:
  """'85.0 [80.1, 89.2]' in percent, or the mean alone without an interval."""
  if not np.isfinite(lo):
    return pct(m)
  return f"{pct(m)} [{pct(lo)}, {pct(hi)}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
             align: str | None = None) -> str:
  align = align or "l" + "r" * (len(header) - 1)
  sep = ["---:" if a == "r" else "---" for a in align]
  lines = ["| " + " | ".join(map(str, header)) + " |", "| " + " | ".join(sep) + " |"]
  lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
            for row in rows]
  return "\n".join(lines)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
  """A CSV table, written atomically: floats exact (repr), NaN empty, bools
  true/false."""
  buf = stdio.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(header)
  for row in rows:
    w.writerow([_csv_cell(c) for c in row])
  io.atomic_write(path, buf.getvalue())


def write_table(path: Path, header: Sequence[str], rows: Sequence[dict]) -> None:
  """write_csv for rows given as dicts keyed by the header."""
  write_csv(path, header, [[row[k] for k in header] for row in rows])


def _csv_cell(c):
  if type(c) is int or type(c) is str:  # most cells: fast (1e6 of them at 1000 classes)
    return c
  if isinstance(c, (float, np.floating)):
    return "" if not np.isfinite(c) else repr(float(c))
  if isinstance(c, (np.integer,)):
    return int(c)
  if isinstance(c, bool):
    return "true" if c else "false"
  return c

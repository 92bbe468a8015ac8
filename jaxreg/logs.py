"""What a run writes as it goes: metrics.jsonl, TensorBoard events, a progress bar.

In a multi-process run (jax.distributed) only process 0 writes; the others' writers
do nothing, so the files are exactly those of a single-process run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import tqdm

from jaxreg import io
from jaxreg.config import ConfigError

METRICS_FILE = "metrics.jsonl"  # in a run's workdir (MetricsLog)


def _finite_or_none(x):
  if isinstance(x, float) and not math.isfinite(x):
    return None if math.isnan(x) else x
  return x


def _is_main() -> bool:
  return jax.process_index() == 0


class MetricsLog:
  """Append-only JSON lines (one whole line per write); on resume, lines past the
  restored step are dropped, and so is a last line torn by a kill mid-write."""

  def __init__(self, path: Path):
    self.path = Path(path)

  def check(self) -> None:
    """ConfigError unless the file parses (bar a torn last line); reads only."""
    if self.path.exists() and _is_main():
      self._parse()

  def truncate_after(self, step: int) -> None:
    """Keep lines with step <= `step`, minus the end-of-run test lines; a torn last
    line (no newline, or not JSON) is dropped with a one-line warning. Any other
    line that is not JSON is an error naming the file and line: the file was
    edited, and the replay cannot know what to keep."""
    if not self.path.exists() or not _is_main():
      return
    records, torn = self._parse()
    kept = [line for line, record in records
            if record.get("step", 0) <= step and record.get("split") != "test"]
    if torn:
      print(f"warning: {self.path}: dropped a last line cut short by an interrupted "
            f"write ({len(torn)} characters)", file=sys.stderr, flush=True)
    if torn or len(kept) != len(records):
      io.atomic_write(self.path, "".join(k + "\n" for k in kept))

  def _parse(self) -> tuple[list[tuple[str, dict]], str]:
    """([(line, record)], torn last line or '')."""
    text = self.path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    torn = lines.pop()  # '' when the file ends with a newline, as every write does
    records = []
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        records.append((line, json.loads(line)))
      except ValueError:
        if number == len(lines) and not torn:
          torn = line  # a last line cut before its newline was flushed whole
          continue
        raise ConfigError(f"{self.path} line {number} is not JSON: the file was "
                          "changed by something other than jaxreg; repair or remove "
                          "it, or use a new --workdir") from None
    return records, torn

  def write(self, record: dict) -> None:
    if not _is_main():
      return
    io.append_line(self.path, json.dumps(record, allow_nan=True))

  def read(self) -> list[dict]:
    if not self.path.exists():
      return []
    return [json.loads(l) for l in self.path.read_text().splitlines() if l.strip()]


def evaluation_scalars(split: str, evaluation: dict) -> dict[str, float]:
  """One evaluation dict as named scalars: `{split}/accuracy`, ...,
  `{split}/class_accuracy/<class>` (the TensorBoard tags; jaxreg/trackers.py uses the
  same names)."""
  out = {}
  for key in ("loss", "accuracy", "balanced_accuracy", "macro_f1",
              "worst_class_accuracy"):
    value = evaluation.get(key)
    if value is not None:
      out[f"{split}/{key}"] = float(value)
  for name, acc in zip(evaluation["class_names"], evaluation["per_class_accuracy"]):
    if acc is not None:
      out[f"{split}/class_accuracy/{name}"] = float(acc)
  return out


# The hparams plugin's metric columns (scalars of the same run directory).
HPARAMS_METRICS = ("test/accuracy", "test/balanced_accuracy", "test/worst_class_accuracy",
                   "val/accuracy", "val/worst_class_accuracy")


class TensorBoard:
  """Scalars and hparams for `tensorboard --logdir DIR`.

  tensorboardX rather than flax.metrics.tensorboard: the latter imports TensorFlow,
  which costs seconds and hundreds of MB in every run for a few scalars. `enabled`
  False (log.trackers without `tensorboard`): writes nothing.
  """

  def __init__(self, logdir: Path, purge_step: int | None, enabled: bool = True):
    self.logdir = Path(logdir)
    if not (enabled and _is_main()):
      self._writer = _NullWriter()
      return
    from tensorboardX import SummaryWriter  # here: only runs that write events need it
    # purge_step hides events past the restored step after a resume.
    self._writer = SummaryWriter(str(logdir), purge_step=purge_step)

  def hparams(self, flat_config: dict) -> None:
    """The resolved config for TensorBoard's HPARAMS tab (tensorboardX writes the
    plugin's protos; values that are not bool, int, float or str as text), with
    HPARAMS_METRICS as its metric columns."""
    if isinstance(self._writer, _NullWriter):
      return
    from tensorboardX.summary import hparams

    values = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
              for k, v in flat_config.items()}
    experiment, start, _ = hparams(values, dict.fromkeys(HPARAMS_METRICS, 0.0))
    self._writer.file_writer.add_summary(experiment)
    self._writer.file_writer.add_summary(start)

  def evaluation(self, split: str, evaluation: dict, step: int) -> None:
    self.scalars(evaluation_scalars(split, evaluation), step)

  def scalars(self, values: dict, step: int) -> None:
    for tag, value in values.items():
      if value is not None:
        self._writer.add_scalar(tag, value, step)

  def scalar(self, tag: str, value: float, step: int) -> None:
    self._writer.add_scalar(tag, value, step)

  def close(self) -> None:
    with io.naming(self.logdir):  # a refused flush names the directory
      self._writer.close()


class _NullWriter:
  def add_scalar(self, *args, **kwargs) -> None:
    pass

  def close(self) -> None:
    pass


class Progress:
  """A tqdm bar with steps/s and ETA on a terminal; plain log lines otherwise."""

  def __init__(self, total: int, initial: int = 0, desc: str = "train",
               stream=None, lines: int = 10):
    self.stream = stream or sys.stderr
    if not _is_main():
      self.stream = open(os.devnull, "w")
    self.total, self.n, self.desc = total, initial, desc
    self._tty = self.stream.isatty()
    self._bar = (tqdm.tqdm(total=total, initial=initial, desc=desc, unit="step",
                           file=self.stream, dynamic_ncols=True)
                 if self._tty else None)
    self._every = max(1, (total - initial) // lines)
    self._start, self._start_n = time.perf_counter(), initial
    self._postfix = ""

  def update(self, n: int = 1, **postfix) -> None:
    self.n += n
    if postfix:
      self._postfix = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in postfix.items())
    if self._bar is not None:
      self._bar.update(n)
      if postfix:
        self._bar.set_postfix_str(self._postfix, refresh=False)
    elif (self.n - self._start_n) % self._every == 0 or self.n == self.total:
      elapsed = time.perf_counter() - self._start
      rate = (self.n - self._start_n) / max(elapsed, 1e-9)
      eta = (self.total - self.n) / max(rate, 1e-9)
      print(f"{self.desc} {self.n}/{self.total} {rate:.1f} steps/s "
            f"ETA {eta:.0f}s {self._postfix}".rstrip(), file=self.stream, flush=True)

  def write(self, message: str) -> None:
    if self._bar is not None:
      self._bar.write(message, file=self.stream)
    else:
      print(message, file=self.stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()

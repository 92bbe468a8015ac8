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

import tqdm


def _finite_or_none(x):
  if isinstance(x, float) and not math.isfinite(x):
    return None if math.isnan(x) else x
  return x


def _is_main() -> bool:
  import jax
  return jax.process_index() == 0


class MetricsLog:
  """Append-only JSON lines; on resume, lines past the restored step are dropped."""

  def __init__(self, path: Path):
    self.path = Path(path)

  def truncate_after(self, step: int) -> None:
    """Keep lines with step <= `step`, minus the end-of-run test lines."""
    if not self.path.exists() or not _is_main():
      return
    kept = []
    for line in self.path.read_text().splitlines():
      if not line.strip():
        continue
      record = json.loads(line)
      if record.get("step", 0) <= step and record.get("split") != "test":
        kept.append(line)
    tmp = self.path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, self.path)

  def write(self, record: dict) -> None:
    if not _is_main():
      return
    with self.path.open("a") as f:
      f.write(json.dumps(record, allow_nan=True) + "\n")

  def read(self) -> list[dict]:
    if not self.path.exists():
      return []
    return [json.loads(l) for l in self.path.read_text().splitlines() if l.strip()]


class TensorBoard:
  """Scalars for `tensorboard --logdir DIR`.

  tensorboardX rather than flax.metrics.tensorboard: the latter imports TensorFlow,
  which costs seconds and hundreds of MB in every run for a few scalars.
  """

  def __init__(self, logdir: Path, purge_step: int | None):
    from tensorboardX import SummaryWriter
    # purge_step hides events past the restored step after a resume.
    self._writer = (SummaryWriter(str(logdir), purge_step=purge_step) if _is_main()
                    else _NullWriter())

  def evaluation(self, split: str, evaluation: dict, step: int) -> None:
    for key in ("loss", "accuracy", "balanced_accuracy", "macro_f1",
                "worst_class_accuracy"):
      value = evaluation.get(key)
      if value is not None:
        self._writer.add_scalar(f"{split}/{key}", value, step)
    for name, acc in zip(evaluation["class_names"], evaluation["per_class_accuracy"]):
      if acc is not None:
        self._writer.add_scalar(f"{split}/class_accuracy/{name}", acc, step)

  def scalar(self, tag: str, value: float, step: int) -> None:
    self._writer.add_scalar(tag, value, step)

  def close(self) -> None:
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

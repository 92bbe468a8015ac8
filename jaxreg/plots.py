"""PNG figures of one run, written to DIR/plots/ at the end of training."""

from __future__ import annotations

import io as stdio
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxreg import io, records  # noqa: E402
from jaxreg.logs import METRICS_FILE, MetricsLog  # noqa: E402


MARKERS = "osD^vP*Xph<>"


def per_class_curves(records: list[dict], out: Path) -> Path:
  """Validation accuracy per class over training (x in epochs), beside the mean and
  the worst; a marker per class keeps overlapping lines (e.g. all at 100%) visible."""
  val = [r for r in records if r.get("split") == "val"]
  by_epoch = all("epoch" in r for r in val)
  xs = [r["epoch"] if by_epoch else r["step"] for r in val]
  names = val[0]["class_names"]
  per_class = np.array([[np.nan if a is None else a for a in r["per_class_accuracy"]]
                        for r in val])
  fig, ax = plt.subplots(figsize=(8, 5))
  colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(names), 2)))
  every = max(1, len(xs) // 12)
  for i, name in enumerate(names):
    ax.plot(xs, per_class[:, i], color=colors[i], lw=1.2, alpha=0.85, label=name,
            marker=MARKERS[i % len(MARKERS)], ms=4, markevery=(i % every, every))
  ax.plot(xs, [r["accuracy"] for r in val], "k-", lw=2.5, label="accuracy")
  ax.plot(xs, [r["worst_class_accuracy"] for r in val], "k:", lw=2,
          label="worst class")
  ax.set_xlabel("epoch" if by_epoch else "step")
  ax.set_ylabel("validation accuracy")
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2 if len(names) > 10 else 1, loc="lower right")
  ax.set_title("Per-class validation accuracy")
  fig.tight_layout()
  _save(fig, out)
  return out


MAX_CONFUSION_INCHES = 20.0
MAX_NAMED_CLASSES = 32  # more classes: the axes show class indices, not names


def confusion(evaluation: dict, out: Path, title: str) -> Path:
  """Row-normalized confusion matrix (true x predicted) with the counts written in."""
  cm = np.array(evaluation["confusion_matrix"])
  names = evaluation["class_names"]
  rows = cm.sum(1, keepdims=True)
  frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
  # At most 20 inches a side: 0.55 inch a class made a 200-class matrix 13,000 pixels
  # wide (about 50 s to draw) and ImageNet's 1000 classes would not fit in memory.
  size = min(MAX_CONFUSION_INCHES, max(4.0, 0.55 * len(names) + 2))
  fig, ax = plt.subplots(figsize=(size + 1, size))
  im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
  if len(names) <= 20:
    for (i, j), n in np.ndenumerate(cm):
      if n:
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                color="white" if frac[i, j] > 0.5 else "black")
  if len(names) <= MAX_NAMED_CLASSES:
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, [f"{n} ({int(c)})" for n, c in zip(names, rows[:, 0])],
                  fontsize=8)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true (count)")
  ax.set_title(title)
  fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
  fig.tight_layout()
  _save(fig, out)
  return out


def plot_run(workdir: str | Path, summary: dict | None = None) -> list[Path]:
  """The run's plots; `summary`: its summary.json dict (read from the file if None;
  the trainer passes it because it writes summary.json after the plots)."""
  workdir = Path(workdir)
  out = workdir / records.PLOTS_DIR
  out.mkdir(exist_ok=True)
  logged = MetricsLog(workdir / METRICS_FILE).read()
  if summary is None:
    summary = records.read_summary(workdir)
    if summary is None:
      raise FileNotFoundError(f"{workdir / records.SUMMARY_FILE} does not read: the "
                              "run has not finished")
  return [
      per_class_curves(logged, out / "val_per_class_accuracy.png"),
      confusion(summary["test"], out / "test_confusion.png",
                f"Test confusion matrix (best step {summary['best_step']})"),
  ]


def _save(fig, out: Path) -> None:
  """PNG bytes, then one atomic write (io): a kill never leaves half an image."""
  buf = stdio.BytesIO()
  fig.savefig(buf, format="png", dpi=120)
  plt.close(fig)
  io.atomic_write(out, buf.getvalue())

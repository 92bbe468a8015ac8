"""Markdown table of a results folder: runs named <setup>_s<seed>, grouped by setup.

  .venv/bin/python results/table.py runs/results/trec

Test accuracy mean +- sample std over seeds (and min-max), each class's mean test
accuracy, mean train time and the epoch evaluated, read from each run's summary.json.
"""

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(folder: str) -> None:
  groups = defaultdict(list)
  for summary in sorted(Path(folder).glob("*_s*/summary.json")):
    setup = re.sub(r"_s\d+$", "", summary.parent.name)
    groups[setup].append(json.loads(summary.read_text()))
  if not groups:
    sys.exit(f"no <setup>_s<seed>/summary.json under {folder}")
  names = next(iter(groups.values()))[0]["test"]["class_names"]
  counts = next(iter(groups.values()))[0]["test"]["per_class_count"]
  header = ["setup", "seeds", "test acc mean ± std", "min–max"] + \
      [f"{n} (n={c})" for n, c in zip(names, counts)] + ["train s", "epoch"]
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for setup, runs in groups.items():
    acc = [100 * r["test"]["accuracy"] for r in runs]
    sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
    per_class = [statistics.mean(100 * r["test"]["per_class_accuracy"][i] for r in runs)
                 for i in range(len(names))]
    epochs = [r.get("evaluated_epoch", r.get("best_epoch")) for r in runs]
    row = [setup, str(len(runs)), f"{statistics.mean(acc):.1f} ± {sd:.1f}",
           f"{min(acc):.1f}–{max(acc):.1f}"] + [f"{p:.1f}" for p in per_class] + \
        [f"{statistics.mean(r['train_seconds'] for r in runs):.0f}",
         "/".join(map(str, epochs))]
    print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "runs/results/trec")

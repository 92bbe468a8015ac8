"""Does the `auto` executor's probe choose the faster way? Probe, then train both ways.

  .venv/bin/python bench/group_probe.py                # every scenario
  .venv/bin/python bench/group_probe.py --scenarios=widths --epochs=4
  .venv/bin/python bench/group_probe.py --quick     # two seeds, one epoch (the tests)

For each scenario (K runs that can share one vmapped program), three numbers:
  probe     jaxreg.group.probe_timings: model-steps/s of the group's program against the
            K runs one after another, on the first batches of epoch 0 (what `auto` uses);
  measured  the same ratio from training for real: the wall time of the K runs one
            after another (train_and_evaluate) over that of the K runs as one group
            (jaxreg.train.run), everything included (compilation, evaluation,
            checkpoints); `last` is the same ratio over the training time of the last
            epoch alone (no compilation left; tiny runs make it noisy);
  agree     whether probe and measured say the same side of 1 (the probe was right).
Time it on a quiet machine: other jobs change both ratios (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _varied_data(tmp: Path) -> dict:
  """Short texts with a long one now and then: batches fall in buckets 8, 32 and 64."""
  from tests.conftest import varied_length_data
  return varied_length_data(tmp)


def scenarios(tmp: Path, epochs: int, k: int = 4) -> dict:
  from tests.conftest import tiny_config
  e = {"train.epochs": epochs, "train.log_every_steps": 1000}
  widths = {**_varied_data(tmp), "model.cell": "lstm", "data.sort_window": 3,
            "model.embed_size": 32, "model.hidden_size": 32, **e}
  return {
      # the tiny LSTM, four seeds: a [4, B, T] batch per step
      "seeds": [tiny_config(**e, seed=s) for s in range(k)],
      # one seed, four weight decays: one shared [B, T] batch
      "shared": [tiny_config(**e, **{"reg.weight_decay": w}) for w in
                 (0.0, 1e-4, 1e-3, 1e-2)],
      # four seeds on length-sorted batches in three buckets: the group pads every step
      # to the widest member's bucket
      "widths": [tiny_config(**widths, seed=s) for s in range(4)],
  }


def measure(configs, tmp: Path) -> dict:
  from jaxreg import group, train
  probe = group.probe_timings(configs)
  t0 = time.perf_counter()
  grouped = train.run(configs, [tmp / f"g{i}" for i in range(len(configs))])
  group_wall = time.perf_counter() - t0
  t0 = time.perf_counter()
  alone = [train.train_and_evaluate(c, tmp / f"a{i}") for i, c in enumerate(configs)]
  alone_wall = time.perf_counter() - t0
  last = lambda summaries: sum(s["epoch_seconds"][-1] for s in summaries)  # noqa: E731
  measured = alone_wall / group_wall
  return {"k": len(configs), "probe_ratio": probe["ratio"], "measured_ratio": measured,
          "last_epoch_ratio": last(alone) / max(last(grouped), 1e-9),
          "agree": (probe["ratio"] > 1) == (measured > 1),
          "group_wall_s": group_wall, "alone_wall_s": alone_wall,
          "probe_steps": probe["steps"]}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--scenarios", default="seeds,shared,widths")
  ap.add_argument("--epochs", type=int, default=3)
  ap.add_argument("--json", action="store_true")
  ap.add_argument("--quick", action="store_true",
                  help="two seeds of the tiny LSTM for one epoch: checks that it runs")
  args = ap.parse_args(argv)
  k = 4
  if args.quick:
    args.scenarios, args.epochs, k = "seeds", 1, 2
  from jaxreg import cli
  cli.enable_compilation_cache()
  print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  print(f"{'scenario':>9} {'K':>3} {'probe':>7} {'measured':>9} {'last':>6} "
        f"{'agree':>6} {'group s':>8} {'alone s':>8}")
  with tempfile.TemporaryDirectory() as tmp:
    all_scenarios = scenarios(Path(tmp), args.epochs, k)
    for name in args.scenarios.split(","):
      out = measure(all_scenarios[name], Path(tmp) / name)
      print(f"{name:>9} {out['k']:>3} {out['probe_ratio']:>7.2f} "
            f"{out['measured_ratio']:>9.2f} {out['last_epoch_ratio']:>6.2f} "
            f"{str(out['agree']):>6} "
            f"{out['group_wall_s']:>8.1f} {out['alone_wall_s']:>8.1f}", flush=True)
      if args.json:
        print(json.dumps({"scenario": name, **out}))
  print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

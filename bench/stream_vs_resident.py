"""Training throughput of a streamed image folder against the same folder resident on the
device (images/s of the train step, data.stream=always vs never).

  .venv/bin/python bench/stream_vs_resident.py \
      --root=~/.cache/jaxreg/cifar10 --per_class=300    # the CPU ResNet config's data
  .venv/bin/python bench/stream_vs_resident.py            # a generated folder instead
  .venv/bin/python bench/stream_vs_resident.py --workers=2 --json=stream.json
  .venv/bin/python bench/stream_vs_resident.py --quick        # smoke run (the tests)

The model and optimizer are configs/resnet.py:cifar10_small's (ResNet-10, width 8,
Adam, crop 4 + flip on device, batch 128), on `--root` (a folder of train/<class> and
test/<class> images, e.g. the CIFAR-10 JPEG copy extracted as configs/resnet.py says:
with --per_class=300 that is cifar10_small's data) or else a generated image folder
(10 classes of 32x32 JPEGs, 40x40 on disk so every file is decoded AND resized, as an
ImageNet folder is). Both paths are set up as a run sets them up (jaxreg.train.setup), compiled and
warmed up; then `--rounds` alternating rounds (drift on a busy machine hits both alike),
each round one whole epoch (or its first `--steps` train steps) of a new epoch order: the
streamed round includes starting its loader and its workers, as every epoch of a
streamed run does. Printed:
the median images/s of each path and their ratio (streamed / resident: >= 0.9 means the
loader keeps the step fed), with the load average before and after. The issue's target
is >= 0.9x on a quiet machine; numbers taken with other jobs running are not valid.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def make_folder(root: Path, classes: int, per_class: int, side: int) -> Path:
  """root/train/<class>/*.jpg and root/test/<class>/*.jpg: a colour per class plus
  noise (only the decode and resize cost matters here)."""
  from PIL import Image
  rng = np.random.default_rng(0)
  colours = rng.integers(30, 226, (classes, 3))
  for split, n in (("train", per_class), ("test", max(1, per_class // 10))):
    for c in range(classes):
      d = root / split / f"c{c:03d}"
      d.mkdir(parents=True, exist_ok=True)
      for i in range(n):
        noise = rng.integers(-40, 41, (side, side, 3))
        Image.fromarray(np.clip(colours[c] + noise, 0, 255).astype(np.uint8)).save(
            d / f"{i}.jpg", quality=90)
  return root


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--per_class", type=int, default=600,
                      help="training images per class (data.train_per_class)")
  parser.add_argument("--root", type=Path,
                      help="an image folder to read instead of the generated one")
  parser.add_argument("--steps", type=int, default=0,
                      help="train steps per round; 0: the whole epoch")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--workers", type=int, default=0,
                      help="data.stream_workers (grain worker processes)")
  parser.add_argument("--threads", type=int, default=1, help="data.stream_threads")
  parser.add_argument("--quick", action="store_true",
                      help="a few small steps: checks that the script runs")
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args(argv)
  batch = 128
  if args.quick:
    args.per_class, args.steps, batch, args.workers = 24, 2, 32, 0
  from jaxreg import cli  # no PyTorch half here: benchlib.start would import torch
  cli.enable_compilation_cache()
  import jax
  from configs import resnet
  from jaxreg import feeds, metrics, parallel, train
  from jaxreg.sweep import config_for

  load_before = benchlib.load_average()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    root = (args.root.expanduser() if args.root else
            make_folder(tmp / "folder", 10, args.per_class, 40))
    setups, rounds_run = {}, {}
    for name, mode in (("resident", "never"), ("streamed", "always")):
      config = config_for(resnet.get_config("cifar10_small"), {
          "data.source": "image_folder", "data.root": str(root), "data.image_size": 32,
          "data.train_per_class": args.per_class if args.root else 0,
          "data.cache_dir": str(tmp / "cache"),
          "data.stream": mode, "data.stream_workers": args.workers,
          "data.stream_threads": args.threads, "train.batch_size": batch})
      s = train.setup(config, tmp / name, checkpoints="later")
      assert isinstance(s.feed, feeds.StreamFeed) == (mode == "always")
      steps = min(args.steps or s.steps_per_epoch, s.steps_per_epoch)
      state = {"state": s.state, "counts": parallel.put_replicated(
          metrics.zero_counts(s.data.num_classes), s.mesh), "epoch": 0}

      def one_round(s=s, state=state, steps=steps) -> float:
        order = feeds.epoch_order(s.config, s.data.train, state["epoch"])
        state["epoch"] += 1
        t0 = time.perf_counter()
        st, counts = state["state"], state["counts"]
        for b in s.feed.epoch_batches([order], 0, steps):
          st, counts, out = s.feed.train_step(st, b, counts)
        jax.block_until_ready((st.params, out["loss"]))
        state["state"], state["counts"] = st, counts
        return time.perf_counter() - t0
      one_round()  # compile and warm up
      setups[name], rounds_run[name] = (s, steps), one_round
    seconds = benchlib.alternate(rounds_run, args.rounds)
  ips = {name: setups[name][1] * batch / benchlib.median(secs)
         for name, secs in seconds.items()}
  result = {
      "bench": "stream_vs_resident", "quick": args.quick, "batch": batch,
      "steps_per_round": {n: s[1] for n, s in setups.items()}, "rounds": args.rounds,
      "workers": args.workers, "threads": args.threads,
      "data": str(args.root) if args.root else "generated 40x40 JPEGs",
      "per_class": args.per_class,
      "seconds": seconds, "images_per_s": ips,
      "ratio_streamed_over_resident": ips["streamed"] / ips["resident"],
      "load_average_before": load_before, "load_average_after": benchlib.load_average(),
      "env": benchlib.environment()}
  print(f"resident {ips['resident']:.1f} images/s, streamed {ips['streamed']:.1f} "
        f"images/s (median of {args.rounds} rounds, {args.workers} workers): ratio "
        f"{result['ratio_streamed_over_resident']:.3f}; load average "
        f"{load_before} -> {result['load_average_after']}")
  benchlib.write_json(args.json, result)
  return result


if __name__ == "__main__":
  main()

"""Training images/second: jaxreg's jitted ResNet-50 step against the same net in PyTorch.

  .venv/bin/python bench/resnet_vs_torch.py                       # CIFAR shape, B=16 on CPU
  .venv/bin/python bench/resnet_vs_torch.py --stem=imagenet --image_size=224 --batch=4
  .venv/bin/python bench/resnet_vs_torch.py --batch=256 --steps=20 --dtype=bfloat16  # GPU
  .venv/bin/python bench/resnet_vs_torch.py --quick    # ResNet-10 width 8, a smoke run

The same network on both sides: ResNet-50 v1.5 (bottleneck blocks, stride on the 3x3
conv, BatchNorm momentum 0.1 in torch's convention = 0.9 in flax's, eps 1e-5; --depth
10/18/34 for basic blocks, --width for the base channels), the
'cifar' stem (3x3 stride 1, no max-pool) or the 'imagenet' one (7x7 stride 2 + max-pool),
the same parameter count (checked before timing), SGD with momentum 0.9 and weight decay
5e-4 at lr 0.1, cross-entropy, the same batches. jaxreg runs its real training path:
`resnet.from_config`, `train.make_optimizer` on a config (optax chain from jaxreg.optim),
`train.compile_steps` over the device mesh (its step also accumulates the training
confusion matrix). PyTorch (written here in plain torch: torchvision has no CPU build in
this venv) runs channels-last, under `torch.autocast` for --dtype=bfloat16 (jaxreg:
model.dtype='bfloat16', params float32). Batches sit on the device before timing (jaxreg
keeps in-memory datasets on the device), so both time compute only. Both are warmed up,
then timed in alternating rounds (drift on a busy machine hits both alike); the median
images/second of each is printed with the time ratio jaxreg / torch (torch's images/s
over jaxreg's: < 1, jaxreg is faster). Without torch installed the PyTorch half is
skipped (said so). PyTorch's settings: benchlib.fix_torch_settings (TF32 allowed,
cudnn.benchmark) and torch_settings in the JSON. Time it on a quiet machine, twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
# Blocks per stage, as jaxreg/models/resnet.py's STAGE_SIZES (10: one basic block a stage).
STAGES = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
# Width 8, not less: torch 2.13's CPU channels-last backward corrupts the heap at width
# 4 ("corrupted double-linked list", seen here; width 8 and up run).
QUICK = dict(depth=10, width=8, batch=2, image_size=8, steps=1, rounds=1, warmup=1)


def make_batches(batch: int, size: int, classes: int, steps: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return [{"images": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
           "labels": rng.integers(0, classes, batch).astype(np.int32),
           "mask": np.ones(batch, bool)} for _ in range(steps)]


def jaxreg_step(args, classes: int) -> benchlib.JaxregStep:
  """jaxreg's own model, optimizer chain and jitted train step."""
  import ml_collections
  from jaxreg import config as config_lib
  from jaxreg.models import resnet
  config = config_lib.get_base_config()
  config.model.dtype = args.dtype
  config.model.resnet = ml_collections.ConfigDict(
      {"depth": args.depth, "width": args.width, "stem": args.stem, "norm": "batch",
       "bn_stages": "all", "dropout_layers": 0, "dropout_rate": 0.0})
  config.optim.name, config.optim.learning_rate = "momentum", LR
  config.optim.momentum = MOMENTUM
  config.reg.weight_decay = WEIGHT_DECAY
  sample = make_batches(args.batch, args.image_size, classes, 1)[0]
  return benchlib.JaxregStep(config, resnet.from_config(config.model, classes), sample,
                             classes)


def torch_resnet(depth: int, width: int, stem: str, classes: int):
  """ResNet v1.5 as torchvision builds it (their BasicBlock / Bottleneck, zero-init last
  BN of each branch), at jaxreg's depths and base width."""
  from torch import nn

  def conv_bn(cin, cout, kernel, stride=1, zero=False):
    bn = nn.BatchNorm2d(cout)
    if zero:
      nn.init.zeros_(bn.weight)
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), bn]

  class Block(nn.Module):
    def __init__(self, cin, filters, stride, bottleneck):
      super().__init__()
      cout = filters * (4 if bottleneck else 1)
      if bottleneck:
        layers = [*conv_bn(cin, filters, 1), nn.ReLU(True),
                  *conv_bn(filters, filters, 3, stride), nn.ReLU(True),
                  *conv_bn(filters, cout, 1, zero=True)]
      else:
        layers = [*conv_bn(cin, filters, 3, stride), nn.ReLU(True),
                  *conv_bn(filters, filters, 3, zero=True)]
      self.branch = nn.Sequential(*layers)
      self.proj = None
      if stride != 1 or cin != cout:
        self.proj = nn.Sequential(*conv_bn(cin, cout, 1, stride))
      self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
      return self.relu(self.branch(x) + (x if self.proj is None else self.proj(x)))

  if stem == "imagenet":
    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(True), nn.MaxPool2d(3, 2, 1)]
  else:
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(True)]
  bottleneck = depth == 50
  cin = width
  for stage, blocks in enumerate(STAGES[depth]):
    filters = width * 2 ** stage
    for j in range(blocks):
      layers.append(Block(cin, filters, 2 if stage > 0 and j == 0 else 1, bottleneck))
      cin = filters * (4 if bottleneck else 1)
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
  return nn.Sequential(*layers)


class TorchStep:
  def __init__(self, args, classes: int, torch):
    benchlib.fix_torch_settings(torch)
    self.torch = torch
    self.device = torch.device(benchlib.torch_device(torch))
    self.model = torch_resnet(args.depth, args.width, args.stem, classes).to(
        self.device, memory_format=torch.channels_last)
    self.model.train()
    self.num_params = sum(p.numel() for p in self.model.parameters())
    self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM,
                               weight_decay=WEIGHT_DECAY)
    self.loss = torch.nn.CrossEntropyLoss()
    self.autocast = args.dtype == "bfloat16"
    self.forward = torch.compile(self.model) if args.torch_compile else self.model

  def put(self, batches):
    torch = self.torch
    return [(torch.from_numpy(b["images"]).permute(0, 3, 1, 2).to(
                self.device, memory_format=torch.channels_last),
             torch.from_numpy(b["labels"]).long().to(self.device)) for b in batches]

  def run(self, batches) -> float:
    torch = self.torch
    benchlib.sync_torch(torch)
    t0 = time.perf_counter()
    for images, labels in batches:
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
        loss = self.loss(self.forward(images), labels)
      loss.backward()
      self.opt.step()
    loss.item()  # waits for the device
    return time.perf_counter() - t0


def bench(args, torch) -> dict:
  classes = 10 if args.stem == "cifar" else 1000
  host = make_batches(args.batch, args.image_size, classes, args.steps)
  sides = {"jaxreg": jaxreg_step(args, classes)}
  if torch is not None:
    sides["torch"] = TorchStep(args, classes, torch)
    if sides["jaxreg"].num_params != sides["torch"].num_params:
      raise SystemExit(f"parameter counts differ: jaxreg {sides['jaxreg'].num_params:,} "
                       f"torch {sides['torch'].num_params:,}")
  data = {k: side.put(host) for k, side in sides.items()}
  for _ in range(args.warmup):  # compile (jit, cudnn autotuning) and settle
    for k, side in sides.items():
      side.run(data[k][:1])
  n = args.batch * args.steps
  rounds_s = benchlib.alternate({k: (lambda s=side, d=data[k]: s.run(d))
                                 for k, side in sides.items()}, args.rounds)
  ips = {k: [n / s for s in v] for k, v in rounds_s.items()}
  j = benchlib.median(ips["jaxreg"])
  r = {"model": f"resnet{args.depth}", "width": args.width, "stem": args.stem,
       "image_size": args.image_size, "batch": args.batch, "dtype": args.dtype,
       "params": sides["jaxreg"].num_params, "steps_per_round": args.steps,
       "rounds": args.rounds, "jaxreg_images_per_s": round(j, 2),
       "jaxreg_rounds": [round(x, 2) for x in ips["jaxreg"]],
       "torch_images_per_s": None, "time_ratio_jaxreg_over_torch": None}
  if "torch" in ips:
    t = benchlib.median(ips["torch"])
    r.update(torch_images_per_s=round(t, 2),
             torch_rounds=[round(x, 2) for x in ips["torch"]],
             time_ratio_jaxreg_over_torch=round(t / j, 3))
  return r


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--stem", choices=["cifar", "imagenet"], default="cifar")
  parser.add_argument("--depth", type=int, choices=sorted(STAGES), default=50)
  parser.add_argument("--width", type=int, default=64, help="base channels")
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each first")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                      help="jaxreg model.dtype; torch.autocast for bfloat16")
  parser.add_argument("--torch_compile", action="store_true",
                      help="torch.compile the torch model (default: eager)")
  parser.add_argument("--threads", type=int, default=0,
                      help="CPU threads for both (0: each library's default). On a "
                           "machine shared with other jobs, 1 avoids torch's OpenMP "
                           "threads stalling each other (measured 3-5x here)")
  parser.add_argument("--quick", action="store_true",
                      help="ResNet-10 width 8, 8px, batch 2, one step (a smoke run)")
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args(argv)
  if args.quick:
    for k, v in QUICK.items():
      setattr(args, k, v)
    args.threads = args.threads or 1
  if args.threads:  # before jax starts its CPU backend
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false"
                               f" intra_op_parallelism_threads={args.threads}")
  torch = benchlib.start(args.threads)
  r = bench(args, torch)
  line = (f"resnet{args.depth} {r['stem']} {r['image_size']}px B={r['batch']} "
          f"{r['dtype']} ({r['params']:,} params): jaxreg "
          f"{r['jaxreg_images_per_s']:.1f} img/s")
  if r["torch_images_per_s"] is not None:
    line += (f"  torch {r['torch_images_per_s']:.1f} img/s  time ratio jaxreg/torch "
             f"{r['time_ratio_jaxreg_over_torch']:.2f}x")
  print(line, flush=True)
  env = benchlib.environment(torch)
  env.update(threads_flag=args.threads, torch_compile=args.torch_compile,
             torch_memory_format="channels_last",
             torch_autocast="bfloat16" if args.dtype == "bfloat16" else None)
  return benchlib.record(args.json, "resnet_vs_torch", args.quick, torch, env, result=r)


if __name__ == "__main__":
  main()

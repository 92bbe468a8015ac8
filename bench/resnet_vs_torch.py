"""Training images/second: jaxreg's jitted ResNet-50 step against the same net in PyTorch.

  .venv/bin/python bench/resnet_vs_torch.py                       # CIFAR shape, B=16 on CPU
  .venv/bin/python bench/resnet_vs_torch.py --stem=imagenet --image_size=224 --batch=4
  .venv/bin/python bench/resnet_vs_torch.py --batch=256 --steps=50 --dtype=bfloat16  # GPU

The same network on both sides: ResNet-50 v1.5 (bottleneck blocks, stride on the 3x3
conv, BatchNorm momentum 0.1 in torch's convention = 0.9 in flax's, eps 1e-5), the
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
images/second of each is printed with the ratio jaxreg / torch (> 1: jaxreg is faster).
Time it on a quiet machine, twice.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4


def make_batches(batch: int, size: int, classes: int, steps: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return [{"images": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
           "labels": rng.integers(0, classes, batch).astype(np.int32),
           "mask": np.ones(batch, bool)} for _ in range(steps)]


def param_count(tree) -> int:
  import jax
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


class JaxregStep:
  """jaxreg's own model, optimizer chain and jitted train step."""

  def __init__(self, args, classes: int):
    import jax
    import ml_collections
    from jaxreg import config as config_lib, metrics, parallel, train
    from jaxreg.models import resnet
    config = config_lib.get_base_config()
    config.model.dtype = args.dtype
    config.model.resnet = ml_collections.ConfigDict(
        {"depth": 50, "width": 64, "stem": args.stem, "norm": "batch", "bn_stages": "all",
         "dropout_layers": 0, "dropout_rate": 0.0})
    config.optim.name, config.optim.learning_rate = "momentum", LR
    config.optim.momentum = MOMENTUM
    config.reg.weight_decay = WEIGHT_DECAY
    self._jax, self._parallel = jax, parallel
    self.mesh = parallel.make_mesh()
    model = resnet.from_config(config.model, classes)
    sample = make_batches(args.batch, args.image_size, classes, 1)[0]
    variables = jax.jit(model.init)(jax.random.key(0), sample)
    params = variables.pop("params")
    self.num_params = param_count(params)
    tx = train.make_optimizer(config, params, steps_per_epoch=100)
    self.state = parallel.put_replicated(train.TrainState.create(
        apply_fn=model.apply, params=params, tx=tx,
        rng=jax.random.key_data(jax.random.key(1)), model_state=variables), self.mesh)
    self.step_fn, _ = train.compile_steps(model, self.mesh, classes)
    self.counts = parallel.put_replicated(metrics.zero_counts(classes), self.mesh)

  def put(self, batches):
    return [self._parallel.put_batch(b, self.mesh) for b in batches]

  def run(self, batches) -> float:
    t0 = time.perf_counter()
    for batch in batches:
      self.state, self.counts, out = self.step_fn(self.state, batch, self.counts)
    self._jax.block_until_ready((self.state.params, out["loss"]))
    return time.perf_counter() - t0


def torch_resnet50(stem: str, classes: int):
  """ResNet-50 v1.5 as torchvision builds it (their Bottleneck, zero-init last BN)."""
  from torch import nn

  class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
      self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(width)
      self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(width * 4)
      nn.init.zeros_(self.bn3.weight)
      self.relu = nn.ReLU(inplace=True)
      self.proj = None
      if stride != 1 or cin != width * 4:
        self.proj = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False),
                                  nn.BatchNorm2d(width * 4))

    def forward(self, x):
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      return self.relu(y + (x if self.proj is None else self.proj(x)))

  if stem == "imagenet":
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
              nn.MaxPool2d(3, 2, 1)]
  else:
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
  cin = 64
  for stage, blocks in enumerate((3, 4, 6, 3)):
    width = 64 * 2 ** stage
    for j in range(blocks):
      layers.append(Bottleneck(cin, width, 2 if stage > 0 and j == 0 else 1))
      cin = width * 4
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
  return nn.Sequential(*layers)


class TorchStep:
  def __init__(self, args, classes: int):
    import torch
    torch.manual_seed(0)
    self.torch = torch
    self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    self.model = torch_resnet50(args.stem, classes).to(
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
    t0 = time.perf_counter()
    for images, labels in batches:
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
        loss = self.loss(self.forward(images), labels)
      loss.backward()
      self.opt.step()
    loss.item()  # waits for the device
    return time.perf_counter() - t0


def bench(args) -> dict:
  classes = 10 if args.stem == "cifar" else 1000
  host = make_batches(args.batch, args.image_size, classes, args.steps)
  jx, th = JaxregStep(args, classes), TorchStep(args, classes)
  if jx.num_params != th.num_params:
    raise SystemExit(f"parameter counts differ: jaxreg {jx.num_params:,} torch "
                     f"{th.num_params:,}")
  jb, tb = jx.put(host), th.put(host)
  for _ in range(args.warmup):  # compile (jit, cudnn autotuning) and settle
    jx.run(jb[:1]), th.run(tb[:1])
  jax_ips, torch_ips = [], []
  n = args.batch * args.steps
  for _ in range(args.rounds):
    jax_ips.append(n / jx.run(jb))
    torch_ips.append(n / th.run(tb))
  j, t = statistics.median(jax_ips), statistics.median(torch_ips)
  return {"model": "resnet50", "stem": args.stem, "image_size": args.image_size,
          "batch": args.batch, "dtype": args.dtype, "params": jx.num_params,
          "steps_per_round": args.steps, "rounds": args.rounds,
          "jaxreg_images_per_s": round(j, 2), "torch_images_per_s": round(t, 2),
          "ratio_jaxreg_over_torch": round(j / t, 3),
          "jaxreg_rounds": [round(x, 2) for x in jax_ips],
          "torch_rounds": [round(x, 2) for x in torch_ips]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--stem", choices=["cifar", "imagenet"], default="cifar")
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
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args()
  if args.threads:  # before jax starts its CPU backend
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false"
                               f" intra_op_parallelism_threads={args.threads}")
  import jax
  import torch
  if args.threads:
    torch.set_num_threads(args.threads)
  r = bench(args)
  print(f"resnet50 {r['stem']} {r['image_size']}px B={r['batch']} {r['dtype']} "
        f"({r['params']:,} params): jaxreg {r['jaxreg_images_per_s']:.1f} img/s  torch "
        f"{r['torch_images_per_s']:.1f} img/s  ratio {r['ratio_jaxreg_over_torch']:.2f}x",
        flush=True)
  env = {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
         "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
         "jax": jax.__version__, "torch": torch.__version__,
         "torch_threads": torch.get_num_threads(), "threads_flag": args.threads,
         "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "torch_compile": args.torch_compile,
         "cpu": platform.processor() or platform.machine()}
  if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name()
  print(json.dumps(env))
  if args.json:
    args.json.write_text(json.dumps({"env": env, "result": r}, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""ResNet image classifiers; by default a tiny ResNet on the built-in generated set.

  python -m jaxreg.main --config=configs/resnet.py --workdir=runs/resnet
  python -m jaxreg.main --config=configs/resnet.py:cifar10_small --workdir=runs/c10_small
  python -m jaxreg.main --config=configs/resnet.py:cifar10 --workdir=runs/c10_r50
  python -m jaxreg.main --config=configs/resnet.py:cifar10_folder,nobn_d2_p0.5 --workdir=...

The argument is a comma-separated list: at most one base, then modifiers.

The measured numbers of runs with BatchNorm below (the default, shapes_sweep,
cifar10_small, bnN) predate issue 14's BatchNorm fix (the padding rows of an epoch's
last batch no longer enter the statistics): to be re-measured. The nobn_* and agc_*
runs have no BatchNorm and are unchanged.

Bases:
- '' (default): ResNet-10 (one basic block a stage), width 8, CIFAR stem, BatchNorm, on
  data.source='shapes' (4000 generated 24x24 images, 4 colour and 4 shape classes), pad-3
  crop + flip, Adam 3e-3 with a cosine schedule, 6 epochs. Measured (2-core CPU shared
  with other jobs, load ~16): 100.0% test on every class, 7 min 13 s for the command,
  250 s of training (18-26 s an epoch after the first, which compiles).
- `tiny`: the default at 16x16 pixels, 400 images, 2 epochs (smoke tests).
- `shapes_sweep`: the augmentation-sweep base: 1200 generated 16x16 images, 100 test
  images a class, no augmentation, 4 epochs. Measured: 91.7% test (mean of seeds 0-2;
  colour classes 99-100%, shapes 74-87%), 11-50 s a run; hue 0.5 costs red and green
  ~52 points, crops at min scale 0.05 cost square 29 and cross 41 points
  (docs/results/resnet.md).
- `cifar10`: ResNet-50 (bottleneck, CIFAR stem, BatchNorm) on tfds:cifar10, crop 4 +
  flip, SGD Nesterov 0.1 (batch 512) with a one-cycle schedule (5-epoch linear warmup,
  cosine to 0) over 30 epochs, weight decay 5e-4, bfloat16 compute (the GPU recipe;
  --config.model.dtype=float32 on a CPU). TFDS cannot download here: unmeasured.
  Target (issue 6): >= 93% test within 10 minutes on one H100-class GPU; not measured
  (no GPU in this session).
- `cifar10_folder`: `cifar10` on the CIFAR-10 JPEG copy as an image folder:
    mkdir -p ~/.cache/jaxreg && tar xzf ../shared/data/cifar10_jpeg/cifar10_jpeg.tar.gz \\
        -C ~/.cache/jaxreg       # -> ~/.cache/jaxreg/cifar10/{train,test}/<class>/*.jpg
  Unmeasured (a ResNet-50 epoch takes about an hour on this CPU).
- `cifar10_small`: the CPU variant: the JPEG copy, 300 training images per class (10% of
  them held out as val), all 10000 test images, ResNet-10 width 8, Adam 3e-3 cosine,
  crop 4 + flip, 6 epochs, float32. Measured: 36.8% test (bird 13.4% to ship 50.4%),
  12 min 7 s including the first decode of the 60,000 JPEGs; with
  --config.data.train_per_class=1000 --config.train.epochs=10: 53.6% test (deer 31.8%
  to automobile 69.8%), 15 min 34 s; --config.data.train_per_class=0
  --config.train.epochs=8 (all 45,000): 70.1% test (cat 46.4% to ship 85.4%), 22 min 28 s
  (docs/results/resnet.md).

Modifiers (the course ablations; on any base):
- `nobn_dK_pR`: no BatchNorm (model.resnet.norm='none') with K in 0..3 dropout layers of
  rate R (1: before the head, 2: + after stage 3, 3: + after stage 2), e.g. nobn_d0_p0,
  nobn_d3_p0.8. The course grid: K in 0..3 x R in 0.2, 0.5, 0.8. Unmeasured on the
  ResNet-50. Measured on cifar10_small, 3 seeds (docs/results/resnet.md):
    python -m jaxreg.sweep --config=configs/resnet.py:cifar10_small,nobn_d1_p0 \
        --workdir=runs/ablations/dropout --axis=model.resnet.dropout_layers=1,2,3 \
        --axis=model.resnet.dropout_rate=0,0.2,0.5,0.8 --axis=seed=0,1,2 \
        --executor=sequential --config.train.target_accuracy=0.3
  no dropout 34.8 +- 1.7% test; 1 layer 0.2/0.5/0.8: 33.5/30.7/22.6%; 2 layers:
  32.3/28.5/15.5%; 3 layers: 29.5/21.2/12.0%. With 1 layer at 0.5, dog -32.6 and deer
  -20.3 points (Holm p < 0.001).
- `bnN`: BatchNorm in the first N stages only (0..4; bn0 = none), the "0..N BN layers"
  axis (model.resnet.bn_stages). Unmeasured on the ResNet-50. On cifar10_small, 3 seeds,
    python -m jaxreg.sweep --config=configs/resnet.py:cifar10_small \
        --workdir=runs/ablations/bn "--axis=model.resnet.bn_stages=;0;0,1;0,1,2;all" \
        --axis=seed=0,1,2 --executor=sequential --config.train.target_accuracy=0.3
  none/1/2/3/4 stages: 34.8/35.8/37.0/37.2/37.1% test, worst class 4.9/3.8/6.7/9.2/12.4%;
  validation picks 3 stages, which costs cat 11.3 points against BN everywhere.
- `agc_cC_bB`: normalizer-free ResNet (model.resnet.norm='nf', no BatchNorm) trained
  with adaptive gradient clipping reg.agc=C (head and skip gains excluded) at batch size B, e.g.
  agc_c0.01_b256; the course grid C in 0.01, 0.02, 0.04, 0.08, 0.16 x B in 128, 256,
  512, 1024 (sweep it with jaxreg.sweep over reg.agc and train.batch_size).
  Unmeasured on the ResNet-50. On cifar10_small, 3 seeds,
    python -m jaxreg.sweep --config=configs/resnet.py:cifar10_small,agc_c0.02_b64 \
        --workdir=runs/ablations/agc --axis=reg.agc=0,0.01,0.02,0.04,0.08,0.16 \
        --axis=train.batch_size=64,128,256 --axis=seed=0,1,2 --executor=sequential \
        --config.train.target_accuracy=0.3
  batch 64/128/256: 34.9/31.2/26.8% test without AGC; every AGC value within 1 point of
  those (e.g. agc_c0.02_b64: 34.3 +- 1.5%).
"""

import os
import re

from jaxreg.config import get_base_config

BASES = ("", "tiny", "shapes_sweep", "cifar10", "cifar10_folder", "cifar10_small")
CIFAR10_FOLDER = "~/.cache/jaxreg/cifar10"


def _default(c):
  c.data.source = "shapes"
  c.model.family = "resnet"
  c.model.resnet.depth = 10
  c.data.shapes.image_size = 24
  c.model.resnet.width = 8
  c.model.resnet.stem = "cifar"
  c.data.augment.crop_padding = 3
  c.data.augment.flip = 0.5
  c.data.eval_batch_size = 500
  c.optim.name = "adam"
  c.optim.learning_rate = 3e-3
  c.optim.schedule = "cosine"
  c.train.batch_size = 64
  c.train.epochs = 6
  c.train.log_every_steps = 20
  return c


def _cifar10_r50(c):
  c.data.source = "tfds:cifar10"
  c.model.resnet.depth = 50
  c.model.resnet.width = 64
  c.model.dtype = "bfloat16"
  c.optim.name = "nesterov"
  c.optim.momentum = 0.9
  c.optim.learning_rate = 0.1
  c.optim.schedule = "warmup_cosine"
  c.train.batch_size = 512
  c.train.epochs = 30
  c.optim.warmup_steps = 5 * 88   # 5 epochs of 45000 / 512
  c.reg.weight_decay = 5e-4
  c.reg.weight_decay_mode = "lr_scaled"
  c.train.target_accuracy = 0.93
  c.train.log_every_steps = 50
  return c


def _folder(c):
  c.data.source = "image_folder"
  c.data.root = os.path.expanduser(CIFAR10_FOLDER)
  return c


def _modifier(c, part: str):
  m = re.fullmatch(r"nobn_d([0-3])_p([0-9.]+)", part)
  if m:
    c.model.resnet.norm = "none"
    c.model.resnet.dropout_layers = int(m.group(1))
    c.model.resnet.dropout_rate = float(m.group(2))
    return c
  m = re.fullmatch(r"bn([0-4])", part)
  if m:
    n = int(m.group(1))
    c.model.resnet.bn_stages = ",".join(str(i) for i in range(n))
    return c
  m = re.fullmatch(r"agc_c([0-9.e-]+)_b([0-9]+)", part)
  if m:
    c.model.resnet.norm = "nf"
    c.reg.agc = float(m.group(1))
    # The NF skip gains start at 0, where AGC's unit-wise bound (agc * eps) would keep
    # every residual branch shut: excluded like the head (jaxreg/models/resnet.py).
    c.reg.agc_exclude = "^head/|skip_gain$"
    c.train.batch_size = int(m.group(2))
    return c
  raise ValueError(f"config part {part!r} is not a base ({', '.join(BASES[1:])}) or a "
                   "modifier (nobn_dK_pR, bnN, agc_cC_bB)")


def get_config(arg: str | None = None):
  c = _default(get_base_config())
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if parts and parts[0] in BASES:
    base, parts = parts[0], parts[1:]
  else:
    base = ""
  if base == "tiny":
    c.data.shapes.train_size = 400
    c.data.shapes.test_per_class = 10
    c.data.shapes.image_size = 16
    c.data.augment.crop_padding = 2
    c.train.batch_size = 32
    c.train.epochs = 2
    c.train.log_every_steps = 5
  elif base == "shapes_sweep":
    c.data.shapes.train_size = 1200
    c.data.shapes.test_per_class = 100
    c.data.shapes.image_size = 16
    c.data.augment.crop_padding = 0
    c.data.augment.flip = 0.0
    c.train.batch_size = 32
    c.train.epochs = 4
  elif base in ("cifar10", "cifar10_folder"):
    _cifar10_r50(c)
    if base == "cifar10_folder":
      _folder(c)
  elif base == "cifar10_small":
    _folder(c)
    c.data.train_per_class = 300
    c.data.augment.crop_padding = 4
  for part in parts:
    _modifier(c, part)
  return c

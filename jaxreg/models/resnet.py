"""ResNet-10 (tiny) / 18 / 34 / 50 image classifiers, with BatchNorm on or off.

After google/flax examples/imagenet/models.py (ResNet v1.5: the stride sits on the 3x3
conv, as in torchvision; the last BatchNorm of each residual branch starts at scale 0),
plus what the regularization study varies:

* ``stem``: 'imagenet' (7x7 stride 2 + 3x3 max-pool) or 'cifar' (3x3 stride 1, no pool).
* ``norm='batch'`` with ``bn_stages``: BatchNorm in the listed stages only (the stem
  counts as stage 0); a conv without BatchNorm after it gets a bias instead, since
  BatchNorm's shift was its only offset. ``norm='none'``: no BatchNorm anywhere (the
  plain ablation; its residual stream grows with depth at init). ``norm='nf'``: the
  normalizer-free ResNet of Brock et al. 2021 (arXiv:2101.08692): pre-activation blocks
  ``x + alpha * skip_gain * f(x / beta)`` with scaled weight-standardized convs, beta the
  expected std of the residual stream, ``skip_gain`` a learned scalar starting at 0
  (SkipInit): it trains without BatchNorm, e.g. with AGC. Exclude the skip gains from
  AGC like the head (reg.agc_exclude='^head/|skip_gain$'): the unit-wise bound of a
  scalar at 0 is agc * eps, which keeps the branches shut (tests/test_resnet_model.py).
* ``dropout_layers`` (0..3) of ``dropout_rate``: 1 = before the head, 2 = also between
  stages 3 and 4, 3 = also between stages 2 and 3 (stages counted from 1). The rate may be
  a traced value (jaxreg.models.layers.Dropout).
* ``dtype``: compute dtype (params stay float32; logits come back float32).

The head Dense is named 'head' (reg.agc_exclude='^head/' finds it). BatchNorm statistics
live in the 'batch_stats' collection (Model.mutable), i.e. TrainState.model_state; the
batch's 'mask' (Model.keyword_inputs) keeps the padding rows of an epoch's last batch
(copies of one image) out of them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.models.base import Model
from jaxreg.models.layers import Dropout

# Config keys a vmapped group member may vary -> ResNet fields (models.Family).
TRACED = {"model.resnet.dropout_rate": "dropout_rate"}
# Blocks per stage; 10 is the tiny variant for tests (one basic block a stage).
STAGE_SIZES = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
# Stage index (0-based) after which dropout layer k (k >= 2) sits.
_DROPOUT_AFTER_STAGE = {2: 2, 3: 1}
# relu scaled to keep unit variance for unit-Gaussian inputs (NFNets' 'relu' gamma):
# sqrt(2 / (1 - 1/pi)).
_NF_RELU_GAIN = 1.7139588594436646


# ---------------------------------------------------------------- normalizer-free parts

def standardize_kernel(kernel, gain, eps: float = 1e-4):
  """Scaled weight standardization (NFNets' WSConv2D): per output channel, the kernel
  over (h, w, in) gets zero mean and variance 1 / fan_in, times `gain`."""
  fan_in = np.prod(kernel.shape[:-1])
  mean = jnp.mean(kernel, axis=(0, 1, 2), keepdims=True)
  var = jnp.var(kernel, axis=(0, 1, 2), keepdims=True)
  scale = jax.lax.rsqrt(jnp.maximum(var * fan_in, eps)) * gain
  return (kernel - mean) * scale


class WSConv(nn.Module):
  """A conv whose kernel is weight-standardized on every call (flax has no such conv)."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Any = "SAME"
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
                        shape, jnp.float32)
    gain = self.param("gain", nn.initializers.ones, (self.features,), jnp.float32)
    kernel = standardize_kernel(kernel, gain).astype(self.dtype)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel, self.strides,
        self.padding if isinstance(self.padding, str) else tuple(self.padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         jnp.float32).astype(self.dtype)
    return y


def nf_relu(x):
  return nn.relu(x) * _NF_RELU_GAIN


class NFBlock(nn.Module):
  """Pre-activation residual block: x + alpha * skip_gain * branch(relu(x) / beta)."""
  filters: int
  bottleneck: bool
  beta: float
  alpha: float
  conv: Callable
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    out = nf_relu(x) * self.beta
    expansion = 4 if self.bottleneck else 1
    shortcut = x
    if x.shape[-1] != self.filters * expansion or self.strides != (1, 1):
      # A transition block: the shortcut sees the normalized input, so the residual
      # stream restarts at variance ~1 (the caller resets its expected variance).
      shortcut = self.conv(self.filters * expansion, (1, 1), self.strides,
                           name="conv_proj")(out)
    if self.bottleneck:
      y = self.conv(self.filters, (1, 1), name="conv0")(out)
      y = self.conv(self.filters, (3, 3), self.strides, name="conv1")(nf_relu(y))
      y = self.conv(self.filters * 4, (1, 1), name="conv2")(nf_relu(y))
    else:
      y = self.conv(self.filters, (3, 3), self.strides, name="conv0")(out)
      y = self.conv(self.filters, (3, 3), name="conv1")(nf_relu(y))
    skip_gain = self.param("skip_gain", nn.initializers.zeros, (), jnp.float32)
    return shortcut + y * (self.alpha * skip_gain).astype(y.dtype)


# ---------------------------------------------------------------------- BatchNorm parts

class Block(nn.Module):
  """ResNet v1.5 basic (2 x 3x3) or bottleneck (1x1, 3x3, 1x1 x4) block.

  `norm`: a BatchNorm partial, or None for no normalization in this block."""
  filters: int
  bottleneck: bool
  conv: Callable
  norm: Callable | None
  strides: tuple[int, int] = (1, 1)

  def _conv_norm(self, x, features, kernel, strides=(1, 1), *, name, mask, train,
                 last=False):
    if self.norm is None:
      return self.conv(features, kernel, strides, use_bias=True, name=f"conv{name}")(x)
    x = self.conv(features, kernel, strides, use_bias=False, name=f"conv{name}")(x)
    # Zero scale on the branch's last BatchNorm: each block starts as the identity.
    init = nn.initializers.zeros_init() if last else nn.initializers.ones_init()
    return self.norm(scale_init=init, name=f"bn{name}")(
        x, use_running_average=not train, mask=mask)

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    """`mask`: None or bool [B, 1, 1, 1], the rows BatchNorm's statistics count."""
    expansion = 4 if self.bottleneck else 1
    cn = functools.partial(self._conv_norm, mask=mask, train=train)
    if self.bottleneck:
      y = nn.relu(cn(x, self.filters, (1, 1), name="0"))
      y = nn.relu(cn(y, self.filters, (3, 3), self.strides, name="1"))
      y = cn(y, self.filters * 4, (1, 1), name="2", last=True)
    else:
      y = nn.relu(cn(x, self.filters, (3, 3), self.strides, name="0"))
      y = cn(y, self.filters, (3, 3), name="1", last=True)
    residual = x
    if residual.shape != y.shape:
      residual = cn(x, self.filters * expansion, (1, 1), self.strides, name="_proj")
    return nn.relu(residual + y)


# ------------------------------------------------------------------------------ network

class ResNet(nn.Module):
  """images float [B, H, W, C] (normalized) -> logits float32 [B, num_classes]."""
  num_classes: int
  depth: int = 50
  width: int = 64
  stem: str = "imagenet"
  norm: str = "batch"
  bn_stages: tuple[int, ...] = (0, 1, 2, 3)   # with norm='batch'; the stem is stage 0
  dropout_layers: int = 0
  dropout_rate: float | jax.Array = 0.0
  dtype: Any = jnp.float32
  nf_alpha: float = 0.2

  @nn.compact
  def __call__(self, images, *, train: bool = False, mask=None):
    """`mask`: bool [B], the real rows of a padded batch (None: all). In training,
    BatchNorm's batch statistics (used to normalize and added to the running averages)
    count only these rows (flax's BatchNorm(mask=)); padding rows are normalized with
    them but never shift them."""
    nf = self.norm == "nf"
    bn_mask = None if mask is None else jnp.asarray(mask, bool).reshape(-1, 1, 1, 1)
    if nf:
      conv = functools.partial(WSConv, dtype=self.dtype)
    else:
      conv = functools.partial(nn.Conv, dtype=self.dtype)
    # use_running_average is given at call time (not here): a frozen layer's call is
    # set to inference mode by jaxreg.models.freezing, and flax refuses it twice.
    bn = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    has_bn = lambda stage: self.norm == "batch" and stage in self.bn_stages
    x = images.astype(self.dtype)

    if self.stem == "imagenet":
      kernel, strides, padding = (7, 7), (2, 2), [(3, 3), (3, 3)]
    else:
      kernel, strides, padding = (3, 3), (1, 1), [(1, 1), (1, 1)]
    if nf:
      x = conv(self.width, kernel, strides, padding=padding, name="stem_conv")(x)
    else:
      x = conv(self.width, kernel, strides, padding=padding, use_bias=not has_bn(0),
               name="stem_conv")(x)
      if has_bn(0):
        x = bn(name="stem_bn")(x, use_running_average=not train, mask=bn_mask)
      x = nn.relu(x)  # NF blocks are pre-activation: they apply their own relu
    if self.stem == "imagenet":
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")

    bottleneck = self.depth == 50
    expected_var = 1.0  # NF: of the residual stream (the stem's output is ~unit)
    for stage, blocks in enumerate(STAGE_SIZES[self.depth]):
      for j in range(blocks):
        strides = (2, 2) if stage > 0 and j == 0 else (1, 1)
        name = f"stage{stage}_block{j}"
        if nf:
          x = NFBlock(self.width * 2 ** stage, bottleneck, beta=expected_var ** -0.5,
                      alpha=self.nf_alpha, conv=conv, strides=strides, name=name)(x)
          expected_var = (1.0 if j == 0 else expected_var) + self.nf_alpha ** 2
        else:
          x = Block(self.width * 2 ** stage, bottleneck, conv=conv,
                    norm=bn if has_bn(stage) else None, strides=strides,
                    name=name)(x, bn_mask, train)
      self.sow("intermediates", f"stage{stage}", x)
      for k, after in _DROPOUT_AFTER_STAGE.items():
        if self.dropout_layers >= k and stage == after:
          x = Dropout(self.dropout_rate, name=f"dropout_stage{stage}")(x, not train)
    if nf:
      x = nf_relu(x)
    x = jnp.mean(x, axis=(1, 2))
    if self.dropout_layers >= 1:
      x = Dropout(self.dropout_rate, name="dropout_head")(x, not train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return x.astype(jnp.float32)


# ------------------------------------------------------------------------------- config

def parse_bn_stages(value) -> tuple[int, ...]:
  """'all' -> (0, 1, 2, 3); '0,2' -> (0, 2); '' -> () (no BatchNorm). The config schema
  has checked the value."""
  text = str(value).strip()
  if text == "all":
    return (0, 1, 2, 3)
  return tuple(sorted({int(p) for p in text.split(",") if p.strip()}))


def module_from_config(model_cfg, num_classes: int) -> ResNet:
  """config.model (its `resnet` block and `dtype`), validated -> the ResNet module."""
  r = model_cfg.resnet
  stages = parse_bn_stages(r.bn_stages) if r.norm == "batch" else ()
  return ResNet(num_classes=num_classes, depth=r.depth, width=r.width, stem=r.stem,
                norm=r.norm, bn_stages=stages, dropout_layers=r.dropout_layers,
                dropout_rate=r.dropout_rate, dtype=jnp.dtype(model_cfg.dtype))


def from_config(model_cfg, num_classes: int) -> Model:
  """config.model -> a Model taking batch['images']; mutable batch_stats iff BatchNorm."""
  module = module_from_config(model_cfg, num_classes)
  uses_bn = module.norm == "batch" and bool(module.bn_stages)
  return Model(module, inputs=("images",),
                      mutable=("batch_stats",) if uses_bn else (),
                      keyword_inputs=("mask",) if uses_bn else ())

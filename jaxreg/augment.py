"""Image augmentation inside the jitted train step: on device, drawn per example.

`config.data.augment` holds one strength per transform, so a sweep can vary each alone
(0, or 1.0 for resized_crop_min_scale, turns it off and removes it from the program):

  resized_crop_min_scale  random resized crop (Inception / torchvision
                          RandomResizedCrop): area scale uniform in [min, 1], aspect ratio
                          log-uniform in [3/4, 4/3], bilinear back to the input size
  crop_padding            zero-pad by this many pixels, then a random crop of the input
                          size (the CIFAR recipe: 4)
  flip                    probability of a horizontal flip
  brightness, contrast,   multiplicative factors uniform in [1-x, 1+x] (torchvision's
  saturation              ColorJitter definitions: brightness scales pixels, contrast
                          blends with the image's mean grey, saturation with its grey)
  hue                     hue rotated by a uniform angle in [-hue, hue] turns (a rotation
                          of the chroma plane in YIQ; torchvision goes through HSV)
  cutout                  a square of this side (pixels) centred uniformly in the image
                          (it may be clipped by the border) set to 0 AFTER normalization,
                          i.e. to the training mean colour (DeVries & Taylor 2017)

Order: resized crop, pad-crop, flip, colour jitter (brightness, contrast, saturation,
hue, each clipped to [0, 1]), normalization, cutout. Every draw is per example: one key
per example from jax.random.split, the transforms vmapped over the batch. Written here
rather than taken from a library because the transforms must run in the jitted step on a
batch with per-example parameters (dm_pix does colour jitter per call, not the crops).

A vmapped group (jaxreg/group.py) varies the strengths per member: `Augment` is then the
group's structure (the widest strength of each transform over its members: which ops are
in the program) and `member_values(a)` the member's own strengths as arrays, traced
through the same functions (`values=`). A member whose strength is "off" gets its
image back exactly (the op's result is discarded with jnp.where), and every draw uses
the keys its run alone uses, so a member augments exactly as its run alone does.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

# ITU-R BT.601 luma, as torchvision's rgb_to_grayscale.
_LUMA = jnp.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = jnp.array([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = jnp.linalg.inv(_RGB_TO_YIQ)


@dataclasses.dataclass(frozen=True)
class Augment:
  """Static strengths (Python numbers): a zero strength leaves its op out of the program."""
  crop_padding: int = 0
  resized_crop_min_scale: float = 1.0
  flip: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0
  saturation: float = 0.0
  hue: float = 0.0
  cutout: int = 0

  @classmethod
  def from_config(cls, augment_cfg) -> Augment:
    return cls(**{f.name: type(f.default)(augment_cfg[f.name])
                  for f in dataclasses.fields(cls)})

  @property
  def active(self) -> bool:
    return self != Augment()

  @classmethod
  def widest(cls, augments) -> Augment:
    """The structure that holds every transform any of `augments` uses."""
    augments = list(augments)
    return cls(**{f.name: (min if f.name == "resized_crop_min_scale" else max)(
        getattr(a, f.name) for a in augments) for f in dataclasses.fields(cls)})


def _bounds(strength: float) -> np.ndarray:
  """[min, max] of a colour factor, as `_factor` turns them into float32."""
  return np.array([max(0.0, 1.0 - strength), 1.0 + strength], np.float32)


def member_values(a: Augment) -> dict:
  """A group member's strengths as arrays (float32; int32 for pixel counts): the
  `values` of `train_images` in a program whose structure holds them."""
  return {"resized_crop_min_scale": np.float32(a.resized_crop_min_scale),
          "crop_padding": np.int32(a.crop_padding), "flip": np.float32(a.flip),
          "brightness": _bounds(a.brightness), "contrast": _bounds(a.contrast),
          "saturation": _bounds(a.saturation), "hue": np.float32(a.hue),
          "cutout": np.int32(a.cutout)}


def resized_crop(key, image, min_scale: float):
  """A random crop of area fraction in [min_scale, 1] resized to the image's size."""
  h, w = image.shape[:2]
  k_scale, k_ratio, k_y, k_x = jax.random.split(key, 4)
  scale = jax.random.uniform(k_scale, (), minval=min_scale, maxval=1.0)
  log_ratio = jax.random.uniform(k_ratio, (), minval=math.log(3 / 4),
                                 maxval=math.log(4 / 3))
  ratio = jnp.exp(log_ratio)
  # Crop size in pixels (continuous), clipped to the image.
  cw = jnp.clip(jnp.sqrt(scale * ratio) * w, 1.0, w)
  ch = jnp.clip(jnp.sqrt(scale / ratio) * h, 1.0, h)
  y0 = jax.random.uniform(k_y, ()) * (h - ch)
  x0 = jax.random.uniform(k_x, ()) * (w - cw)
  sy, sx = h / ch, w / cw
  # scale_and_translate maps input coordinate u to u * scale + translation.
  return jax.image.scale_and_translate(
      image, image.shape, (0, 1), jnp.stack([sy, sx]), jnp.stack([-y0 * sy, -x0 * sx]),
      method="linear", antialias=False)


def pad_crop(key, image, padding: int):
  """Zero-pad by `padding` pixels, then a random crop back to the input size."""
  h, w, c = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  dy, dx = jax.random.randint(key, (2,), 0, 2 * padding + 1)
  return jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, c))


def pad_crop_within(key, image, max_padding: int, padding):
  """`pad_crop` by a traced `padding` <= max_padding: the same draw and pixels (a pad
  by max_padding holds the pad by `padding` at offset max_padding - padding)."""
  h, w, c = image.shape
  padded = jnp.pad(image, ((max_padding, max_padding), (max_padding, max_padding), (0, 0)))
  dy, dx = jax.random.randint(key, (2,), 0, 2 * padding + 1)
  shift = max_padding - padding
  return jax.lax.dynamic_slice(padded, (shift + dy, shift + dx, 0), (h, w, c))


def _factor(key, strength: float):
  return jax.random.uniform(key, (), minval=max(0.0, 1.0 - strength),
                            maxval=1.0 + strength)


def _grey(image):
  return (image @ _LUMA)[..., None]


def colour_jitter(key, image, a: Augment, values=None):
  """`values`: a member's traced strengths (`member_values`), else a's own."""
  kb, kc, ks, kh = jax.random.split(key, 4)
  rgb = image.shape[-1] == 3

  def factor(k, name):
    if values is None:
      return _factor(k, getattr(a, name))
    lo, hi = values[name][0], values[name][1]
    return jax.random.uniform(k, (), minval=lo, maxval=hi)

  def kept(on, new, old):  # a member's transform at strength 0 returns `old` exactly
    return new if values is None else jnp.where(on, new, old)

  if a.brightness:
    image = kept(values is None or values["brightness"][1] > 1.0,
                 jnp.clip(image * factor(kb, "brightness"), 0.0, 1.0), image)
  if a.contrast:
    mean = jnp.mean(_grey(image) if rgb else image)
    image = kept(values is None or values["contrast"][1] > 1.0,
                 jnp.clip((image - mean) * factor(kc, "contrast") + mean, 0.0, 1.0), image)
  if a.saturation and rgb:
    grey = _grey(image)
    image = kept(values is None or values["saturation"][1] > 1.0,
                 jnp.clip((image - grey) * factor(ks, "saturation") + grey, 0.0, 1.0),
                 image)
  if a.hue and rgb:
    hue = a.hue if values is None else values["hue"]
    theta = jax.random.uniform(kh, (), minval=-hue, maxval=hue) * 2.0 * math.pi
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    rotate = jnp.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    image = kept(values is None or values["hue"] > 0.0,
                 jnp.clip(image @ (_YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ).T, 0.0, 1.0), image)
  return image


def cutout(key, image, size: int):
  h, w = image.shape[:2]
  cy, cx = jax.random.randint(key, (2,), 0, jnp.array([h, w]))
  y0, x0 = cy - size // 2, cx - size // 2  # rows y0 .. y0 + size - 1
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)
  return jnp.where(inside[..., None], 0.0, image)


def augment_one(key, image, a: Augment, values=None):
  """One float image [H, W, C] in [0, 1] -> augmented, still in [0, 1] (no cutout).
  `values`: a group member's traced strengths (`member_values`); None: a's own."""
  k_rc, k_pc, k_flip, k_colour = jax.random.split(key, 4)
  if a.resized_crop_min_scale < 1.0:
    if values is None:
      image = resized_crop(k_rc, image, a.resized_crop_min_scale)
    else:
      scale = values["resized_crop_min_scale"]
      image = jnp.where(scale < 1.0, resized_crop(k_rc, image, scale), image)
  if a.crop_padding:
    image = (pad_crop(k_pc, image, a.crop_padding) if values is None else
             pad_crop_within(k_pc, image, a.crop_padding, values["crop_padding"]))
  if a.flip:
    flip = a.flip if values is None else values["flip"]
    image = jnp.where(jax.random.uniform(k_flip) < flip, image[:, ::-1], image)
  if a.brightness or a.contrast or a.saturation or a.hue:
    image = colour_jitter(k_colour, image, a, values)
  return image


def normalize(images, mean, std):
  """Per-channel (x - mean) / std; `mean`, `std` of shape [C]."""
  return (images - mean) / std


def train_images(key, images_uint8, a: Augment, mean, std, values=None):
  """uint8 [B, H, W, C] -> normalized float32, every example drawn with its own key.
  `values`: a group member's traced strengths (`member_values`) within structure `a`."""
  images = images_uint8.astype(jnp.float32) / 255.0
  keys = jax.random.split(key, images.shape[0])
  if a.active:
    images = jax.vmap(lambda k, x: augment_one(k, x, a, values))(keys, images)
  images = normalize(images, mean, std)
  if a.cutout:
    size = a.cutout if values is None else values["cutout"]
    cut_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    images = jax.vmap(lambda k, x: cutout(k, x, size))(cut_keys, images)
  return images


def eval_images(images_uint8, mean, std):
  """uint8 [B, H, W, C] -> normalized float32 (no augmentation)."""
  return normalize(images_uint8.astype(jnp.float32) / 255.0, mean, std)

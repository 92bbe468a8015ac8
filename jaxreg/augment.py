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
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

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


def _factor(key, strength: float):
  return jax.random.uniform(key, (), minval=max(0.0, 1.0 - strength),
                            maxval=1.0 + strength)


def _grey(image):
  return (image @ _LUMA)[..., None]


def colour_jitter(key, image, a: Augment):
  kb, kc, ks, kh = jax.random.split(key, 4)
  rgb = image.shape[-1] == 3
  if a.brightness:
    image = jnp.clip(image * _factor(kb, a.brightness), 0.0, 1.0)
  if a.contrast:
    mean = jnp.mean(_grey(image) if rgb else image)
    image = jnp.clip((image - mean) * _factor(kc, a.contrast) + mean, 0.0, 1.0)
  if a.saturation and rgb:
    grey = _grey(image)
    image = jnp.clip((image - grey) * _factor(ks, a.saturation) + grey, 0.0, 1.0)
  if a.hue and rgb:
    theta = jax.random.uniform(kh, (), minval=-a.hue, maxval=a.hue) * 2.0 * math.pi
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    rotate = jnp.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    image = jnp.clip(image @ (_YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ).T, 0.0, 1.0)
  return image


def cutout(key, image, size: int):
  h, w = image.shape[:2]
  cy, cx = jax.random.randint(key, (2,), 0, jnp.array([h, w]))
  y0, x0 = cy - size // 2, cx - size // 2  # rows y0 .. y0 + size - 1
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)
  return jnp.where(inside[..., None], 0.0, image)


def augment_one(key, image, a: Augment):
  """One float image [H, W, C] in [0, 1] -> augmented, still in [0, 1] (no cutout)."""
  k_rc, k_pc, k_flip, k_colour = jax.random.split(key, 4)
  if a.resized_crop_min_scale < 1.0:
    image = resized_crop(k_rc, image, a.resized_crop_min_scale)
  if a.crop_padding:
    image = pad_crop(k_pc, image, a.crop_padding)
  if a.flip:
    image = jnp.where(jax.random.uniform(k_flip) < a.flip, image[:, ::-1], image)
  if a.brightness or a.contrast or a.saturation or a.hue:
    image = colour_jitter(k_colour, image, a)
  return image


def normalize(images, mean, std):
  """Per-channel (x - mean) / std; `mean`, `std` of shape [C]."""
  return (images - mean) / std


def train_images(key, images_uint8, a: Augment, mean, std):
  """uint8 [B, H, W, C] -> normalized float32, every example drawn with its own key."""
  images = images_uint8.astype(jnp.float32) / 255.0
  keys = jax.random.split(key, images.shape[0])
  if a.active:
    images = jax.vmap(lambda k, x: augment_one(k, x, a))(keys, images)
  images = normalize(images, mean, std)
  if a.cutout:
    cut_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    images = jax.vmap(lambda k, x: cutout(k, x, a.cutout))(cut_keys, images)
  return images


def eval_images(images_uint8, mean, std):
  """uint8 [B, H, W, C] -> normalized float32 (no augmentation)."""
  return normalize(images_uint8.astype(jnp.float32) / 255.0, mean, std)

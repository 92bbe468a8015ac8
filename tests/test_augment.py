"""On-device augmentation: per-example draws, each transform's definition, off = identity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import augment
from jaxreg.augment import Augment
from jaxreg.data import shapes

ZERO, ONE = jnp.zeros(3), jnp.ones(3)


def _images(n=8, size=16):
  x = shapes.generate(n, 1, size, seed=3).train.images
  return jnp.asarray(x[:n])


def _run(a, images, key=0):
  return np.asarray(jax.jit(lambda k, x: augment.train_images(k, x, a, ZERO, ONE))(
      jax.random.key(key), images))


def test_off_is_identity_up_to_scaling():
  x = _images()
  np.testing.assert_allclose(_run(Augment(), x), np.asarray(x) / 255.0, atol=1e-6)


@pytest.mark.parametrize("a", [Augment(crop_padding=4),
                               Augment(resized_crop_min_scale=0.2)])
def test_two_examples_of_one_batch_get_different_crops(a):
  one = _images(1)
  batch = jnp.repeat(one, 8, axis=0)  # the same image eight times
  out = _run(a, batch)
  distinct = {out[i].tobytes() for i in range(8)}
  assert len(distinct) >= 6, "crops are not drawn per example"
  # Another key gives other crops; the same key the same ones.
  np.testing.assert_array_equal(out, _run(a, batch))
  assert not np.array_equal(out, _run(a, batch, key=1))


def test_pad_crop_is_a_shift_with_zero_fill():
  x = _images(1)
  out = _run(Augment(crop_padding=3), jnp.repeat(x, 16, axis=0))
  src = np.pad(np.asarray(x[0]) / 255.0, ((3, 3), (3, 3), (0, 0)))
  for img in out:  # every output is one of the (2p+1)^2 windows of the padded image
    assert any(np.allclose(img, src[dy:dy + 16, dx:dx + 16], atol=1e-6)
               for dy in range(7) for dx in range(7))


def test_flip_probability_one_and_zero():
  x = _images(4)
  np.testing.assert_allclose(_run(Augment(flip=1.0), x),
                             np.asarray(x)[:, :, ::-1] / 255.0, atol=1e-6)


def test_hue_keeps_grey_and_moves_colour():
  grey = jnp.full((1, 8, 8, 3), 128, jnp.uint8)
  red = jnp.zeros((1, 8, 8, 3), jnp.uint8).at[..., 0].set(200)
  a = Augment(hue=0.5)
  out_grey = _run(a, jnp.repeat(grey, 4, axis=0))
  np.testing.assert_allclose(out_grey, 128 / 255.0, atol=1e-5)
  out_red = _run(a, jnp.repeat(red, 8, axis=0))
  # The red channel no longer dominates in most examples: the hue moved.
  moved = (out_red[:, 0, 0, 0] < out_red[:, 0, 0, 1:].max(-1)).sum()
  assert moved >= 2


def test_saturation_and_brightness_ranges():
  red = jnp.zeros((16, 4, 4, 3), jnp.uint8).at[..., 0].set(200)
  out = _run(Augment(saturation=1.0), red)
  # Factor 0 would be grey; factors in [0, 2] move green/blue off 0 for some examples.
  assert out[..., 1].max() > 0.05 and out[..., 0].min() >= 0
  out = _run(Augment(brightness=0.5), red)
  ratio = out[:, 0, 0, 0] / (200 / 255.0)
  assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 1.5 + 1e-5
  assert ratio.std() > 0.05  # drawn per example


def test_cutout_zeroes_one_square_after_normalization():
  x = jnp.full((8, 16, 16, 3), 255, jnp.uint8)
  out = np.asarray(jax.jit(lambda k, x: augment.train_images(
      k, x, Augment(cutout=6), ZERO, ONE))(jax.random.key(0), x))
  zeros = (out == 0).all(-1).sum((1, 2))
  assert zeros.max() == 36 and zeros.min() > 0  # clipped by the border at most
  # Normalization first: the square is the mean colour (0 after normalizing).
  mean = jnp.full(3, 0.5)
  out = np.asarray(augment.train_images(jax.random.key(0), x, Augment(cutout=6), mean,
                                        ONE))
  assert set(np.unique(out)) == {0.0, 0.5}


def test_from_config_reads_every_strength():
  from jaxreg.config import get_base_config
  c = get_base_config()
  c.data.augment.hue = 0.1
  c.data.augment.cutout = 4
  a = Augment.from_config(c.data.augment)
  assert a.hue == 0.1 and a.cutout == 4 and a.active
  assert not Augment.from_config(get_base_config().data.augment).active


# Members of one vmapped group: each its own strengths, some transforms off for some.
MEMBERS = [Augment(crop_padding=2, flip=0.5, hue=0.1, cutout=4),
           Augment(resized_crop_min_scale=0.3, brightness=0.4, contrast=0.2),
           Augment(saturation=0.8, crop_padding=1),
           Augment()]


def test_a_group_member_augments_exactly_as_its_run_alone():
  """The group's program holds every transform some member uses (Augment.widest); a
  member's own strengths are traced values: its images must equal its run alone's,
  transforms it does not use included (off = its image unchanged). Equal up to float
  rounding (the vmapped colour matmuls round differently: 1 ulp); a crop, flip, cutout
  or colour factor drawn from another key or strength moves pixels by 1e-2 or more."""
  x = _images()
  widest = Augment.widest(MEMBERS)
  assert widest == Augment(crop_padding=2, resized_crop_min_scale=0.3, flip=0.5,
                           brightness=0.4, contrast=0.2, saturation=0.8, hue=0.1,
                           cutout=4)
  values = jax.tree.map(lambda *v: jnp.stack(v), *[augment.member_values(a)
                                                   for a in MEMBERS])
  keys = jax.random.split(jax.random.key(5), len(MEMBERS))
  group = jax.jit(jax.vmap(lambda k, v: augment.train_images(k, x, widest, ZERO, ONE, v)))
  out = np.asarray(group(keys, values))
  for i, a in enumerate(MEMBERS):
    alone = np.asarray(jax.jit(lambda k: augment.train_images(k, x, a, ZERO, ONE))(
        keys[i]))
    np.testing.assert_allclose(out[i], alone, rtol=0, atol=1e-6, err_msg=str(a))

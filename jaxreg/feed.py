"""Image datasets resident on the device: batches gathered, augmented and normalized in jit.

Images (uint8) and labels of every split are put on the device once, replicated over the
mesh (CIFAR-10: 184 MB). Per epoch the host draws the order (seed, epoch) exactly as the
text path does and puts it on the device once as [steps, batch] indices plus a mask; the
jitted train step picks its row with `state.step % steps_per_epoch`, gathers the batch,
augments every example with its own key (jaxreg/augment.py), normalizes, splits the batch
over the mesh and runs `train.train_step`. The host does nothing per step but dispatch.
Evaluation of a split is ONE jitted call: a lax.scan over fixed-shape batches whose last
one is padded and masked, so every example counts exactly once and nothing recompiles.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import augment as augment_lib, parallel

# fold_in stream of the per-step key that draws the augmentation (dropout uses the step
# key itself), so turning augmentation on does not change the dropout masks.
_AUGMENT_STREAM = 1


def index_rows(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """order [N] -> (indices int32 [S, B], mask bool [S, B]); the last row padded with
  the order's first index, masked out."""
  steps = -(-len(order) // batch_size)
  pad = steps * batch_size - len(order)
  mask = np.arange(steps * batch_size) < len(order)
  idx = np.concatenate([order, np.full(pad, order[0] if len(order) else 0)])
  return (idx.astype(np.int32).reshape(steps, batch_size),
          mask.reshape(steps, batch_size))


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 images, in [0, 1] units (float64 sums)."""
  x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
  std = x.std(axis=0)
  return x.mean(axis=0).astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


class ImageFeed:
  """The device-resident splits of an ImageData and the jitted steps that read them."""

  def __init__(self, config, data, mesh, model, train_step, eval_step):
    self.config, self.data, self.mesh = config, data, mesh
    rep = parallel.replicated(mesh)
    self.batch_size = config.train.batch_size
    self.steps_per_epoch = -(-len(data.train) // self.batch_size)
    if config.data.normalize:
      mean, std = channel_stats(data.train.images)
    else:
      c = data.train.images.shape[-1]
      mean, std = np.zeros(c, np.float32), np.ones(c, np.float32)
    self.mean, self.std = mean, std
    self.augment = augment_lib.Augment.from_config(config.data.augment)
    # Put once: uint8 images and labels of each split.
    self.resident = {
        name: jax.device_put({"images": data.split(name).images,
                              "labels": data.split(name).labels}, rep)
        for name in ("train", "val", "test")}
    self._eval_rows = {}
    self._predict = None  # built on first use: only the final test evaluation needs it
    shard = parallel.data_sharded(mesh)
    self._train = jax.jit(
        functools.partial(_train_step, train_step=train_step, augment=self.augment,
                          mean=mean, std=std, steps_per_epoch=self.steps_per_epoch,
                          shard=shard),
        in_shardings=(rep, rep, rep, rep), out_shardings=(rep, rep, rep),
        donate_argnums=(0, 3))
    self._eval = jax.jit(
        functools.partial(_eval_split, eval_step=eval_step, mean=mean, std=std,
                          shard=shard),
        in_shardings=(rep, rep, rep, rep), out_shardings=rep, donate_argnums=(3,))

  def train_step(self, state, batch, counts):
    """The loop's `s.train_step(state, batch, counts)`; `batch` from epoch_batches."""
    return self._train(state, self.resident["train"], batch, counts)

  def epoch_batches(self, order: np.ndarray):
    """One device put of the epoch's order, then one (identical) batch handle per step."""
    idx, mask = index_rows(order, self.batch_size)
    rows = jax.device_put({"index": idx, "mask": mask}, parallel.replicated(self.mesh))
    for _ in range(len(idx)):
      yield rows

  def _rows(self, split: str):
    if split not in self._eval_rows:
      idx, mask = index_rows(np.arange(len(self.data.split(split))),
                             self.config.data.eval_batch_size)
      self._eval_rows[split] = jax.device_put(
          {"index": idx, "mask": mask}, parallel.replicated(self.mesh))
    return self._eval_rows[split]

  def evaluate(self, variables, split: str, counts):
    """Confusion counts over every example of `split` in one jitted call."""
    return self._eval(variables, self.resident[split], self._rows(split), counts)

  def predict(self, variables, split: str, counts, predict_step):
    """evaluate, plus each example's predicted class (int32 [N], the split's order).
    `predict_step(variables, batch, counts) -> (counts, ids [B])`, replicated."""
    if self._predict is None:
      rep = parallel.replicated(self.mesh)
      self._predict = jax.jit(
          functools.partial(_eval_split, eval_step=predict_step, mean=self.mean,
                            std=self.std, shard=parallel.data_sharded(self.mesh)),
          in_shardings=(rep, rep, rep, rep), out_shardings=(rep, rep),
          donate_argnums=(3,))
    counts, ids = self._predict(variables, self.resident[split], self._rows(split), counts)
    return counts, np.asarray(jax.device_get(ids)).reshape(-1)[:len(self.data.split(split))]

  def init_batch(self) -> dict:
    """A training-shaped batch for model.init."""
    n = self.batch_size
    return {"images": np.zeros((n, *self.data.image_shape), np.float32),
            "labels": np.zeros(n, np.int32), "mask": np.ones(n, bool)}


def _train_step(state, data, rows, counts, *, train_step, augment, mean, std,
                steps_per_epoch, shard):
  row = state.step % steps_per_epoch
  index, mask = rows["index"][row], rows["mask"][row]
  key = jax.random.fold_in(
      jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step), _AUGMENT_STREAM)
  images = augment_lib.train_images(key, data["images"][index], augment, mean, std)
  batch = jax.lax.with_sharding_constraint(
      {"images": images, "labels": data["labels"][index], "mask": mask}, shard)
  return train_step(state, batch, counts)


def _eval_split(variables, data, rows, counts, *, eval_step, mean, std, shard):
  def body(counts, row):
    index, mask = row
    batch = jax.lax.with_sharding_constraint(
        {"images": augment_lib.eval_images(data["images"][index], mean, std),
         "labels": data["labels"][index], "mask": mask}, shard)
    out = eval_step(variables, batch, counts)
    # eval_step returns counts; a predicting step returns (counts, ids [B]).
    return out if isinstance(out, tuple) else (out, None)
  counts, ids = jax.lax.scan(body, counts, (rows["index"], rows["mask"]))
  return counts if ids is None else (counts, ids)

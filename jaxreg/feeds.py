"""Feeds: how the training loop gets its batches and evaluates a split, for any modality.

The loop (jaxreg/train/loop.py) sees one interface and never asks which feed it has:

  feed.train_step(state, batch, counts)            one run's jitted step (the feed's
                                                   config; train_step_for(config): another
                                                   member's)
  feed.group_train_step(shared, configs)           the same step vmapped over K members:
                                                   fn(state[K], values[K], batch, counts[K])
  feed.epoch_batches(orders, start, stop, epoch)   the device batches of one epoch: one
                                                   order (one run, or a group sharing it)
                                                   or one order per member
  feed.evaluate(variables, split, counts)          one run's counts over every example
  feed.evaluate_group(variables[K], split, counts[K])
  feed.predict(variables, split, counts)           counts and each example's class
  feed.init_batch()                                a training-shaped batch for model.init
  feed.member_values(config)                       what a group member varies in the feed
                                                   (data.augment strengths for images)

* `TextFeed` (host batches): each step's numpy batch is cut on the host from the
  epoch's order, padded to its length bucket, and put on the device split along 'data'.
  A group whose members have different orders gets a [K, B, T] batch, every member's
  batch padded to the widest (RNN masks do not depend on the width: models/layers.py).
* `ImageFeed` (device-resident): images (uint8) and labels of every split are put on
  the device once, replicated over the mesh (CIFAR-10: 184 MB). Per epoch the host puts
  the order on the device once as [steps, batch] indices plus a mask; the jitted step
  picks its row with `state.step % steps_per_epoch`, gathers, augments every example
  with its own key (jaxreg/augment.py), normalizes and splits the batch over the mesh.
  Evaluation of a split is ONE jitted call: a lax.scan over fixed-shape batches whose
  last one is padded and masked, so every example counts once and nothing recompiles.

* `StreamFeed` (streamed images, jaxreg/data/stream.py): the splits stay in storage
  (image files, a TFDS split's ArrayRecord records); per
  epoch grain decodes and resizes the rows of the same [steps, batch] order in worker
  processes, a batch or two ahead of the step (put on the device while the previous
  step runs). The jitted step augments and normalizes with ImageFeed's functions and
  keys (fold_in(rng, step)), so a streamed run equals its resident run. Evaluation
  runs one jitted step per host batch of the split (padded and masked).
"""

from __future__ import annotations

import dataclasses
import functools
import collections
import itertools
from typing import Iterator, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxreg import augment as augment_lib, config as config_lib, parallel
from jaxreg.data import cache, dataset, stream

# fold_in stream of the per-step key that draws the augmentation (dropout uses the step
# key itself), so turning augmentation on does not change the dropout masks.
AUGMENT_STREAM = 1


def epoch_order(config, train_split, epoch: int) -> np.ndarray:
  """The order of the training examples in one epoch. It depends on (seed, epoch) and
  the data only, so a resumed run, and a member of a vmapped group, see exactly this
  run's order. Text: regrouped by length when data.sort_window > 0."""
  rng = np.random.default_rng([config.seed, epoch])
  order = rng.permutation(len(train_split))
  lengths = getattr(train_split, "lengths", None)  # images have none
  if config.data.sort_window and lengths is not None:
    order = dataset.length_sorted(order, lengths, config.train.batch_size,
                                  config.data.sort_window, rng)
  return order


def feed_class(config):
  """The feed of config.data: ImageFeed for image sources, TextFeed otherwise."""
  return ImageFeed if config_lib.is_image_source(config.data) else TextFeed


def for_config(config, data, mesh, steps, normalization=None):
  """The feed of `config` over `data`; `steps`: its model's pure steps
  (jaxreg.train.steps.bind). The model evaluates every member of a group (its traced
  fields do not matter there: evaluation has no dropout). Streamed image data
  (stream.StreamedImageData: larger than data.resident_limit_mb) gets a StreamFeed.
  `normalization`: images' (mean, std) per channel to use instead of the training
  split's (model.init_from: the upstream run's)."""
  if isinstance(data, stream.StreamedImageData):
    return StreamFeed(config, data, mesh, steps, normalization=normalization)
  if normalization is not None:
    return feed_class(config)(config, data, mesh, steps, normalization=normalization)
  return feed_class(config)(config, data, mesh, steps)


def jit_host_steps(steps, mesh):
  """(train, eval) of `steps` jitted for host batches: state replicated, batch split
  along 'data', the state and the counts donated."""
  rep, shard = parallel.replicated(mesh), parallel.data_sharded(mesh)
  train = jax.jit(steps.train, in_shardings=(rep, shard, rep),
                  out_shardings=(rep, rep, rep), donate_argnums=(0, 2))
  evaluate = jax.jit(steps.eval, in_shardings=(rep, shard, rep), out_shardings=rep,
                     donate_argnums=(2,))
  return train, evaluate


def jit_group_host_step(steps, mesh, shared: bool):
  """`steps.member_train` vmapped over K members and jitted for host batches: (state[K],
  values[K], batch, counts[K]), the batch [B, ...] shared by every member when `shared`,
  else [K, B, ...]; split along 'data' either way."""
  rep = parallel.replicated(mesh)
  member_step = lambda state, values, batch, counts: steps.member_train(  # noqa: E731
      state, values["model"], batch, counts)
  return jax.jit(
      jax.vmap(member_step, in_axes=(0, 0, None if shared else 0, 0)),
      in_shardings=(rep, rep, parallel.data_sharded(mesh) if shared else
                    _member_axis(mesh), rep),
      out_shardings=(rep, rep, rep), donate_argnums=(0, 3))


def put_stacked(batch: dict, mesh) -> dict:
  """A [K, B, ...] host batch on the device: members replicated, B split."""
  return jax.device_put(batch, _member_axis(mesh))


def _memo(cache: dict, key, build):
  """cache[key], built on first use (a feed's programs that not every run needs)."""
  if key not in cache:
    cache[key] = build()
  return cache[key]


def _member_axis(mesh) -> NamedSharding:
  """[K, B, ...]: members replicated, the batch split along 'data'."""
  return NamedSharding(mesh, P(None, "data"))


# --------------------------------------------------------------------------- text


def stack_batches(batches: Sequence[dict]) -> dict:
  """K batches -> one [K, B, T] batch, tokens padded to the widest with PAD_ID."""
  width = max(b["tokens"].shape[1] for b in batches)
  out = {k: np.stack([b[k] for b in batches]) for k in batches[0] if k != "tokens"}
  out["tokens"] = np.stack([
      np.pad(b["tokens"], ((0, 0), (0, width - b["tokens"].shape[1])),
             constant_values=dataset.PAD_ID) for b in batches])
  return out


class TextFeed:
  """Host batches of a TextData (see the module docstring)."""

  TRACED: tuple[str, ...] = ()  # nothing a group member varies in the feed

  def __init__(self, config, data, mesh, steps, normalization=None):
    self.config, self.data, self.mesh, self.steps = config, data, mesh, steps
    self.batch_size = config.train.batch_size
    self.eval_batch_size = config.data.eval_batch_size
    self.buckets = dataset.parse_buckets(config.data.buckets, config.data.max_length)
    self.steps_per_epoch = dataset.num_batches(len(data.train), self.batch_size)
    self.num_classes = data.num_classes
    self.train_step, self.eval_step = jit_host_steps(steps, mesh)
    self._jitted = {}  # built on first use: only the final evaluation predicts, etc.

  def init_batch(self) -> dict:
    return next(dataset.batches(self.data.train, self.batch_size, buckets=self.buckets))

  def member_values(self, config) -> dict:
    return {}

  def train_step_for(self, config):
    """One run's step for any member's config (the same program for text)."""
    return self.train_step

  def group_train_step(self, shared: bool, configs):
    """jit(vmap(member_train)): (state[K], values[K], batch, counts[K]); the batch
    [B, ...] shared by every member when `shared`, else [K, B, ...]."""
    return _memo(self._jitted, ("train", shared),
                 lambda: jit_group_host_step(self.steps, self.mesh, shared))

  def epoch_batches(self, orders: Sequence[np.ndarray], start: int = 0,
                    stop: int | None = None, epoch: int = 0) -> Iterator[dict]:
    """Device batches `start` to `stop` of the epoch in `orders` (one per member, or
    one shared)."""
    streams = [itertools.islice(dataset.batches(self.data.train, self.batch_size, order,
                                                buckets=self.buckets), start, stop)
               for order in orders]
    if len(streams) == 1:
      for batch in streams[0]:
        yield parallel.put_batch(batch, self.mesh)
      return
    for parts in zip(*streams):
      yield put_stacked(stack_batches(parts), self.mesh)

  def _eval_batches(self, split: str):
    """(indices into the split, device batch): shortest first, so that buckets run
    short batches at short widths (the summed counts do not depend on the order)."""
    part = self.data.split(split)
    order = np.argsort(part.lengths, kind="stable")
    size = self.eval_batch_size
    for start, batch in zip(range(0, len(order), size),
                            dataset.batches(part, size, order, buckets=self.buckets)):
      yield order[start:start + size], parallel.put_batch(batch, self.mesh)

  def evaluate(self, variables, split: str, counts):
    for _, batch in self._eval_batches(split):
      counts = self.eval_step(variables, batch, counts)
    return counts

  def evaluate_group(self, variables, split: str, counts):
    rep = parallel.replicated(self.mesh)
    step = _memo(self._jitted, "group_eval", lambda: jax.jit(
        jax.vmap(self.steps.eval, in_axes=(0, None, 0)),
        in_shardings=(rep, parallel.data_sharded(self.mesh), rep), out_shardings=rep,
        donate_argnums=(2,)))
    for _, batch in self._eval_batches(split):
      counts = step(variables, batch, counts)
    return counts

  def predict(self, variables, split: str, counts):
    rep = parallel.replicated(self.mesh)
    step = _memo(self._jitted, "predict", lambda: jax.jit(
        self.steps.predict, out_shardings=(rep, rep), donate_argnums=(2,)))
    preds = np.full(len(self.data.split(split)), -1, np.int32)
    for index, batch in self._eval_batches(split):
      counts, p = step(variables, batch, counts)
      preds[index] = np.asarray(jax.device_get(p))[:len(index)]
    return counts, preds


# -------------------------------------------------------------------------- images


def index_rows(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """order [N] -> (indices int32 [S, B], mask bool [S, B]); the last row padded with
  the order's first index, masked out."""
  steps_ = -(-len(order) // batch_size)
  pad = steps_ * batch_size - len(order)
  mask = np.arange(steps_ * batch_size) < len(order)
  idx = np.concatenate([order, np.full(pad, order[0] if len(order) else 0)])
  return (idx.astype(np.int32).reshape(steps_, batch_size),
          mask.reshape(steps_, batch_size))


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 images, in [0, 1] units."""
  return stats_from_histogram(stream.counts_per_channel(images))


def stats_from_histogram(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """int64 [C, 256] value counts -> per-channel (mean, std) in [0, 1] units (float64).
  From counts, so a resident split and a streamed one (counted batch by batch) get the
  same bits."""
  values = np.arange(256, dtype=np.float64) / 255.0
  n = hist.sum(axis=1).astype(np.float64)
  mean = (hist * values).sum(axis=1) / n
  std = np.sqrt((hist * (values[None] - mean[:, None]) ** 2).sum(axis=1) / n)
  return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def _mean_std(config, normalization, channels: int, measure):
  """The per-channel (mean, std) images are normalized with: `normalization` when given
  (model.init_from: the upstream run's), else `measure()` on the training split when
  data.normalize, else (0, 1)."""
  if normalization is not None:
    mean, std = (np.asarray(v, np.float32) for v in normalization)
    return mean, std
  if config.data.normalize:
    return measure()
  return np.zeros(channels, np.float32), np.ones(channels, np.float32)


class ImageFeed:
  """The device-resident splits of an ImageData and the jitted steps that read them."""

  TRACED = tuple(f"data.augment.{f.name}" for f in dataclasses.fields(augment_lib.Augment))

  def __init__(self, config, data, mesh, steps, normalization=None):
    self.config, self.data, self.mesh, self.steps = config, data, mesh, steps
    rep = parallel.replicated(mesh)
    self.batch_size = config.train.batch_size
    self.steps_per_epoch = -(-len(data.train) // self.batch_size)
    self.num_classes = data.num_classes
    self.mean, self.std = mean, std = _mean_std(
        config, normalization, data.train.images.shape[-1],
        lambda: channel_stats(data.train.images))
    self.augment = augment_lib.Augment.from_config(config.data.augment)
    # Put once: uint8 images and labels of each split.
    self.resident = {
        name: jax.device_put({"images": data.split(name).images,
                              "labels": data.split(name).labels}, rep)
        for name in ("train", "val", "test")}
    self._eval_rows = {}
    shard = parallel.data_sharded(mesh)
    self._shard = shard
    self._train = self._jit_train(self.augment)
    evaluate = functools.partial(_eval_split, eval_step=steps.eval, mean=mean, std=std,
                                 shard=shard)
    self._eval = jax.jit(evaluate, in_shardings=(rep, rep, rep, rep), out_shardings=rep,
                         donate_argnums=(3,))
    self._evaluate = evaluate
    self._jitted = {}  # built on first use: only the final evaluation predicts, etc.

  def train_step(self, state, batch, counts):
    """One run's step; `batch` from epoch_batches."""
    return self._train(state, self.resident["train"], batch, counts)

  def train_step_for(self, config):
    """One run's step with `config`'s own augmentation (a member of a group)."""
    augment = augment_lib.Augment.from_config(config.data.augment)
    if augment == self.augment:
      return self.train_step
    jitted = _memo(self._jitted, ("solo", augment), lambda: self._jit_train(augment))
    return lambda state, batch, counts: jitted(state, self.resident["train"], batch,
                                               counts)

  def _jit_train(self, augment: augment_lib.Augment):
    rep = parallel.replicated(self.mesh)
    return jax.jit(
        functools.partial(_train_step, train_step=self.steps.train, augment=augment,
                          mean=self.mean, std=self.std,
                          steps_per_epoch=self.steps_per_epoch, shard=self._shard),
        in_shardings=(rep, rep, rep, rep), out_shardings=(rep, rep, rep),
        donate_argnums=(0, 3))

  def member_values(self, config) -> dict:
    """A member's augmentation strengths, traced within the group's structure."""
    return {"augment": augment_lib.member_values(
        augment_lib.Augment.from_config(config.data.augment))}

  def group_train_step(self, shared: bool, configs):
    """jit(vmap(...)) of a member's step: its own rows (or rows shared by all when
    `shared`), its augmentation strengths within the group's structure (the widest
    strength of each transform over `configs`), its model fields; the resident images
    are read by every member."""
    augment = augment_lib.Augment.widest(
        augment_lib.Augment.from_config(c.data.augment) for c in configs)
    jitted = _memo(self._jitted, ("train", shared, augment),
                   lambda: self._group_train_step(shared, augment))
    return lambda state, values, batch, counts: jitted(
        state, values, self.resident["train"], batch, counts)

  def _group_train_step(self, shared: bool, augment: augment_lib.Augment):
    rep = parallel.replicated(self.mesh)
    member_step = functools.partial(
        _member_train_step, train_step=self.steps.member_train, augment=augment,
        mean=self.mean, std=self.std, steps_per_epoch=self.steps_per_epoch, shard=self._shard)
    return jax.jit(jax.vmap(member_step, in_axes=(0, 0, None, None if shared else 0, 0)),
                   in_shardings=(rep, rep, rep, rep, rep), out_shardings=(rep, rep, rep),
                   donate_argnums=(0, 4))

  def epoch_batches(self, orders: Sequence[np.ndarray], start: int = 0,
                    stop: int | None = None, epoch: int = 0) -> Iterator[dict]:
    """One device put of the epoch's order(s), then one (identical) handle per step:
    [S, B] rows for one order, [K, S, B] for one per member."""
    rows = [index_rows(order, self.batch_size) for order in orders]
    idx, mask = rows[0] if len(rows) == 1 else (np.stack([r[0] for r in rows]),
                                                np.stack([r[1] for r in rows]))
    handle = jax.device_put({"index": idx, "mask": mask}, parallel.replicated(self.mesh))
    for _ in range(start, self.steps_per_epoch if stop is None else stop):
      yield handle

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

  def evaluate_group(self, variables, split: str, counts):
    rep = parallel.replicated(self.mesh)
    step = _memo(self._jitted, "group_eval", lambda: jax.jit(
        jax.vmap(self._evaluate, in_axes=(0, None, None, 0)),
        in_shardings=(rep, rep, rep, rep), out_shardings=rep, donate_argnums=(3,)))
    return step(variables, self.resident[split], self._rows(split), counts)

  def predict(self, variables, split: str, counts):
    """evaluate, plus each example's predicted class (int32 [N], the split's order)."""
    rep = parallel.replicated(self.mesh)
    step = _memo(self._jitted, "predict", lambda: jax.jit(
        functools.partial(_eval_split, eval_step=self.steps.predict, mean=self.mean,
                          std=self.std, shard=self._shard),
        in_shardings=(rep, rep, rep, rep), out_shardings=(rep, rep), donate_argnums=(3,)))
    counts, ids = step(variables, self.resident[split], self._rows(split), counts)
    return counts, np.asarray(jax.device_get(ids)).reshape(-1)[:len(self.data.split(split))]

  def init_batch(self) -> dict:
    """A training-shaped batch for model.init."""
    n = self.batch_size
    return {"images": np.zeros((n, *self.data.image_shape), np.float32),
            "labels": np.zeros(n, np.int32), "mask": np.ones(n, bool)}


class StreamFeed:
  """Image splits streamed from their files by grain (see the module docstring and
  jaxreg/data/stream.py); the same interface, order, keys and normalization as
  ImageFeed."""

  TRACED = ImageFeed.TRACED

  def __init__(self, config, data, mesh, steps, normalization=None):
    self.config, self.data, self.mesh, self.steps = config, data, mesh, steps
    self.batch_size = config.train.batch_size
    self.eval_batch_size = config.data.eval_batch_size
    self.steps_per_epoch = -(-len(data.train) // self.batch_size)
    self.num_classes = data.num_classes
    self.workers = int(config.data.stream_workers)
    self.threads = int(config.data.stream_threads)
    self.mean, self.std = mean, std = _mean_std(
        config, normalization, data.image_shape[-1],
        # one pass over the training files (then cached)
        lambda: stats_from_histogram(stream.histogram(
            data.train, self.eval_batch_size, workers=self.workers,
            threads=self.threads, store=cache.Cache(config.data.cache_dir),
            description=data.description)))
    self.augment = augment_lib.Augment.from_config(config.data.augment)
    self._shard = parallel.data_sharded(mesh)
    self._train = self._jit_train(self.augment)
    self._evaluate = functools.partial(_eval_host_batch, eval_step=steps.eval, mean=mean,
                                       std=std, shard=self._shard)
    rep = parallel.replicated(mesh)
    self._eval = jax.jit(self._evaluate, in_shardings=(rep, self._shard, rep),
                         out_shardings=rep, donate_argnums=(2,))
    self._jitted = {}

  # ---------------------------------------------------------------- training steps

  def train_step(self, state, batch, counts):
    return self._train(state, batch, counts)

  def train_step_for(self, config):
    augment = augment_lib.Augment.from_config(config.data.augment)
    if augment == self.augment:
      return self.train_step
    return _memo(self._jitted, ("solo", augment), lambda: self._jit_train(augment))

  def _jit_train(self, augment):
    rep = parallel.replicated(self.mesh)
    return jax.jit(
        functools.partial(_stream_train_step, train_step=self.steps.train,
                          augment=augment, mean=self.mean, std=self.std,
                          shard=self._shard),
        in_shardings=(rep, self._shard, rep), out_shardings=(rep, rep, rep),
        donate_argnums=(0, 2))

  def member_values(self, config) -> dict:
    return {"augment": augment_lib.member_values(
        augment_lib.Augment.from_config(config.data.augment))}

  def group_train_step(self, shared: bool, configs):
    augment = augment_lib.Augment.widest(
        augment_lib.Augment.from_config(c.data.augment) for c in configs)
    return _memo(self._jitted, ("train", shared, augment),
                 lambda: self._group_train_step(shared, augment))

  def _group_train_step(self, shared: bool, augment):
    rep = parallel.replicated(self.mesh)
    member_step = functools.partial(
        _stream_member_step, train_step=self.steps.member_train, augment=augment,
        mean=self.mean, std=self.std, shard=self._shard)
    return jax.jit(jax.vmap(member_step, in_axes=(0, 0, None if shared else 0, 0)),
                   in_shardings=(rep, rep, self._shard if shared else
                                 _member_axis(self.mesh), rep),
                   out_shardings=(rep, rep, rep), donate_argnums=(0, 3))

  # -------------------------------------------------------------------- batches

  def _host_batches(self, split, index, mask, start=0, stop=None, crop=None):
    return stream.loader(split, index, mask, start, stop, workers=self.workers,
                         threads=self.threads, process_index=jax.process_index(),
                         process_count=jax.process_count(), crop=crop)

  def _put(self, local: dict, sharding) -> dict:
    """This process's columns of a batch -> the global batch on the mesh (each process
    holds the columns of its own devices: jax.devices() lists them process by
    process)."""
    if jax.process_count() == 1:
      return jax.device_put(local, sharding)
    return {k: jax.make_array_from_process_local_data(sharding, v)
            for k, v in local.items()}

  def epoch_batches(self, orders: Sequence[np.ndarray], start: int = 0,
                    stop: int | None = None, epoch: int = 0) -> Iterator[dict]:
    """Device batches `start` to `stop` of the epoch in `orders` ([B, ...] for one
    order, [K, B, ...] for one per member): the rows ImageFeed gathers, read from the
    files, two batches ahead of the caller."""
    streams = []
    min_scale = float(self.config.data.get("stream_crop_min_scale", 1.0))
    for order in orders:
      index, mask = index_rows(order, self.batch_size)
      crop = (min_scale, stream.order_seed(order), epoch) if min_scale < 1 else None
      streams.append(self._host_batches(self.data.train, index, mask, start, stop,
                                        crop))
    if len(streams) == 1:
      batches = (self._put(b, self._shard) for b in streams[0])
    else:
      axis = _member_axis(self.mesh)
      batches = (self._put({k: np.stack([p[k] for p in parts]) for k in parts[0]}, axis)
                 for parts in zip(*streams))
    return _ahead(batches, 2)

  def _eval_batches(self, split: str):
    part = self.data.split(split)
    index, mask = index_rows(np.arange(len(part)), self.eval_batch_size)
    return _ahead((self._put(b, self._shard)
                   for b in self._host_batches(part, index, mask)), 2)

  # ------------------------------------------------------------------ evaluation

  def evaluate(self, variables, split: str, counts):
    for batch in self._eval_batches(split):
      counts = self._eval(variables, batch, counts)
    return counts

  def evaluate_group(self, variables, split: str, counts):
    rep = parallel.replicated(self.mesh)
    step = _memo(self._jitted, "group_eval", lambda: jax.jit(
        jax.vmap(self._evaluate, in_axes=(0, None, 0)),
        in_shardings=(rep, self._shard, rep), out_shardings=rep, donate_argnums=(2,)))
    for batch in self._eval_batches(split):
      counts = step(variables, batch, counts)
    return counts

  def predict(self, variables, split: str, counts):
    rep = parallel.replicated(self.mesh)
    step = _memo(self._jitted, "predict", lambda: jax.jit(
        functools.partial(_eval_host_batch, eval_step=self.steps.predict, mean=self.mean,
                          std=self.std, shard=self._shard),
        in_shardings=(rep, self._shard, rep), out_shardings=(rep, rep),
        donate_argnums=(2,)))
    ids = []
    for batch in self._eval_batches(split):
      counts, p = step(variables, batch, counts)
      ids.append(p)
    n = len(self.data.split(split))
    return counts, np.concatenate([np.asarray(jax.device_get(p)) for p in ids])[:n]

  def init_batch(self) -> dict:
    n = self.batch_size
    return {"images": np.zeros((n, *self.data.image_shape), np.float32),
            "labels": np.zeros(n, np.int32), "mask": np.ones(n, bool)}


def _ahead(iterable, n: int):
  """Yields `iterable`'s items, keeping `n` more started: device puts are asynchronous,
  so the next batches travel to the devices while the caller's step runs."""
  queue = collections.deque()
  for item in iterable:
    queue.append(item)
    if len(queue) > n:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def _stream_train_step(state, batch, counts, *, train_step, augment, mean, std, shard):
  return train_step(state, augmented_batch(state, batch, augment=augment, mean=mean,
                                           std=std, shard=shard), counts)


def _stream_member_step(state, values, batch, counts, *, train_step, augment, mean, std,
                        shard):
  batch = augmented_batch(state, batch, augment=augment, mean=mean, std=std, shard=shard,
                          values=values["augment"])
  return train_step(state, values["model"], batch, counts)


def _eval_host_batch(variables, batch, counts, *, eval_step, mean, std, shard):
  batch = jax.lax.with_sharding_constraint(
      {"images": augment_lib.eval_images(batch["images"], mean, std),
       "labels": batch["labels"], "mask": batch["mask"]}, shard)
  return eval_step(variables, batch, counts)


def _train_batch(state, data, rows, *, augment, mean, std, steps_per_epoch, shard,
                 values=None):
  """The step's batch: row `state.step % steps_per_epoch` of the epoch's rows, gathered
  and augmented (augmented_batch)."""
  row = state.step % steps_per_epoch
  index, mask = rows["index"][row], rows["mask"][row]
  return augmented_batch(state, {"images": data["images"][index],
                                 "labels": data["labels"][index], "mask": mask},
                         augment=augment, mean=mean, std=std, shard=shard, values=values)


def augmented_batch(state, batch, *, augment, mean, std, shard, values=None):
  """A uint8 batch augmented with the key of (rng, step) and normalized, split along
  'data': the one place both image feeds draw their augmentation. `values`: a member's
  traced strengths."""
  key = jax.random.fold_in(
      jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step), AUGMENT_STREAM)
  images = augment_lib.train_images(key, batch["images"], augment, mean, std, values)
  return jax.lax.with_sharding_constraint(
      {"images": images, "labels": batch["labels"], "mask": batch["mask"]}, shard)


def _train_step(state, data, rows, counts, *, train_step, augment, mean, std,
                steps_per_epoch, shard):
  batch = _train_batch(state, data, rows, augment=augment, mean=mean, std=std,
                       steps_per_epoch=steps_per_epoch, shard=shard)
  return train_step(state, batch, counts)


def _member_train_step(state, values, data, rows, counts, *, train_step, augment, mean,
                       std, steps_per_epoch, shard):
  batch = _train_batch(state, data, rows, augment=augment, mean=mean, std=std,
                       steps_per_epoch=steps_per_epoch, shard=shard,
                       values=values["augment"])
  return train_step(state, values["model"], batch, counts)


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

"""Image sets larger than memory: splits left in storage (image files, a TFDS split's
ArrayRecord records), read on demand and streamed by grain.

`data.stream` decides (`chosen`): `never` keeps the splits resident (images.prepare),
`always` streams them, `auto` streams when the decoded splits (train + test, uint8 at
data.image_size) exceed `data.resident_limit_mb` (0: half of the first device's memory,
or half of the host's RAM where the device reports none, as a CPU does).

A source's split can stream when its RawSplit holds `files` (image folders) or
raw.StoredImages (tfds_source.SplitImages: a `tfds:` image set prepared as ArrayRecord);
`chosen` needs only the number of examples and the first one's decoded shape. A
streamed dataset (`prepare` -> StreamedImageData) holds, per split, a StreamedSplit:
the stored examples and labels that images.prepare would hold as pixels, the same
per-class subset and the same validation hold-out (images.split_indices), so both paths
see the same examples under the same indices. `loader` turns rows of indices (the
feed's [steps, batch] rows of an epoch order, jaxreg's own permutation of (seed,
epoch): grain's shuffle is not used) into host batches:

  grain.MapDataset.source(rows start:stop, this process's columns; element = a batch)
    .to_iter_dataset(threads)
    .mp_prefetch(data.stream_workers)  # worker processes decode + resize

Element i of the dataset is a pure function of the rows, so a resumed run starts at its
step's row and needs no loader state (grain's own iterator state depends on the worker
and process counts). Under jax.distributed each process reads only its own columns of
every row (`columns`).

The generated set, and TFDS sets prepared in a format without random access (tfrecord),
are decoded into memory by their readers and never stream.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
from collections.abc import Callable

import numpy as np

from jaxreg.data import cache, dataset, images
from jaxreg.data.raw import RawData, RawSplit, StoredImages

MIB = 1 << 20
MODES = ("auto", "always", "never")  # data.stream (the schema's STREAM_MODES)


@dataclasses.dataclass(frozen=True)
class StreamedSplit:
  """A split left in storage (image files, or a TFDS split's ArrayRecord records):
  example i is decoded and resized when read."""
  examples: StoredImages  # one per example, decoded as stored when read
  labels: np.ndarray      # int32 [N]
  shape: tuple            # (H, W, C) of every example after the resize

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> StreamedSplit:
    return StreamedSplit(self.examples.take(index), self.labels[index], self.shape)

  def load(self, i: int) -> np.ndarray:
    """Example i: uint8 [H, W, C], decoded and resized as images.prepare does."""
    return fit(self.examples[i], self.shape, self.examples.where(i))

  def load_cropped(self, i: int, min_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Example i decoded, a crop_box of it at its full resolution, resized to shape."""
    where = self.examples.where(i)
    a = self.examples[i]
    a = images.to_channels(a[..., None] if a.ndim == 2 else a, self.shape[-1], where)
    top, left, h, w = crop_box(a.shape[0], a.shape[1], min_scale, rng)
    # to the set's (H, W), which need not be square under data.image_size=0
    return fit(images.resize(a[top:top + h, left:left + w], self.shape[0],
                             self.shape[1]), self.shape, where)

  @property
  def nbytes(self) -> int:
    return len(self) * int(np.prod(self.shape))

  @property
  def images(self) -> LazyImages:
    """The pixels as a sequence decoded slice by slice (what jaxreg.inference reads)."""
    return LazyImages(self)


class LazyImages:
  """uint8 [N, H, W, C] of a StreamedSplit, decoded only for the slice asked for."""

  def __init__(self, split: StreamedSplit):
    self.split = split

  def __len__(self) -> int:
    return len(self.split)

  def __getitem__(self, index) -> np.ndarray:
    rows = range(len(self))[index]
    if isinstance(rows, int):
      return self.split.load(rows)
    return np.stack([self.split.load(i) for i in rows]) if len(rows) else \
        np.zeros((0, *self.split.shape), np.uint8)


class ImageFiles(StoredImages):
  """Image files (a folder source's RawSplit.files), decoded when read."""

  def __init__(self, files: tuple):
    self.files = files  # str paths

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, i: int) -> np.ndarray:
    return images.decode(self.files[i])

  def take(self, index: np.ndarray) -> ImageFiles:
    return ImageFiles(tuple(self.files[i] for i in index))

  @property
  def key(self) -> str:
    return "\n".join(self.files)

  def where(self, i: int) -> str:
    return self.files[i]


def fit(a: np.ndarray, shape: tuple, where: str) -> np.ndarray:
  """A decoded image -> uint8 `shape`, as images.stack resizes it (only when not that
  size)."""
  if a.ndim == 2:
    a = a[..., None]
  a = images.to_channels(a, shape[-1], where)
  if a.shape[:2] != shape[:2]:
    a = images.resize(a, shape[0])
  if a.shape != tuple(shape):
    raise ValueError(f"{where}: decoded to {a.shape}, the first training image to "
                     f"{tuple(shape)}; set data.image_size (every image must have one "
                     "shape)")
  return a


RATIOS = (3 / 4, 4 / 3)  # a random resized crop's aspect ratios (augment.py's too)


def crop_box(height: int, width: int, min_scale: float,
             rng: np.random.Generator) -> tuple[int, int, int, int]:
  """(top, left, height, width) of a random resized crop: area fraction uniform in
  [min_scale, 1], aspect ratio log-uniform in RATIOS; after 10 misses, the centre crop
  at the nearest allowed ratio (torchvision's RandomResizedCrop.get_params, in numpy:
  the loader's workers run no JAX)."""
  area = height * width
  for _ in range(10):
    target = area * rng.uniform(min_scale, 1.0)
    ratio = np.exp(rng.uniform(np.log(RATIOS[0]), np.log(RATIOS[1])))
    w = int(round(np.sqrt(target * ratio)))
    h = int(round(np.sqrt(target / ratio)))
    if 0 < w <= width and 0 < h <= height:
      return (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)),
              h, w)
  ratio = width / height
  if ratio < RATIOS[0]:
    w, h = width, min(height, int(round(width / RATIOS[0])))
  elif ratio > RATIOS[1]:
    h, w = height, min(width, int(round(height * RATIOS[1])))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def order_seed(order: np.ndarray) -> int:
  """A seed from an epoch's order (a pure function of (seed, epoch)): the host crops'
  draws, the same for a run alone and for it in a group."""
  digest = hashlib.sha256(np.ascontiguousarray(order, np.int64).tobytes()).digest()
  return int.from_bytes(digest[:8], "little")


def stored(split: RawSplit) -> StoredImages | None:
  """A source's split as examples left in storage; None when its reader holds them in
  memory (the generated set, TFDS sets prepared in a format without random access)."""
  if split.files is not None:
    return ImageFiles(tuple(str(p) for p in split.files))
  return split.images if isinstance(split.images, StoredImages) else None


@dataclasses.dataclass(frozen=True)
class StreamedImageData(dataset.Splits):
  train: StreamedSplit
  val: StreamedSplit
  test: StreamedSplit
  class_names: list[str]
  description: str = ""

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.shape)

  def fingerprint(self) -> str:
    """sha256 over the source description (a folder: every file's content hash; TFDS:
    its prepared files and labels, tfds_source.load), each split's examples (their key:
    the files, or the records) and labels, and the class names."""
    h = hashlib.sha256(self.description.encode())
    for name in ("train", "val", "test"):
      s = self.split(name)
      h.update(s.examples.key.encode())
      h.update(np.ascontiguousarray(s.labels).tobytes())
    h.update("\n".join(self.class_names).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------ the choice


def resident_limit_bytes(data_cfg) -> int:
  """data.resident_limit_mb in bytes; 0: half of the first local device's memory, or of
  the host's RAM where memory_stats() is None (CPU)."""
  mb = int(data_cfg.get("resident_limit_mb", 0) or 0)
  if mb:
    return mb * MIB
  import jax  # noqa: PLC0415 - only the automatic choice asks the device
  stats = jax.local_devices()[0].memory_stats()
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]) // 2
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def fitted_shape(first: np.ndarray, size: int) -> tuple[int, int, int]:
  """(H, W, C) of a decoded image resized to `size` (0: as it is)."""
  a = first[..., None] if first.ndim == 2 else first
  if size and a.shape[:2] != (size, size):
    a = images.resize(a, size)
  return tuple(a.shape)


def mode(data_cfg) -> str:
  """data.stream, checked."""
  value = str(data_cfg.get("stream", "auto"))
  if value not in MODES:
    raise ValueError(f"data.stream={value!r} is not one of: {', '.join(MODES)}")
  return value


def over_limit(examples: int, first: np.ndarray, data_cfg) -> bool:
  """data.stream=auto: whether `examples` images decoded like `first` (at
  data.image_size) exceed the resident limit."""
  shape = fitted_shape(first, int(data_cfg.get("image_size", 0) or 0))
  return examples * int(np.prod(shape)) > resident_limit_bytes(data_cfg)


def chosen(raw: RawData, data_cfg) -> bool:
  """Whether `raw` (a source's RawData) streams under data.stream."""
  train, test = stored(raw.train), stored(raw.test)
  return wanted(data_cfg, train is not None and test is not None,
                len(raw.train) + len(raw.test), lambda: train[0],
                f"data.stream=always: data.source={data_cfg.source!r} is read into "
                "memory by its reader; only image_folder and tfds: image sets stream "
                "(use data.stream=auto or never)")


def wanted(data_cfg, streamable: bool, examples: int, first: Callable[[], np.ndarray],
           refusal: str) -> bool:
  """data.stream's rule, from the number of examples and the first one (decoded only
  for `auto`), never all the pixels: `never` no, `always` yes (`refusal`, a ValueError,
  where the set is not `streamable`), `auto` when over the resident limit or when host
  crops are asked (data.stream_crop_min_scale < 1: only a streamed run has the files;
  a run trained with them then also evaluates on any machine)."""
  asked = mode(data_cfg)
  if asked == "never":
    return False
  if not streamable:
    if asked == "always":
      raise ValueError(refusal)
    return False
  return asked == "always" or float(data_cfg.get("stream_crop_min_scale", 1.0)) < 1 or \
      over_limit(examples, first(), data_cfg)


def prepare(raw: RawData, data_cfg) -> StreamedImageData:
  """RawData of stored images -> StreamedImageData: images.prepare's splits, left in
  storage."""
  examples = stored(raw.train)
  shape = fitted_shape(examples[0], int(data_cfg.get("image_size", 0) or 0))
  train = StreamedSplit(examples, raw.train.labels, shape)
  test = StreamedSplit(stored(raw.test), raw.test.labels, shape)
  keep, held = images.split_indices(train.labels, data_cfg)
  return StreamedImageData(train=train.take(keep), val=train.take(held), test=test,
                           class_names=list(raw.class_names),
                           description=raw.description)


# ---------------------------------------------------------------------- the loader


def columns(batch_size: int, process_index: int, process_count: int) -> slice:
  """This process's columns of a [steps, batch] row: its share of the global batch."""
  if batch_size % process_count:
    raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} "
                     "processes")
  n = batch_size // process_count
  return slice(process_index * n, (process_index + 1) * n)


class _Rows:
  """grain's random-access source: element i = the batch of row i, decoded.

  A whole row per element rather than one example: grain's per-element machinery
  (a thread hand-off and a tree-stacking batch per example) added 10-30% to decoding a
  small JPEG (40x40 files, one thread, docs/images.md), and the train step only ever
  asks for whole rows. Threads and worker processes then work
  on different rows."""

  def __init__(self, split: StreamedSplit, index: np.ndarray, mask: np.ndarray,
               crop: tuple | None = None, first: tuple = (0, 0)):
    self.split, self.index, self.mask = split, index, mask
    # (min_scale, seed, epoch) of host crops; (first row, first column) of the rows
    self.crop, self.first = crop, first

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int) -> dict:
    row = self.index[i]
    if self.crop is None:
      pixels = [self.split.load(int(j)) for j in row]
    else:  # each example's draw: a function of the epoch and its place in it only
      min_scale, seed, epoch = self.crop
      r = self.first[0] + i
      pixels = [self.split.load_cropped(int(j), min_scale, np.random.default_rng(
          [seed, epoch, r, self.first[1] + c])) for c, j in enumerate(row)]
    return {"images": np.stack(pixels), "labels": self.split.labels[row],
            "mask": self.mask[i]}


def loader(split: StreamedSplit, index: np.ndarray, mask: np.ndarray, start: int = 0,
           stop: int | None = None, *, workers: int = 0, threads: int = 4,
           process_index: int = 0, process_count: int = 1, crop: tuple | None = None):
  """Host batches of rows `start` to `stop` of `index` / `mask` ([steps, batch], the
  global batch): this process's columns of each row, as {'images' uint8 [b, H, W, C],
  'labels' int32 [b], 'mask' bool [b]}, in row order. `crop`: (min_scale, seed, epoch)
  of host crops (data.stream_crop_min_scale), drawn per (seed, epoch, row, column)."""
  import grain  # noqa: PLC0415 - only streamed runs need it

  cols = columns(index.shape[1], process_index, process_count)
  ds = grain.MapDataset.source(_Rows(split, index[start:stop, cols],
                                     mask[start:stop, cols], crop,
                                     (start, cols.start)))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                            prefetch_buffer_size=2 * threads))
  if workers:
    _parse_flags()
    it = _closed_after(it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=2)).map(_own_memory))
  return it


def _closed_after(ds):
  """Iterates `ds` (worker processes), then closes its iterator and collects: grain's
  iterators sit in reference cycles that hold the shared memory of their last batches,
  which Python otherwise warned about as leaked at exit (grain recommends closing an
  mp_prefetch iterator by hand)."""
  it = iter(ds)
  try:
    yield from it
  finally:
    it.close()
    del it
    gc.collect()


def _own_memory(batch: dict) -> dict:
  """A worker's batch copied out of its shared memory (grain hands over arrays backed
  by it): put on a CPU device as they are, the arrays were aliased, their segments
  could not be closed when grain deleted them, and Python warned of dozens leaked at
  exit. The copy is one memcpy of a batch the workers took far longer to decode."""
  return {k: np.array(v) for k, v in batch.items()}


def _parse_flags() -> None:
  """grain 0.2.18 reads an absl flag when it starts workers and fails where flags were
  never parsed (a library call, pytest; google/grain#1355, fixed after 0.2.18): parse
  them with their defaults when no absl.app did."""
  from absl import flags  # noqa: PLC0415
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["jaxreg"], known_only=True)


# --------------------------------------------------------------- channel statistics


def histogram(split: StreamedSplit, batch_size: int, *, workers: int = 0,
              threads: int = 4, store: cache.Cache | None = None,
              description: str = "") -> np.ndarray:
  """int64 [C, 256]: how often each uint8 value occurs in each channel of the split
  (feeds.channel_stats_from_histogram turns it into the normalization), one pass of
  the loader, cached in data.cache_dir under the split's examples (their cache_key)."""
  key = cache.key(description, {"pipeline": "image_histogram",
                                "version": images.DECODE_VERSION,
                                "shape": list(split.shape),
                                "files": hashlib.sha256(
                                    split.examples.cache_key.encode()).hexdigest()})
  hit = store.load(key) if store is not None else None
  if hit is not None:
    return hit[0]["histogram"]
  order = np.arange(len(split))
  steps = -(-len(order) // batch_size)
  pad = steps * batch_size - len(order)
  index = np.concatenate([order, np.zeros(pad, int)]).reshape(steps, batch_size)
  mask = (np.arange(steps * batch_size) < len(order)).reshape(steps, batch_size)
  hist = np.zeros((split.shape[-1], 256), np.int64)
  for batch in loader(split, index, mask, workers=workers, threads=threads):
    hist += counts_per_channel(batch["images"][batch["mask"]])
  if store is not None:
    store.save(key, {"histogram": hist}, {"description": description,
                                          "shape": list(split.shape)})
  return hist


def counts_per_channel(images_uint8: np.ndarray) -> np.ndarray:
  """uint8 [..., C] -> int64 [C, 256] value counts per channel."""
  c = images_uint8.shape[-1]
  flat = images_uint8.reshape(-1, c)
  return np.stack([np.bincount(flat[:, k], minlength=256) for k in range(c)])


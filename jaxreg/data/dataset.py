"""Prepared datasets (the Splits every one offers), text as padded arrays, the split
rules, and fixed-shape text batches."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class TextSplit:
  tokens: np.ndarray   # int32 [N, T], PAD_ID past each length
  lengths: np.ndarray  # int32 [N]
  labels: np.ndarray   # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)

  @classmethod
  def from_sequences(cls, seqs: Sequence[Sequence[int]], labels,
                     max_length: int) -> TextSplit:
    """Pads (and truncates to max_length) a list of token-id sequences."""
    lengths = np.array([min(len(s), max_length) for s in seqs], np.int32)
    tokens = np.full((len(seqs), max(int(lengths.max(initial=1)), 1)), PAD_ID,
                     np.int32)
    for i, (seq, n) in enumerate(zip(seqs, lengths)):
      tokens[i, :n] = seq[:n]
    return cls(tokens, lengths, np.asarray(labels, np.int32))

  def take(self, index: np.ndarray) -> TextSplit:
    return TextSplit(self.tokens[index], self.lengths[index], self.labels[index])


class Splits:
  """What every prepared dataset (TextData, images.ImageData) offers the training loop:
  `.train` / `.val` / `.test`, `split(name)`, `num_classes`, `fingerprint()`."""
  ARRAYS: tuple[str, ...] = ()  # the arrays of each split that fingerprint() hashes

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def split(self, name: str):
    if name not in ("train", "val", "test"):
      raise ValueError(f"split={name!r} is not one of: train, val, test")
    return getattr(self, name)

  def fingerprint_names(self) -> list[str]:
    return list(self.class_names)

  def fingerprint(self) -> str:
    """sha256 over every array and name: two runs saw the same data iff equal."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
      s = self.split(split)
      for field in self.ARRAYS:
        h.update(np.ascontiguousarray(getattr(s, field)).tobytes())
    h.update("\n".join(self.fingerprint_names()).encode())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class TextData(Splits):
  train: TextSplit
  val: TextSplit
  test: TextSplit
  class_names: list[str]
  vocab: list[str]
  # Tokens per text before truncation, per split (text.length_stats; None for the
  # built-in set and cache entries from before issue 16): the run's data log lines.
  length_stats: dict | None = dataclasses.field(default=None, compare=False)

  ARRAYS = ("tokens", "lengths", "labels")

  def fingerprint_names(self) -> list[str]:
    return self.class_names + self.vocab


def stratified_split(labels: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices (keep, held_out): `fraction` of each class held out, by `seed` alone."""
  rng = np.random.default_rng(seed)
  held = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    n = int(round(fraction * len(idx)))
    held.append(rng.permutation(idx)[:n])
  held_out = np.sort(np.concatenate(held)) if held else np.array([], np.int64)
  keep = np.setdiff1d(np.arange(len(labels)), held_out)
  return keep, held_out


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
  """`folds` disjoint index arrays covering `labels`, each class split evenly.

  Each class's examples are shuffled by `seed` and dealt round-robin, the deal
  continuing where the previous class stopped, so fold sizes differ by at most one
  overall and each class's share by at most one per fold (sklearn's StratifiedKFold
  does the same; it is not a dependency, and these few lines keep the split ours).
  """
  rng = np.random.default_rng(seed)
  assign = np.empty(len(labels), np.int64)
  start = 0
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    assign[idx] = (start + np.arange(len(idx))) % folds
    start += len(idx)
  return [np.flatnonzero(assign == f) for f in range(folds)]


def validation_split(labels: np.ndarray, data_cfg) -> tuple[np.ndarray, np.ndarray]:
  """Indices (train, val) of the training examples, as the config asks: fold
  `data.fold` of `data.folds` stratified folds, or else `data.val_fraction` of each
  class; either way by `data.split_seed` alone."""
  folds = int(data_cfg.get("folds", 0) or 0)
  if folds >= 2:
    held = stratified_folds(labels, folds, data_cfg.split_seed)[int(data_cfg.fold)]
    return np.setdiff1d(np.arange(len(labels)), held), held
  return stratified_split(labels, data_cfg.val_fraction, data_cfg.split_seed)


def parse_buckets(spec: str, max_length: int) -> tuple[int, ...] | None:
  """`data.buckets` -> increasing lengths, those below max_length plus max_length.

  '16,32,64' with max_length 40 -> (16, 32, 40). An empty spec -> None: no bucketing
  (every batch has its split's full width). The config schema has checked the spec.
  """
  spec = str(spec).strip()
  if not spec:
    return None
  return tuple(v for v in map(int, spec.split(",")) if v < max_length) + (max_length,)


def batches(split: TextSplit, batch_size: int, order: np.ndarray | None = None,
            buckets: Sequence[int] | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-shape batches; the last is padded and masked so each example counts once.

  Without `buckets` every batch has the split's width. With `buckets` (increasing
  lengths, see `parse_buckets`) each batch is padded or cut to the smallest bucket that
  holds its longest sequence, so a jitted step compiles at most len(buckets) shapes.
  """
  order = np.arange(len(split)) if order is None else order
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    n = len(index)
    pad = batch_size - n
    if pad:  # repeat the batch's first example as filler; mask=False keeps it out
      index = np.concatenate([index, np.full(pad, index[0], index.dtype)])
    part = split.take(index)
    tokens = part.tokens
    if buckets:
      longest = int(part.lengths.max(initial=1))
      width = next((b for b in buckets if b >= longest), None)
      if width is None:
        raise ValueError(f"a sequence of length {longest} is longer than the last "
                         f"bucket {buckets[-1]} (data.buckets / data.max_length)")
      if width <= tokens.shape[1]:
        tokens = tokens[:, :width]  # only padding is cut: every length <= width
      else:
        tokens = np.pad(tokens, ((0, 0), (0, width - tokens.shape[1])),
                        constant_values=PAD_ID)
    yield {"tokens": tokens, "lengths": part.lengths, "labels": part.labels,
           "mask": np.arange(batch_size) < n}


def length_sorted(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                  window: int, rng: np.random.Generator) -> np.ndarray:
  """`order` regrouped so each batch holds sequences of similar length.

  Within each window of `window` batches of the (already shuffled) order, examples are
  sorted by length; the full batches are then shuffled by `rng`, and a partial last
  batch stays last (batches() pads and masks only the final one). With buckets, short
  batches then run at short widths instead of the longest of a random mix.
  """
  full = len(order) - len(order) % batch_size
  chunks = []
  span = window * batch_size
  for start in range(0, full, span):
    part = order[start:min(start + span, full)]
    part = part[np.argsort(lengths[part], kind="stable")]
    chunks.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
  chunks = [chunks[i] for i in rng.permutation(len(chunks))]
  return np.concatenate(chunks + [order[full:]]) if chunks else order


def num_batches(n: int, batch_size: int) -> int:
  return -(-n // batch_size)

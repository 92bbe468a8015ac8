"""In-memory text datasets as padded arrays, splits and fixed-shape batches."""

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


@dataclasses.dataclass(frozen=True)
class TextData:
  train: TextSplit
  val: TextSplit
  test: TextSplit
  class_names: list[str]
  vocab: list[str]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def split(self, name: str) -> TextSplit:
    if name not in ("train", "val", "test"):
      raise ValueError(f"split={name!r} is not one of: train, val, test")
    return getattr(self, name)

  def fingerprint(self) -> str:
    """sha256 over every array and name: two runs saw the same data iff equal."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
      s = self.split(name)
      for a in (s.tokens, s.lengths, s.labels):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update("\n".join(self.class_names + self.vocab).encode())
    return h.hexdigest()


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


def batches(split: TextSplit, batch_size: int, order: np.ndarray | None = None
            ) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-shape batches; the last is padded and masked so each example counts once."""
  order = np.arange(len(split)) if order is None else order
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    n = len(index)
    pad = batch_size - n
    if pad:  # repeat example 0 as filler; mask=False keeps it out of every sum
      index = np.concatenate([index, np.zeros(pad, index.dtype)])
    part = split.take(index)
    yield {"tokens": part.tokens, "lengths": part.lengths, "labels": part.labels,
           "mask": np.arange(batch_size) < n}


def num_batches(n: int, batch_size: int) -> int:
  return -(-n // batch_size)

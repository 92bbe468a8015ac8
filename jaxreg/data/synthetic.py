"""A generated text classification set whose classes differ in how fragile they are.

Each example is a sequence of filler words with class cues inserted at random positions.
The classes are built so that the effect of regularization has a known cause:

- `freq_*` (frequent): one cue word anywhere identifies the class. Easy and common.
- `rare`: also one cue word, but only `rare_fraction` of the training examples.
- `order_xy` / `order_yx`: both `x` and `y` occur; only their ORDER tells the class.
  Other classes may contain one of them (never both), so presence alone is useless.
- `conj_pq`: needs BOTH `p` and `q`; other classes contain at most one of them.

Test examples are balanced across classes; training examples are not. Strong weight
decay removes the capacity the order and rare classes need first, while the frequent
single-cue classes keep their accuracy. Everything is drawn from `generator_seed`, so
the dataset is the same on every machine.
"""

from __future__ import annotations

import numpy as np

from jaxreg.data.dataset import TextSplit

FREQUENT = ("freq_a", "freq_b", "freq_c", "freq_d")
CLASS_NAMES = FREQUENT + ("rare", "order_xy", "order_yx", "conj_pq")
_CUES = {"freq_a": "alpha", "freq_b": "bravo", "freq_c": "charlie",
         "freq_d": "delta", "rare": "echo"}
_SPECIAL = ("<pad>", "<unk>")
NUM_FILLER = 200
MIN_LEN, MAX_LEN = 6, 24


def vocabulary() -> list[str]:
  cue_words = list(_CUES.values()) + ["x", "y", "p", "q"]
  return list(_SPECIAL) + cue_words + [f"w{i}" for i in range(NUM_FILLER)]


def _train_proportions(rare_fraction: float) -> np.ndarray:
  # order and conjunction classes get 10% each; the frequent ones share the rest.
  other = np.array([rare_fraction, 0.10, 0.10, 0.10])
  frequent = (1.0 - other.sum()) / len(FREQUENT)
  return np.concatenate([np.full(len(FREQUENT), frequent), other])


def _example(rng: np.random.Generator, label: int, ids: dict) -> list[int]:
  name = CLASS_NAMES[label]
  length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
  # Zipf-like filler frequencies, like natural text.
  weights = 1.0 / np.arange(1, NUM_FILLER + 1)
  filler = rng.choice(NUM_FILLER, size=length, p=weights / weights.sum())
  seq = [ids[f"w{i}"] for i in filler]
  if name in _CUES:
    cues = [ids[_CUES[name]]]
  elif name.startswith("order"):
    first, second = ("x", "y") if name == "order_xy" else ("y", "x")
    cues = [ids[first], ids[second]]
  else:
    cues = [ids["p"], ids["q"]]
    cues = list(rng.permutation(cues))  # the conjunction has no order
  cues_at = sorted(rng.choice(length + 1, size=len(cues), replace=False))
  for offset, (pos, cue) in enumerate(zip(cues_at, cues)):
    seq.insert(pos + offset, cue)  # keeps the cues' order
  # Half the examples get a distractor: one half of a pair that is not this class's.
  if rng.random() < 0.5:
    pool = ([] if name.startswith("order") else ["x", "y"]) + (
        [] if name == "conj_pq" else ["p", "q"])
    seq.insert(int(rng.integers(0, len(seq) + 1)), ids[str(rng.choice(pool))])
  return seq


def _split(rng, labels: np.ndarray, ids: dict, max_length: int) -> TextSplit:
  seqs = [_example(rng, int(label), ids) for label in labels]
  return TextSplit.from_sequences(seqs, labels, max_length)


def generate(train_size: int = 6000, test_per_class: int = 200,
             rare_fraction: float = 0.03, seed: int = 1234,
             max_length: int = 64) -> tuple[TextSplit, TextSplit, list[str], list[str]]:
  """Returns (train, test, class_names, vocabulary); deterministic in its arguments."""
  if not 0 < rare_fraction < 0.5:
    raise ValueError(
        f"data.synthetic.rare_fraction={rare_fraction!r} must be in (0, 0.5)")
  vocab = vocabulary()
  ids = {word: i for i, word in enumerate(vocab)}
  rng = np.random.default_rng(seed)
  num_classes = len(CLASS_NAMES)
  train_labels = rng.choice(num_classes, size=train_size,
                            p=_train_proportions(rare_fraction))
  test_labels = np.repeat(np.arange(num_classes), test_per_class)
  train = _split(rng, train_labels, ids, max_length)
  test = _split(rng, test_labels, ids, max_length)
  return train, test, list(CLASS_NAMES), vocab

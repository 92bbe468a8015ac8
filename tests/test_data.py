import numpy as np
import pytest

from jaxreg.data import dataset, sources, synthetic
from tests.conftest import tiny_config


def test_synthetic_is_deterministic():
  a = synthetic.generate(train_size=300, test_per_class=5, seed=7)
  b = synthetic.generate(train_size=300, test_per_class=5, seed=7)
  c = synthetic.generate(train_size=300, test_per_class=5, seed=8)
  np.testing.assert_array_equal(a[0].tokens, b[0].tokens)
  np.testing.assert_array_equal(a[1].labels, b[1].labels)
  assert not np.array_equal(a[0].tokens, c[0].tokens)


def test_synthetic_classes_are_built_as_documented():
  train, test, names, vocab = synthetic.generate(train_size=4000, test_per_class=50)
  ids = {w: i for i, w in enumerate(vocab)}
  # Test is balanced; train has a rare class near its fraction.
  assert np.bincount(test.labels).tolist() == [50] * len(names)
  rare = np.mean(train.labels == names.index("rare"))
  assert 0.02 < rare < 0.04
  for split in (train, test):
    for tokens, n, label in zip(split.tokens, split.lengths, split.labels):
      seq = list(tokens[:n])
      name = names[label]
      has = {w: ids[w] in seq for w in ("x", "y", "p", "q")}
      if name.startswith("order"):
        first, second = ("x", "y") if name == "order_xy" else ("y", "x")
        assert seq.index(ids[first]) < seq.index(ids[second])
      else:
        assert not (has["x"] and has["y"])  # only order classes have both
      if name == "conj_pq":
        assert has["p"] and has["q"]
      else:
        assert not (has["p"] and has["q"])
      cue_words = {"alpha", "bravo", "charlie", "delta", "echo"}
      cues = [vocab[t] for t in seq if vocab[t] in cue_words]
      expected = {"freq_a": ["alpha"], "freq_b": ["bravo"], "freq_c": ["charlie"],
                  "freq_d": ["delta"], "rare": ["echo"]}.get(name, [])
      assert cues == expected


def test_val_split_is_stratified_and_fixed_by_split_seed_not_seed():
  base = sources.load(tiny_config().data)
  other_seed = tiny_config(seed=5)
  same = sources.load(other_seed.data)
  np.testing.assert_array_equal(base.val.tokens, same.val.tokens)
  moved = sources.load(tiny_config(**{"data.split_seed": 3}).data)
  assert not np.array_equal(base.val.tokens, moved.val.tokens)
  # No overlap between train and val, and nothing lost.
  keep, held = dataset.stratified_split(np.repeat(np.arange(4), [50, 30, 10, 10]),
                                        0.2, seed=0)
  assert set(keep).isdisjoint(held)
  assert len(keep) + len(held) == 100
  assert np.bincount(np.repeat(np.arange(4), [50, 30, 10, 10])[held]).tolist() == \
      [10, 6, 2, 2]


def test_batches_cover_every_example_once_with_a_padded_masked_last_batch():
  split = dataset.TextSplit.from_sequences([[1, 2], [3], [4, 5, 6]] * 7,
                                           np.arange(21) % 3, max_length=8)
  order = np.random.default_rng(0).permutation(21)
  seen = []
  shapes = set()
  for batch in dataset.batches(split, 8, order):
    shapes.add(batch["tokens"].shape)
    seen.extend(batch["labels"][batch["mask"]].tolist())
  assert shapes == {(8, 3)}  # one shape: nothing recompiles on the last batch
  assert len(seen) == 21
  assert sorted(seen) == sorted(split.labels.tolist())


def test_truncation_to_max_length():
  split = dataset.TextSplit.from_sequences([[1] * 10, [2] * 3], [0, 1], max_length=4)
  assert split.tokens.shape == (2, 4)
  assert split.lengths.tolist() == [4, 3]


def test_fingerprint_changes_with_the_data():
  a = sources.load(tiny_config().data)
  b = sources.load(tiny_config(**{"data.synthetic.generator_seed": 99}).data)
  assert a.fingerprint() == sources.load(tiny_config().data).fingerprint()
  assert a.fingerprint() != b.fingerprint()


def test_length_sorted_batches_keep_every_example_and_group_lengths():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 400, 1000)
  order = rng.permutation(1000)
  sorted_order = dataset.length_sorted(order, lengths, 32, window=10,
                                       rng=np.random.default_rng(1))
  assert sorted(sorted_order.tolist()) == list(range(1000))
  # the partial batch (1000 % 32 = 8 examples) stays last, as batches() expects
  assert sorted_order[-8:].tolist() == order[-8:].tolist()
  spread = [np.ptp(lengths[sorted_order[i:i + 32]]) for i in range(0, 992, 32)]
  random_spread = [np.ptp(lengths[order[i:i + 32]]) for i in range(0, 992, 32)]
  assert np.mean(spread) < 0.25 * np.mean(random_spread)
  again = dataset.length_sorted(order, lengths, 32, 10, np.random.default_rng(1))
  np.testing.assert_array_equal(again, sorted_order)  # deterministic for resumes

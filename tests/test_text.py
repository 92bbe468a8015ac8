"""Text pipeline: tokenizer, vocabulary, val hold-out, cache, length buckets."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import config as config_lib
from jaxreg.data import dataset, text
from jaxreg.data.raw import RawData, RawSplit
from tests.conftest import tiny_config


def data_cfg(tmp_path, **overrides):
  c = config_lib.get_base_config().data
  c.cache_dir = str(tmp_path / "cache")
  c.val_fraction = 0.25
  for k, v in overrides.items():
    c[k] = v
  return c


def raw_data(description="unit-test"):
  # 8 training texts per class: val_fraction 0.25 holds out 2 of each.
  # Every training text has one word of its own: w0 ... w15.
  train = [f"Good film w{i}, GREAT!" for i in range(8)] + \
          [f"bad movie w{i}; awful." for i in range(8, 16)]
  test = ["good unseenword film", "awful awful bad", ""]
  return RawData(RawSplit(np.array([0] * 8 + [1] * 8), texts=train),
                 RawSplit(np.array([0, 1, 1]), texts=test), ["pos", "neg"], description)


# ---------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("mode,expected", [
    ("split", ["great", ",", "isn't", "it", "?", "!", "café", "-", "3", "x"]),
    ("strip", ["great", "isn't", "it", "café", "3", "x"]),
    ("keep", ["great,", "isn't", "it?!", "café-3", "x"]),
])
def test_tokenizer_punctuation_modes(mode, expected):
  assert text.tokenize("Great, isn't it?! Café-3  x", punctuation=mode) == expected


def test_tokenizer_lowercase_is_optional():
  assert text.tokenize("Hello World.", lowercase=False) == ["Hello", "World", "."]
  assert text.tokenize("Hello World.") == ["hello", "world", "."]


# --------------------------------------------------------------- vocabulary


def test_vocab_order_min_freq_and_max_size_are_deterministic():
  docs = [["b", "a", "c", "a"], ["c", "d", "b"], ["e"]]
  # counts: a 2, b 2, c 2, d 1, e 1: ties by the word itself, whatever the input order
  assert text.build_vocab(docs) == ["<pad>", "<unk>", "a", "b", "c", "d", "e"]
  assert text.build_vocab(docs[::-1]) == text.build_vocab(docs)
  assert text.build_vocab(docs, min_freq=2) == ["<pad>", "<unk>", "a", "b", "c"]
  assert text.build_vocab(docs, max_vocab=4) == ["<pad>", "<unk>", "a", "b"]


def test_literal_special_tokens_never_become_padding():
  vocab = text.build_vocab([["<pad>", "<unk>", "w"]])
  assert vocab == ["<pad>", "<unk>", "w"]
  ids = {w: i for i, w in enumerate(vocab) if i != 0}
  assert text.encode(["<pad>", "w", "<unk>"], ids, 10) == [1, 2, 1]


def test_truncation_and_empty_text():
  ids = {"a": 2}
  assert text.encode(["a"] * 10, ids, 4) == [2, 2, 2, 2]
  assert text.encode([], ids, 4) == [text.UNK_ID]  # length 1, never 0


# ---------------------------------------------------------------- prepare


def test_prepare_holds_out_val_before_building_the_vocabulary(tmp_path):
  cfg = data_cfg(tmp_path, cache_dir="")
  raw = raw_data()
  data = text.prepare(raw, cfg)
  keep, held = dataset.stratified_split(raw.train.labels, 0.25, cfg.split_seed)
  assert len(data.train) == 12 and len(data.val) == 4 and len(data.test) == 3
  np.testing.assert_array_equal(data.val.labels, raw.train.labels[held])
  assert data.vocab[:2] == ["<pad>", "<unk>"]
  # The words of the held-out (val) texts are unknown: the vocabulary saw train only.
  assert {f"w{i}" for i in keep} <= set(data.vocab)
  assert {f"w{i}" for i in held}.isdisjoint(data.vocab)
  val_ids = data.val.tokens[:, 2]  # "good film wK ..." / "bad movie wK ..."
  assert (val_ids == text.UNK_ID).all()
  assert "unseenword" not in data.vocab
  ids = {w: i for i, w in enumerate(data.vocab)}
  first_test = data.test.tokens[0, :data.test.lengths[0]].tolist()
  assert first_test == [ids["good"], text.UNK_ID, ids["film"]]
  assert data.test.lengths[2] == 1  # the empty test text
  assert data.class_names == ["pos", "neg"]
  # the hold-out follows split_seed
  other = text.prepare(raw, data_cfg(tmp_path, cache_dir="", split_seed=1))
  assert other.vocab != data.vocab


def test_max_length_truncates(tmp_path):
  data = text.prepare(raw_data(), data_cfg(tmp_path, cache_dir="", max_length=3))
  assert data.train.tokens.shape[1] == 3
  assert data.train.lengths.max() == 3


# ------------------------------------------------------------------- cache


def _no_tokenizer(monkeypatch):
  def boom(*args, **kwargs):
    raise AssertionError("tokenizer called")
  monkeypatch.setattr(text, "tokenize", boom)


def test_second_load_hits_the_cache(tmp_path, monkeypatch):
  cfg = data_cfg(tmp_path)
  first = text.prepare(raw_data(), cfg)
  files = sorted(p.name for p in (tmp_path / "cache").iterdir())
  assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npz")
  _no_tokenizer(monkeypatch)
  second = text.prepare(raw_data(), cfg)
  assert second.fingerprint() == first.fingerprint()
  assert second.class_names == first.class_names and second.vocab == first.vocab
  for name in ("train", "val", "test"):
    np.testing.assert_array_equal(second.split(name).tokens, first.split(name).tokens)


@pytest.mark.parametrize("key,value", [
    ("lowercase", False), ("punctuation", "strip"), ("min_freq", 2),
    ("max_vocab", 10), ("max_length", 5), ("split_seed", 3), ("val_fraction", 0.5),
    ("description", "another source"),
])
def test_any_changed_setting_misses_the_cache(tmp_path, monkeypatch, key, value):
  text.prepare(raw_data(), data_cfg(tmp_path))
  _no_tokenizer(monkeypatch)
  if key == "description":
    raw, cfg = raw_data(description=value), data_cfg(tmp_path)
  else:
    raw, cfg = raw_data(), data_cfg(tmp_path, **{key: value})
  with pytest.raises(AssertionError, match="tokenizer called"):
    text.prepare(raw, cfg)


def test_failed_cache_write_leaves_no_entry(tmp_path, monkeypatch):
  cfg = data_cfg(tmp_path)

  def broken_savez(f, **arrays):
    f.write(b"partial")
    raise OSError("disk full")
  monkeypatch.setattr(np, "savez", broken_savez)
  with pytest.raises(OSError, match="disk full"):
    text.prepare(raw_data(), cfg)
  assert list((tmp_path / "cache").iterdir()) == []  # no tmp file, no half entry
  monkeypatch.undo()
  text.prepare(raw_data(), cfg)
  meta = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
  assert meta["key"] == text.cache_key("unit-test", cfg)
  assert meta["sizes"] == {"train": 12, "val": 4, "test": 3}


# ----------------------------------------------------------------- buckets


def test_parse_buckets():
  assert dataset.parse_buckets("16,32,64", 40) == (16, 32, 40)
  assert dataset.parse_buckets("16, 32", 32) == (16, 32)
  assert dataset.parse_buckets("16,32", 100) == (16, 32, 100)
  assert dataset.parse_buckets("", 100) is None
  for bad in ("32,16", "0,8", "8,8", "a,b"):  # the config schema's rule
    with pytest.raises(config_lib.ConfigError, match="data.buckets"):
      config_lib.validate(tiny_config(**{"data.buckets": bad}))


def _varied_split(n=200, max_length=50, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, max_length + 1, size=n)
  seqs = [list(rng.integers(2, 30, size=k)) for k in lengths]
  return dataset.TextSplit.from_sequences(seqs, rng.integers(0, 2, size=n), max_length)


def test_batches_are_padded_to_the_smallest_fitting_bucket():
  split = _varied_split()
  buckets = dataset.parse_buckets("4,8,16", 50)
  order = np.argsort(split.lengths)  # sorted: batches of every size class
  seen = []
  for batch in dataset.batches(split, 10, order, buckets=buckets):
    width = batch["tokens"].shape[1]
    longest = batch["lengths"].max()
    assert width == min(b for b in buckets if b >= longest)
    # nothing real is cut, and the padding is PAD_ID
    for row, n in zip(batch["tokens"], batch["lengths"]):
      assert (row[n:] == dataset.PAD_ID).all() and (row[:n] != dataset.PAD_ID).all()
    seen.extend(batch["labels"][batch["mask"]].tolist())
  assert sorted(seen) == sorted(split.labels.tolist())
  with pytest.raises(ValueError, match="longer than the last bucket"):
    next(dataset.batches(split, 10, order[::-1], buckets=(4, 8)))


def test_compilations_over_an_epoch_are_at_most_the_number_of_buckets():
  split = _varied_split(n=300, max_length=60)
  buckets = dataset.parse_buckets("4,8,16,32", 60)
  step = jax.jit(lambda tokens, lengths: jnp.sum(tokens) + jnp.sum(lengths))
  widths = set()
  order = np.argsort(split.lengths, kind="stable")  # sorted order visits every bucket
  for batch in dataset.batches(split, 16, order, buckets=buckets):
    step(batch["tokens"], batch["lengths"])
    widths.add(batch["tokens"].shape[1])
  # padding each batch to its own longest sequence would compile far more shapes
  unbucketed = {int(split.lengths[order[i:i + 16]].max()) for i in range(0, 300, 16)}
  assert len(unbucketed) > len(buckets)
  assert len(widths) == len(buckets)  # every bucket was used ...
  assert step._cache_size() <= len(buckets)  # ... and compiled once


def test_train_and_eval_steps_compile_at_most_once_per_bucket(tmp_path, monkeypatch):
  from jaxreg import train
  # A jsonl dataset of mostly short texts and a few long ones: batches differ in width.
  rng = np.random.default_rng(0)
  lines = []
  for i in range(96):
    label = i % 2
    n = int(rng.integers(8, 20)) if rng.random() < 0.1 else int(rng.integers(0, 3))
    words = ["good" if label else "bad"] + [f"w{j}" for j in rng.integers(0, 20, n)]
    lines.append(json.dumps({"text": " ".join(words), "label": str(label)}))
  path = tmp_path / "d.jsonl"
  path.write_text("\n".join(lines))
  config = tiny_config(**{
      "data.source": "jsonl", "data.train_file": str(path), "data.test_fraction": 0.25,
      "data.max_length": 12, "data.buckets": "4,8",
      "data.cache_dir": str(tmp_path / "cache"), "data.eval_batch_size": 16,
      "train.batch_size": 8, "train.epochs": 1,
      "model.cell": "rnn", "model.embed_size": 8, "model.hidden_size": 8})
  captured = {}
  real_setup = train.build.setup

  def spy(*args, **kwargs):
    captured["s"] = real_setup(*args, **kwargs)
    return captured["s"]
  monkeypatch.setattr(train.build, "setup", spy)
  train.train_and_evaluate(config, tmp_path / "run")
  s = captured["s"]
  buckets = dataset.parse_buckets(config.data.buckets, config.data.max_length)
  assert len(buckets) == 3
  assert 2 <= s.feed.train_step._cache_size() <= len(buckets)
  assert 1 <= s.feed.eval_step._cache_size() <= len(buckets)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("key,value,message", [
    ("data.punctuation", "drop", "data.punctuation='drop' is not one of: split, strip"),
    ("data.buckets", "64,32", "data.buckets='64,32' must be"),
    ("data.max_vocab", 2, "data.max_vocab=2 must be 0"),
    ("data.min_freq", 0, "data.min_freq=0 must be an integer >= 1"),
])
def test_text_config_errors_name_the_key(key, value, message):
  config = tiny_config(**{key: value})
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_defaults_validate_and_synthetic_batches_use_the_buckets():
  from jaxreg.data import sources
  config = tiny_config()
  config_lib.validate(config)
  assert config.data.source == "synthetic"
  data = sources.load(config.data)
  assert isinstance(data, dataset.TextData) and data.vocab[:2] == ["<pad>", "<unk>"]
  buckets = dataset.parse_buckets(config.data.buckets, config.data.max_length)
  assert buckets == (16, 32, 64)
  widths = {b["tokens"].shape[1] for b in dataset.batches(data.train, 8, buckets=buckets)}
  assert widths <= set(buckets)


def test_strip_html_removes_tags_not_words():
  from jaxreg.data.text import tokenize
  text = "Great film.<br /><br />Loved it <i>a lot</i> & 3 < 4 > 2"
  assert tokenize(text, strip_html=True) == [
      "great", "film", ".", "loved", "it", "a", "lot", "&", "3", "<", "4", ">", "2"]
  assert "br" in tokenize(text)  # off by default

"""Pretrained word vectors: the three file formats, lookup rules, errors, freezing.

No vector files exist on these machines: every test writes its own tiny one.
"""

import gzip
import logging
import struct

import jax
import numpy as np
import pytest

from jaxreg import config as config_lib, metrics, parallel, train
from jaxreg.data import dataset, embeddings
from tests.conftest import tiny_config

DIM = 4
RNG = np.random.default_rng(0)
# File order matters for the lowercase fallback: the first casing wins.
VECTORS = {w: RNG.normal(size=DIM).astype(np.float32) for w in [
    "the", "Paris", "LONDON", "London", "apple", "Apple", "café", "42"]}
VOCAB = ["<pad>", "<unk>", "the", "paris", "london", "Apple", "zzz", "café", "qqq"]


def write_word2vec_bin(path, vectors, newline=True, count=None):
  """The standard format: 'N D\\n', then per word b'word ' + D float32 LE [+ b'\\n']."""
  with open(path, "wb") as f:
    f.write(f"{count if count is not None else len(vectors)} {DIM}\n".encode())
    for word, vec in vectors.items():
      f.write(word.encode("utf-8") + b" ")
      f.write(struct.pack(f"<{DIM}f", *vec))
      if newline:
        f.write(b"\n")
  return path


def _text_lines(vectors):
  # repr of a float32 round-trips exactly through float() and back to float32
  return "".join(f"{w} {' '.join(repr(float(x)) for x in v)}\n" for w, v in vectors.items())


def write_word2vec_text(path, vectors):
  path.write_text(f"{len(vectors)} {DIM}\n" + _text_lines(vectors), encoding="utf-8")
  return path


def write_glove(path, vectors):
  path.write_text(_text_lines(vectors), encoding="utf-8")
  return path


WRITERS = {
    "word2vec_bin": write_word2vec_bin,
    "word2vec_text": write_word2vec_text,
    "glove": write_glove,
}


def expected_rows():
  """vocab word -> the vector it must get (exact match first, then first lowercase)."""
  return {"the": VECTORS["the"], "paris": VECTORS["Paris"], "london": VECTORS["LONDON"],
          "Apple": VECTORS["Apple"], "café": VECTORS["café"]}


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("given", ["explicit", "auto"])
def test_every_format_gives_the_same_table(tmp_path, fmt, given):
  path = WRITERS[fmt](tmp_path / f"v.{fmt}", VECTORS)
  assert embeddings.detect_format(path) == fmt
  vectors, found, report = embeddings.lookup(
      path, VOCAB, fmt if given == "explicit" else "auto", dim=DIM)
  rows = expected_rows()
  assert found.tolist() == [w in rows for w in VOCAB]
  for i, w in enumerate(VOCAB):
    if w in rows:
      np.testing.assert_array_equal(vectors[i], rows[w])
    else:
      assert not vectors[i].any()
  assert (report.format, report.dim, report.vocab_words, report.found) == (fmt, DIM, 7, 5)
  assert report.found_lowercase == 2  # paris <- Paris, london <- LONDON
  assert report.missing == ["zzz", "qqq"]  # specials are neither looked up nor missing


def test_word2vec_binary_without_newlines_and_gzipped(tmp_path):
  plain = write_word2vec_bin(tmp_path / "v.bin", VECTORS, newline=False)
  zipped = tmp_path / "v.bin.gz"
  zipped.write_bytes(gzip.compress(plain.read_bytes()))
  for path in (plain, zipped):
    vectors, found, _ = embeddings.lookup(path, VOCAB, dim=DIM)
    np.testing.assert_array_equal(vectors[VOCAB.index("café")], VECTORS["café"])
    assert found.sum() == 5


def test_binary_vectors_may_contain_space_and_newline_bytes(tmp_path):
  # 0x20 (space) and 0x0A (newline) inside a vector must not end a word.
  tricky = {"a": np.frombuffer(b"\x20\x20\x20\x20" + b"\n\n\n\n" + b"\x20\n\x20\n"
                               + b"\x00\x00\x80\x3f", "<f4").copy(),
            "b": np.arange(DIM, dtype=np.float32)}
  path = write_word2vec_bin(tmp_path / "t.bin", tricky, newline=False)
  vectors, found, _ = embeddings.lookup(path, ["<pad>", "<unk>", "a", "b"], dim=DIM)
  assert found.tolist() == [False, False, True, True]
  np.testing.assert_array_equal(vectors[2], tricky["a"])
  np.testing.assert_array_equal(vectors[3], tricky["b"])


def test_glove_words_with_spaces_take_the_last_d_fields(tmp_path):
  path = tmp_path / "g.txt"
  path.write_text(". 1 2 3 4\n. . . 5 6 7 8\nat&t 9 9 9 9\n", encoding="utf-8")
  vectors, found, report = embeddings.lookup(path, [".", ". . .", "at&t"], dim=DIM)
  np.testing.assert_array_equal(vectors, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9]])
  assert report.missing == []


def test_dimension_must_equal_embed_size(tmp_path):
  path = write_glove(tmp_path / "g.txt", VECTORS)
  with pytest.raises(ValueError) as e:
    embeddings.lookup(path, VOCAB, dim=300)
  assert str(e.value) == (f"model.embeddings_file='{path}' holds 4-dimensional vectors "
                          "but model.embed_size=300; set model.embed_size=4")


@pytest.mark.parametrize("writer,fmt,message", [
    (write_word2vec_text, "glove", "has a 'N D' header and text vectors"),
    (write_glove, "word2vec_text", "has no 'N D' header"),
    (write_word2vec_text, "word2vec_bin", "set model.embeddings_format=word2vec_text"),
    (write_word2vec_bin, "word2vec_text", "binary vectors (word2vec binary)"),
])
def test_a_format_that_contradicts_the_file_is_an_error(tmp_path, writer, fmt, message):
  path = writer(tmp_path / "v", VECTORS)
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    embeddings.lookup(path, VOCAB, fmt, dim=DIM)


def test_broken_files_are_one_line_errors(tmp_path):
  short = write_word2vec_bin(tmp_path / "s.bin", VECTORS, count=len(VECTORS) + 3)
  with pytest.raises(ValueError, match="ends after 8 of the 11 vectors"):
    embeddings.lookup(short, VOCAB, dim=DIM)
  ragged = tmp_path / "r.txt"
  ragged.write_text("the 1 2 3 4\napple 1 2\n")
  with pytest.raises(ValueError, match="line 2 has 2 values, not 4"):
    embeddings.lookup(ragged, ["apple"], dim=DIM)
  empty = tmp_path / "e.txt"
  empty.write_text("")
  with pytest.raises(ValueError, match="is empty"):
    embeddings.lookup(empty, VOCAB)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    embeddings.lookup(tmp_path / "nope.txt", VOCAB)
  with pytest.raises(ValueError, match="is not one of: auto, word2vec_bin"):
    embeddings.lookup(ragged, VOCAB, "fasttext")


def test_init_table_keeps_random_rows_of_missing_words(tmp_path):
  path = write_glove(tmp_path / "g.txt", VECTORS)
  table = RNG.normal(size=(len(VOCAB), DIM)).astype(np.float32)
  new, report = embeddings.init_table(table, VOCAB, path)
  for i, w in enumerate(VOCAB):
    if w in expected_rows():
      np.testing.assert_array_equal(new[i], expected_rows()[w])
    else:
      np.testing.assert_array_equal(new[i], table[i])  # <pad>, <unk>, zzz, qqq
  assert new.dtype == np.float32 and report.found == 5


# ----------------------------------------------------------------------------- in a run


def _synthetic_vectors(tmp_path, words):
  vecs = {w: np.full(8, i + 1, np.float32) / 10 for i, w in enumerate(words)}
  path = tmp_path / "vectors.bin"
  with open(path, "wb") as f:
    f.write(f"{len(vecs)} 8\n".encode())
    for w, v in vecs.items():
      f.write(w.encode() + b" " + v.astype("<f4").tobytes() + b"\n")
  return path, vecs


def _config(path, **overrides):
  return tiny_config(**{"model.embed_size": 8, "model.hidden_size": 8,
                        "model.embeddings_file": str(path), **overrides})


def _embedding(params):
  return np.asarray(jax.device_get(params)["embed"]["embedding"])


def test_setup_loads_vectors_logs_and_writes_the_missing_words(tmp_path, caplog):
  # The synthetic set's vocabulary: <pad>, <unk>, alpha ... delta, echo, x, y, p, q, w0..
  path, vecs = _synthetic_vectors(tmp_path, ["Alpha", "bravo", "x", "w7", "unused"])
  with caplog.at_level(logging.WARNING):
    s = train.setup(_config(path), tmp_path / "run")
  table, vocab = _embedding(s.state.params), s.data.vocab
  np.testing.assert_array_equal(table[vocab.index("alpha")], vecs["Alpha"])  # lowercase
  np.testing.assert_array_equal(table[vocab.index("w7")], vecs["w7"])
  assert not np.array_equal(table[vocab.index("w8")], np.zeros(8))  # random, kept
  missing = (tmp_path / "run" / "embeddings_missing.txt").read_text().split("\n")[:-1]
  expected_missing = [w for w in vocab[2:] if w not in ("alpha", "bravo", "x", "w7")]
  assert missing == expected_missing
  text = caplog.text
  assert f"4 of {len(vocab) - 2} vocabulary words found" in text
  assert "1 by lowercase" in text and f"first: {' '.join(map(repr, expected_missing[:20]))} ..." \
      in text


def test_a_workdir_with_a_checkpoint_does_not_reread_the_vectors(tmp_path):
  (tmp_path / "checkpoints" / "12").mkdir(parents=True)
  params = {"embed": {"embedding": np.zeros((3, 8), np.float32)}}
  cfg = _config(tmp_path / "gone.bin").model  # the file need not exist any more
  out, report = embeddings.load_into_params(params, ["<pad>", "<unk>", "a"], cfg, tmp_path)
  assert report is None and out is params


def _train_steps(s, n=3):
  state = s.state
  counts = parallel.put_replicated(metrics.zero_counts(s.data.num_classes), s.mesh)
  for i, batch in enumerate(dataset.batches(s.data.train, s.config.train.batch_size)):
    if i == n:
      break
    state, counts, _ = s.train_step(state, parallel.put_batch(batch, s.mesh), counts)
  return state


def test_frozen_table_gets_exactly_zero_update(tmp_path):
  """Unfrozen, the table changes at the first step (test_train.py checks every param)."""
  path, _ = _synthetic_vectors(tmp_path, ["alpha", "x", "w0", "w1", "w2"])
  # Every regularizer on; weight decay in its learning-rate-independent form.
  s = train.setup(_config(path, **{
      "model.freeze_embeddings": True, "reg.weight_decay": 0.1,
      "reg.weight_decay_mode": "independent", "reg.l2": 0.1, "reg.l1": 0.01,
      "reg.clip_norm": 1.0}), tmp_path / "run")
  before = jax.device_get(s.state.params)
  after = jax.device_get(_train_steps(s).params)
  assert np.array_equal(_embedding(after), _embedding(before))
  # No optimizer state for the frozen table (the chain runs on the others only).
  state_shapes = [x.shape for x in jax.tree.leaves(s.state.opt_state)]
  assert _embedding(before).shape not in state_shapes
  others = [(a, b) for (path_, a), b in zip(
      jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after))
      if "embed" not in jax.tree_util.keystr(path_)]
  assert others and all(not np.array_equal(a, b) for a, b in others)


def test_config_keys_are_validated(tmp_path):
  config_lib.validate(_config(tmp_path / "v.txt", **{"model.embeddings_format": "glove",
                                                     "model.freeze_embeddings": True}))
  with pytest.raises(config_lib.ConfigError, match="model.embeddings_format='bin' is not "
                     "one of: auto, word2vec_bin, word2vec_text, glove"):
    config_lib.validate(_config("v", **{"model.embeddings_format": "bin"}))
  with pytest.raises(config_lib.ConfigError, match="model.freeze_embeddings=True needs "
                     "model.embeddings_file"):
    config_lib.validate(_config("", **{"model.freeze_embeddings": True}))


def test_wrong_dimension_in_a_run_is_a_config_error(tmp_path):
  path = write_glove(tmp_path / "g.txt", VECTORS)
  with pytest.raises(config_lib.ConfigError, match="holds 4-dimensional vectors but "
                     "model.embed_size=8"):
    train.setup(_config(path), tmp_path / "run")

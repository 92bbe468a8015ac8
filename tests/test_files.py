"""Local file sources (csv, tsv, jsonl) and text folders, down to TextData."""

import json
import tarfile

import numpy as np
import pytest

from jaxreg import config as config_lib
from jaxreg.data import files, folders, sources, text
from tests.conftest import SHARED_DATA, tiny_config


def cfg(tmp_path, **overrides):
  c = config_lib.get_base_config().data
  c.cache_dir = str(tmp_path / "cache")
  for k, v in overrides.items():
    c[k] = v
  return c


def write(path, content):
  path.write_text(content, encoding="utf-8")
  return str(path)


# ---------------------------------------------------------------------- csv


def test_csv_with_header_joins_text_columns_and_sorts_label_names(tmp_path):
  train = write(tmp_path / "train.csv",
                "title,body,label\n"
                'Hello,"world, with a comma",spam\n'
                'Hi,"two\nlines",ham\n'
                "Buy,now,spam\n")
  test = write(tmp_path / "test.csv", "title,body,label\nOk,fine,ham\n")
  raw = files.load(cfg(tmp_path, source="csv", train_file=train, test_file=test,
                       text_fields="title, body"))
  assert raw.train.texts == ["Hello world, with a comma", "Hi two\nlines", "Buy now"]
  assert raw.class_names == ["ham", "spam"]  # sorted by default
  assert raw.train.labels.tolist() == [1, 0, 1]
  assert raw.test.texts == ["Ok fine"] and raw.test.labels.tolist() == [0]
  # data.class_names fixes the order
  raw = files.load(cfg(tmp_path, source="csv", train_file=train, test_file=test,
                       text_fields="body", class_names="spam,ham"))
  assert raw.class_names == ["spam", "ham"] and raw.train.labels.tolist() == [0, 1, 0]
  assert raw.train.texts[0] == "world, with a comma"


def test_tsv_without_header_uses_indices_and_keeps_quotes(tmp_path):
  train = write(tmp_path / "train.tsv",
                '2\tsaid "hi there\tx\n1\tplain\ty\n2\tmore "quoted" words\tz\n')
  raw = files.load(cfg(tmp_path, source="tsv", train_file=train, header=False,
                       text_fields="1,2", label_field="0", label_ids=True,
                       label_offset=1, test_fraction=0.0, test_file=train))
  assert raw.train.texts == ['said "hi there x', "plain y", 'more "quoted" words z']
  assert raw.train.labels.tolist() == [1, 0, 1]
  assert raw.class_names == ["class_0", "class_1"]


def test_jsonl_objects_with_integer_ids_and_listed_names(tmp_path):
  lines = [{"q": f"question {i}", "ctx": "c", "y": i % 3} for i in range(9)]
  train = write(tmp_path / "train.jsonl",
                "\n".join(json.dumps(x) for x in lines) + "\n\n")
  test = write(tmp_path / "test.jsonl", json.dumps({"q": "q", "ctx": "", "y": 2}))
  raw = files.load(cfg(tmp_path, source="jsonl", train_file=train, test_file=test,
                       text_fields="q,ctx", label_field="y", label_ids=True,
                       class_names="a,b,c"))
  assert raw.train.texts[4] == "question 4 c"
  assert raw.train.labels.tolist() == [0, 1, 2] * 3
  assert raw.class_names == ["a", "b", "c"] and raw.test.labels.tolist() == [2]


def test_one_file_split_by_test_fraction_is_stratified_and_fixed_by_split_seed(tmp_path):
  rows = [f"text {i},{'abc'[i % 3]}" for i in range(60)]
  train = write(tmp_path / "all.csv", "text,label\n" + "\n".join(rows))
  c = cfg(tmp_path, source="csv", train_file=train, test_fraction=0.2)
  a, b = files.load(c), files.load(c)
  assert a.test.texts == b.test.texts
  assert np.bincount(a.test.labels).tolist() == [4, 4, 4]
  assert sorted(a.train.texts + a.test.texts) == sorted(f"text {i}" for i in range(60))
  assert set(a.train.texts).isdisjoint(a.test.texts)
  moved = files.load(cfg(tmp_path, source="csv", train_file=train, test_fraction=0.2,
                         split_seed=1))
  assert moved.test.texts != a.test.texts
  assert moved.description != a.description


# ------------------------------------------------------------------- errors


def _error(tmp_path, exc, **overrides):
  c = cfg(tmp_path, **overrides)
  with pytest.raises(exc) as e:
    (folders.read if c.source == "folder" else files.load)(c)
  message = str(e.value)
  assert "\n" not in message
  return message


def test_malformed_rows_name_the_file_and_line(tmp_path):
  good = write(tmp_path / "good.csv", "text,label\na,x\nb,y\n")
  bad = write(tmp_path / "bad.csv", "text,label\na,x\nb,y,extra\n")
  assert _error(tmp_path, ValueError, source="csv", train_file=bad,
                test_file=good).startswith(f"{bad}:3: expected 2 columns, got 3")
  bad = write(tmp_path / "bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b",\n')
  assert _error(tmp_path, ValueError, source="jsonl", train_file=bad,
                test_fraction=0.5).startswith(f"{bad}:2: bad JSON")
  bad = write(tmp_path / "missing.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
  assert _error(tmp_path, ValueError, source="jsonl", train_file=bad,
                test_fraction=0.5) == f"{bad}:2: missing field 'label' (data.label_field)"
  message = _error(tmp_path, ValueError, source="csv", train_file=good,
                   test_file=good, text_fields="body")
  assert message.startswith(f"{good}:1: column 'body' (data.text_fields) is not in "
                            "the header (text, label)")
  bad = write(tmp_path / "ids.csv", "text,label\na,1\nb,zero\n")
  assert _error(tmp_path, ValueError, source="csv", train_file=bad, test_file=good,
                label_ids=True).startswith(f"{bad}:3: label 'zero' is not an integer")
  assert _error(tmp_path, ValueError, source="csv", train_file=bad, test_file=good,
                label_ids=True, label_offset=2).startswith(
                    f"{bad}:2: label id 1 minus data.label_offset=2 is < 0")
  message = _error(tmp_path, ValueError, source="csv", train_file=good,
                   test_file=good, class_names="x,z")
  assert message.startswith(f"{good}:3: label 'y' is not in data.class_names")


def test_unseen_test_label_empty_split_and_missing_file(tmp_path):
  train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
  test = write(tmp_path / "test.csv", "text,label\nc,x\nd,w\n")
  assert _error(tmp_path, ValueError, source="csv", train_file=train,
                test_file=test) == \
      f"{test}:3: test label 'w' does not occur in training ({train})"
  empty = write(tmp_path / "empty.csv", "text,label\n")
  assert _error(tmp_path, ValueError, source="csv", train_file=train,
                test_file=empty) == f"{empty}: no examples (empty split)"
  missing = tmp_path / "nope.csv"
  assert _error(tmp_path, FileNotFoundError, source="csv", train_file=str(missing),
                test_file=test) == f"{missing}: no such file (data.train_file)"
  # listed class with no training example
  assert "class 'z' has no training example" in _error(
      tmp_path, ValueError, source="csv", train_file=train, test_file=train,
      class_names="x,y,z")


@pytest.mark.parametrize("overrides,message", [
    ({"data.source": "csv"}, "data.train_file is empty"),
    ({"data.source": "csv", "data.train_file": "a.csv"},
     "give exactly one of data.test_file and data.test_fraction"),
    ({"data.source": "csv", "data.train_file": "a.csv", "data.test_file": "b.csv",
      "data.test_fraction": 0.1}, "give exactly one of data.test_file"),
    ({"data.source": "folder"}, "data.root is empty"),
    ({"data.source": "parquet"}, "data.source='parquet' is not one of: synthetic, csv"),
])
def test_config_errors_are_one_line(overrides, message):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(tiny_config(**overrides))
  assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------- folder


def make_tree(root, layout):
  for split, classes in layout.items():
    for name, docs in classes.items():
      d = root / split / name
      d.mkdir(parents=True)
      for i, doc in enumerate(docs):
        (d / f"{i}.txt").write_bytes(doc)
  return str(root)


def test_folder_reads_sorted_classes_and_ignores_unlisted_directories(tmp_path):
  root = make_tree(tmp_path / "t", {
      "train": {"pos": [b"great", b"fine"], "neg": [b"bad \xff bytes"],
                "unsup": [b"unlabelled"]},
      "test": {"pos": [b"ok"], "neg": [b"meh"], "unsup": [b"x"]},
  })
  (tmp_path / "t" / "train" / "urls.txt").write_text("not a class")
  raw = folders.read(cfg(tmp_path, source="folder", root=root, classes="neg,pos"))
  assert raw.class_names == ["neg", "pos"]
  assert text.texts(raw.train) == ["bad \ufffd bytes", "great", "fine"]
  assert raw.train.labels.tolist() == [0, 1, 1]
  assert text.texts(raw.test) == ["meh", "ok"] and raw.test.labels.tolist() == [0, 1]
  every = folders.read(cfg(tmp_path, source="folder", root=root))
  assert every.class_names == ["neg", "pos", "unsup"]  # every train dir, sorted


def test_folder_errors(tmp_path):
  root = make_tree(tmp_path / "t", {"train": {"a": [b"x"], "b": [b"y"]},
                                    "test": {"a": [b"z"], "c": [b"w"]}})
  assert _error(tmp_path, ValueError, source="folder", root=root) == \
      f"{tmp_path / 't' / 'test' / 'c'}: test class 'c' does not occur in training " \
      f"({tmp_path / 't' / 'train'})"
  assert _error(tmp_path, FileNotFoundError, source="folder", root=root,
                classes="a,zz").startswith(f"{tmp_path / 't' / 'train' / 'zz'}: no such")
  empty = make_tree(tmp_path / "e", {"train": {"a": [b"x"]}, "test": {"a": []}})
  assert _error(tmp_path, ValueError, source="folder", root=empty).endswith(
      "(empty split)")
  missing = tmp_path / "none"
  assert _error(tmp_path, FileNotFoundError, source="folder", root=str(missing)) == \
      f"{missing}: no such directory (data.root)"
  no_test = make_tree(tmp_path / "n", {"train": {"a": [b"x"] * 4, "b": [b"y"] * 4}})
  assert _error(tmp_path, FileNotFoundError, source="folder",
                root=no_test).startswith(f"{tmp_path / 'n' / 'test'}: no such directory")
  raw = folders.read(cfg(tmp_path, source="folder", root=no_test, test_fraction=0.5))
  assert raw.test.labels.tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------- through sources


def test_sources_load_builds_text_data_and_a_changed_file_misses_the_cache(
    tmp_path, monkeypatch):
  rows = [f"{'good' if i % 2 else 'bad'} thing {i},{'pos' if i % 2 else 'neg'}"
          for i in range(40)]
  train = write(tmp_path / "train.csv", "text,label\n" + "\n".join(rows))
  test = write(tmp_path / "test.csv", "text,label\ngood new thing,pos\nbad,neg\n")
  config = tiny_config(**{"data.source": "csv", "data.train_file": train,
                          "data.test_file": test, "data.val_fraction": 0.25,
                          "data.cache_dir": str(tmp_path / "cache")})
  config_lib.validate(config)
  data = sources.load(config.data)
  assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 2)
  assert data.class_names == ["neg", "pos"] and data.vocab[:2] == ["<pad>", "<unk>"]
  monkeypatch.setattr(text, "tokenize", lambda *a, **k: 1 / 0)
  assert sources.load(config.data).fingerprint() == data.fingerprint()  # cache hit
  write(tmp_path / "test.csv", "text,label\ngood new thing,pos\nbad!,neg\n")
  with pytest.raises(ZeroDivisionError):  # same path, new content: cache miss
    sources.load(config.data)


# -------------------------------------------------------------- IMDB (real)

IMDB_TAR = SHARED_DATA / "imdb" / "aclImdb_labelled.tar.gz"


@pytest.fixture(scope="module")
def aclimdb(tmp_path_factory):
  if not IMDB_TAR.exists():
    pytest.skip(f"{IMDB_TAR} not found (../shared/data is absent)")
  out = tmp_path_factory.mktemp("imdb")
  with tarfile.open(IMDB_TAR) as tar:
    tar.extractall(out, filter="data")
  return out / "aclImdb"


@pytest.mark.slow
def test_imdb_acl_tree_through_the_folder_source(aclimdb, tmp_path, monkeypatch):
  config = tiny_config(**{"data.source": "folder", "data.root": str(aclimdb),
                          "data.max_length": 32, "data.max_vocab": 5000,
                          "data.cache_dir": str(tmp_path / "cache")})
  config_lib.validate(config)
  data = sources.load(config.data)
  assert data.class_names == ["neg", "pos"]
  assert len(data.train) + len(data.val) == 25000 and len(data.test) == 25000
  assert len(data.val) == 2500
  assert np.bincount(data.test.labels).tolist() == [12500, 12500]
  assert np.bincount(np.concatenate([data.train.labels, data.val.labels])).tolist() \
      == [12500, 12500]
  assert data.train.tokens.shape[1] == 32 and len(data.vocab) == 5000
  assert "movie" in data.vocab[:50]
  # second run: from the cache, without tokenizing
  monkeypatch.setattr(text, "tokenize", lambda *a, **k: 1 / 0)
  again = sources.load(config.data)
  assert again.fingerprint() == data.fingerprint()

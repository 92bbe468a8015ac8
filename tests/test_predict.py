"""jaxreg.predict: a run's workdir alone classifies new inputs exactly as the run did.

A tiny LSTM trained on CSV files of made-up words (not the built-in set: other class
names, lengths and vocabulary) and a tiny ResNet: --split=test reproduces summary.json's
confusion matrix, the test CSV (read as new input, without its labels) gives
predictions_test.npz's predictions, and a copied workdir (the original moved away)
predicts the same; bad input is one line, exit 2.
"""

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import inference as predict, records, sweep, train
from tests.conftest import ROOT, python_env, tiny_config

CLASSES = ("sports/ball", "weather", "food")  # a '/' in a class name, on purpose
CUES = {"sports/ball": ["goal", "match", "team"], "weather": ["rain", "sunny", "wind"],
        "food": ["bread", "soup", "apple"]}
NAMES = sorted(CLASSES)  # the class order of a CSV source: labels by code point
FILLER = "the a of and today very some new old big small red blue".split()


def _rows(n, seed):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    label = CLASSES[i % 3]
    words = list(rng.choice(CUES[label], rng.integers(1, 3))) + list(
        rng.choice(FILLER, rng.integers(0, 12)))
    rng.shuffle(words)
    out.append((" ".join(words) + ("!" if i % 4 == 0 else ""), label))
  return out


def _write_csv(path, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label"])
    w.writerows(rows)
  return str(path)


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("lstm")
  test_file = _write_csv(base / "test.csv", _rows(37, 1))  # 37: a partial last batch
  config = sweep.config_for(tiny_config(), {
      "data.source": "csv", "data.train_file": _write_csv(base / "train.csv", _rows(150, 0)),
      "data.test_file": test_file, "data.max_length": 9, "data.buckets": "4,8",
      "data.cache_dir": "", "data.eval_batch_size": 16, "train.epochs": 3})
  workdir = base / "run"
  train.train_and_evaluate(config, workdir)
  return workdir, test_file


def _confusion(labels, classes, n):
  cm = np.zeros((n, n), int)
  np.add.at(cm, (labels, classes), 1)
  return cm


def test_lstm_split_test_reproduces_the_runs_confusion_matrix(lstm_run):
  workdir, _ = lstm_run
  p = predict.load(workdir)
  labels, probs, classes = predict.predict_split(p, "test")
  summary = records.read_summary(workdir)["test"]
  assert p.class_names == summary["class_names"] == NAMES
  np.testing.assert_array_equal(_confusion(labels, classes, 3),
                                np.asarray(summary["confusion_matrix"]))
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(classes, probs.argmax(1))


def test_workdir_holds_the_vocabulary_and_class_names(lstm_run):
  workdir, _ = lstm_run
  meta = json.loads((workdir / "model.json").read_text())
  vocab = json.loads((workdir / "vocab.json").read_text())
  assert meta["class_names"] == NAMES and meta["family"] == "rnn"
  assert vocab[:2] == ["<pad>", "<unk>"] and "goal" in vocab and "!" in vocab


def test_csv_file_as_new_input_gives_the_runs_test_predictions(lstm_run):
  workdir, test_file = lstm_run
  p = predict.load(workdir)
  shown, items = predict.read_inputs(p, [], [test_file])
  _, classes = predict.predict_items(p, items)
  labels, stored, _ = records.read_predictions(workdir / records.PREDICTIONS_FILE)
  np.testing.assert_array_equal(classes, stored)
  # one text by hand: --text goes through the same tokenizer (lowercase, punctuation)
  _, one = predict.predict_items(p, [shown[5].upper()])
  assert one[0] == stored[5]


def _cli(*args, stdin=None):
  return subprocess.run([sys.executable, "-m", "jaxreg.predict", *args], cwd=ROOT,
                        env=python_env(), input=stdin, capture_output=True, text=True,
                        timeout=300)


def test_copied_workdir_predicts_identically_from_the_command_line(lstm_run, tmp_path):
  workdir, test_file = lstm_run
  copy = tmp_path / "elsewhere" / "run"
  shutil.copytree(workdir, copy)
  aside = workdir.with_name("run.moved")
  workdir.rename(aside)  # nothing may still point at the original path
  try:
    texts = "".join(r[0] + "\n" for r in _rows(37, 1))
    out = _cli(f"--workdir={copy}", "--input=-", "--format=jsonl", stdin=texts)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    out_csv = _cli(f"--workdir={copy}", f"--input={test_file}", "--text=rain rain")
    assert out_csv.returncode == 0, out_csv.stderr
  finally:
    aside.rename(workdir)
  _, stored, _ = records.read_predictions(workdir / records.PREDICTIONS_FILE)
  assert [r["prediction"] for r in rows] == [NAMES[c] for c in stored]
  assert set(rows[0]["probabilities"]) == set(NAMES)
  table = list(csv.reader(io.StringIO(out_csv.stdout)))
  assert table[0] == ["index", "input", "prediction", *(f"p:{c}" for c in NAMES)]
  assert table[1][1] == "rain rain"  # --text first, then the file's rows in order
  assert [r[2] for r in table[2:]] == [NAMES[c] for c in stored]


def test_bad_input_is_one_line_and_exit_2(lstm_run, tmp_path):
  workdir, _ = lstm_run
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "config.json").write_text((workdir / "config.json").read_text())
  shutil.copy(workdir / "model.json", empty / "model.json")
  shutil.copy(workdir / "vocab.json", empty / "vocab.json")
  cases = {
      "no checkpoint": [f"--workdir={empty}", "--text=x"],
      "split": [f"--workdir={workdir}", "--split=dev"],
      "format": [f"--workdir={workdir}", "--text=x", "--format=xml"],
      "nothing": [f"--workdir={workdir}"],
      "no run": [f"--workdir={tmp_path}", "--text=x"],
      "missing input": [f"--workdir={workdir}", f"--input={tmp_path / 'nope.csv'}"],
  }
  for what, args in cases.items():
    out = _cli(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
        what, out.returncode, out.stderr)
    assert out.stdout == "", what


@pytest.mark.slow
def test_resnet_split_test_and_image_files_reproduce_the_run(tmp_path):
  from PIL import Image
  from configs import resnet
  config = resnet.get_config("tiny")
  config.data.cache_dir = ""
  config.data.eval_batch_size = 16  # 10 per class x classes: a partial last batch
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, workdir)
  p = predict.load(workdir)
  meta = json.loads((workdir / "model.json").read_text())
  assert len(meta["mean"]) == len(meta["std"]) == meta["image_shape"][-1]
  labels, _, classes = predict.predict_split(p, "test")
  summary = records.read_summary(workdir)["test"]
  np.testing.assert_array_equal(_confusion(labels, classes, len(p.class_names)),
                                np.asarray(summary["confusion_matrix"]))
  # The test images written as PNG files (lossless) and read back as new input.
  from jaxreg.data import sources
  images = sources.load(config.data).test.images[:20]
  folder = tmp_path / "images"
  folder.mkdir()
  for i, a in enumerate(images):
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(folder / f"{i:03d}.png")
  shown, items = predict.read_inputs(p, [], [str(folder)])
  _, from_files = predict.predict_items(p, items)
  np.testing.assert_array_equal(from_files, classes[:20])
  # jaxreg.export's flax msgpack (params and BatchNorm statistics) predicts the same.
  from jaxreg import exports
  exported = predict.load(exports.export(workdir, tmp_path / "export"))
  _, again = exported.probabilities_images(sources.load(config.data).test.images)
  np.testing.assert_array_equal(again, classes)

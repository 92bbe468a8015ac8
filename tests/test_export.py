"""jaxreg.export: a fine-tuned BERT as a Hugging Face directory that transformers reloads
with jaxreg's logits (no torch: 4.57's Flax loader reads the PyTorch-layout safetensors
with from_pt=True); an RNN as flax msgpack + spec that jaxreg.predict and plain flax
load. Also a BERT workdir predicts its own test split from its saved tokenizer and
HF config (item 1: no pretrained weights are read).
"""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from jaxreg import exports, inference, records, train
from tests.conftest import ROOT, python_env, tiny_config

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
  from tests.test_bert import tiny_bert_config
  base = tmp_path_factory.mktemp("bert")
  config = tiny_bert_config(base, "bert")
  workdir = base / "run"
  train.train_and_evaluate(config, workdir)
  return workdir, config


def test_bert_workdir_moved_without_its_model_dir_predicts_and_evaluates(bert_run,
                                                                          tmp_path):
  from jaxreg.evaluate import evaluate_workdir
  workdir, config = bert_run
  meta = json.loads((workdir / records.MODEL_FILE).read_text())
  assert meta["pretrained"] == config.model.pretrained and meta["pretrained_sha256"]
  saved = workdir / meta["pretrained_dir"]
  assert (saved / "tokenizer.json").exists() and (saved / "config.json").exists()
  assert not any(saved.glob("*.safetensors")) and not any(saved.glob("*.msgpack"))
  moved = tmp_path / "moved"
  shutil.copytree(workdir, moved)
  # The original model directory is gone (the exports below read the workdir's copy).
  shutil.copytree(config.model.pretrained, tmp_path / "model_kept")
  shutil.rmtree(config.model.pretrained)
  try:
    p = inference.load(moved)
    labels, _, classes = inference.predict_split(p, "test")
    evaluation = evaluate_workdir(moved, "test")
  finally:
    shutil.copytree(tmp_path / "model_kept", config.model.pretrained)
  expected = records.read_summary(workdir)["test"]["confusion_matrix"]
  cm = np.zeros((len(p.class_names),) * 2, int)
  np.add.at(cm, (labels, classes), 1)
  np.testing.assert_array_equal(cm, expected)
  assert evaluation["confusion_matrix"] == expected


@pytest.mark.slow
def test_bert_export_reloads_in_transformers_with_identical_logits(bert_run, tmp_path):
  workdir, config = bert_run
  out = tmp_path / "hf"
  exports.export(workdir, out)
  p = inference.load(workdir)
  texts = ["where is the city", "who is the person", "how many year river", "film"]
  split = p.encode(texts)
  batch = {"tokens": split.tokens, "lengths": split.lengths}
  ours, _ = p.model.apply(p.variables, batch, train=False)

  hf = transformers.FlaxAutoModelForSequenceClassification.from_pretrained(
      out, from_pt=True)
  tok = transformers.AutoTokenizer.from_pretrained(out)
  enc = tok(texts, padding=True, return_tensors="np")
  theirs = hf(enc["input_ids"], attention_mask=enc["attention_mask"]).logits
  np.testing.assert_allclose(np.asarray(theirs), np.asarray(ours), rtol=1e-5, atol=1e-5)
  cfg = json.loads((out / "config.json").read_text())
  assert cfg["id2label"] == {str(i): n for i, n in enumerate(p.class_names)}
  assert cfg["label2id"] == {n: i for i, n in enumerate(p.class_names)}


def test_pytorch_names_and_layouts():
  params = {"bert": {"encoder": {"layer": {"0": {"attention": {"self": {"query": {
      "kernel": np.arange(6.0).reshape(2, 3), "bias": np.zeros(3)}}}}}},
      "embeddings": {"word_embeddings": {"embedding": np.ones((5, 2))},
                     "LayerNorm": {"scale": np.ones(2)}}}}
  sd = exports.pytorch_state_dict(params)
  assert sorted(sd) == ["bert.embeddings.LayerNorm.weight",
                        "bert.embeddings.word_embeddings.weight",
                        "bert.encoder.layer.0.attention.self.query.bias",
                        "bert.encoder.layer.0.attention.self.query.weight"]
  np.testing.assert_array_equal(sd["bert.encoder.layer.0.attention.self.query.weight"],
                                np.arange(6.0).reshape(2, 3).T)


@pytest.mark.slow
def test_rnn_export_predicts_and_loads_with_flax_alone(tmp_path):
  config = tiny_config(**{"data.cache_dir": ""})
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, workdir)
  out = tmp_path / "export"
  cmd = subprocess.run([sys.executable, "-m", "jaxreg.export", f"--workdir={workdir}",
                        f"--out={out}"], cwd=ROOT, env=python_env(), capture_output=True,
                       text=True, timeout=300)
  assert cmd.returncode == 0, cmd.stderr
  again = subprocess.run([sys.executable, "-m", "jaxreg.export", f"--workdir={workdir}",
                          f"--out={out}"], cwd=ROOT, env=python_env(),
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 2 and again.stderr.startswith("error: ") and \
      len(again.stderr.strip().splitlines()) == 1
  # jaxreg.predict reads the export like a workdir: the run's test predictions.
  run, exported = inference.load(workdir), inference.load(out)
  data_test = train.setup(config, workdir, checkpoints="later").data.test
  _, a = run.probabilities_text(data_test)
  _, b = exported.probabilities_text(data_test)
  _, stored, _ = records.read_predictions(workdir / records.PREDICTIONS_FILE)
  np.testing.assert_array_equal(a, stored)
  np.testing.assert_array_equal(b, stored)

  # docs/predict.md's ten-line snippet (flax and jaxreg.models only), run as written.
  doc = (ROOT / "docs" / "predict.md").read_text()
  start = doc.index("```python\nimport json, ml_collections")
  code = doc[start + len("```python\n"):doc.index("```", start + 10)]
  assert len(code.strip().splitlines()) <= 10
  sentence = " ".join(exported.vocab[2:9])
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    exec(code.replace("DIR2", str(out)).replace("who wrote hamlet ?", sentence), {})
  _, expected = exported.probabilities_text(exported.encode([sentence]))
  assert printed.getvalue().strip() == exported.class_names[expected[0]]

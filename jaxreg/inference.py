"""Inference with a trained run, from its workdir alone (jaxreg.predict and
jaxreg.export's command lines, and notebooks): `load` restores the model, the
`Predictor` preprocesses as training did and returns class probabilities.

See jaxreg/predict.py (and docs/predict.md) for what is read and how inputs are
preprocessed.
"""

from __future__ import annotations

import csv
import dataclasses
import io as stdio
import json
import sys
import types
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jaxreg import augment, config as config_lib, models, parallel
from jaxreg.data import dataset, files, hf_tokenizer, images as images_lib, sources, text
from jaxreg.train import build, model_files, workdir as workdir_lib

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# jaxreg.export's weights of an RNN or ResNet: a directory holding them predicts too.
EXPORTED_WEIGHTS = "flax_model.msgpack"
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


@dataclasses.dataclass
class Predictor:
  """A run's model restored for inference; `probabilities_*` return float32 [N, C]
  and the predicted class ids int32 [N] (argmax of the logits), in input order."""
  workdir: Path
  config: Any
  meta: dict
  model: Any
  variables: Any
  mesh: Any
  step: int
  vocab: list[str] | None = None
  _fn: Any = None

  @property
  def class_names(self) -> list[str]:
    return list(self.meta["class_names"])

  def _apply(self):
    if self._fn is None:
      image = self.meta["modality"] == "image"
      mean = jnp.asarray(self.meta.get("mean", [0.0]), jnp.float32)
      std = jnp.asarray(self.meta.get("std", [1.0]), jnp.float32)

      def fn(variables, batch):
        if image:
          batch = {**batch, "images": augment.eval_images(batch["images"], mean, std)}
        logits, _ = self.model.apply(variables, batch, train=False)
        return jax.nn.softmax(logits.astype(jnp.float32)), jnp.argmax(logits, -1)

      rep = parallel.replicated(self.mesh)
      self._fn = jax.jit(fn, out_shardings=(rep, rep))
    return self._fn

  def encode(self, texts: list[str]):
    """Texts -> a TextSplit as the training pipeline encodes them (labels 0)."""
    d = self.config.data
    max_length = int(d.max_length)
    if self.vocab is not None:
      ids = {w: i for i, w in enumerate(self.vocab) if i != dataset.PAD_ID}
      seqs = [text.encode(text.tokenize(t, bool(d.lowercase), str(d.punctuation),
                                        bool(d.strip_html)), ids, max_length)
              for t in texts]
    else:
      name = str(self.workdir / self.meta["pretrained_dir"])
      cleaned = [text.remove_html(t) for t in texts] if d.strip_html else list(texts)
      seqs = hf_tokenizer.encode(name, cleaned, max_length)
    return dataset.TextSplit.from_sequences(seqs, np.zeros(len(seqs), np.int32),
                                            max_length)

  def probabilities_text(self, split):
    """A TextSplit -> (probabilities, classes), batched as evaluation batches it."""
    size = int(self.config.data.eval_batch_size)
    buckets = dataset.parse_buckets(self.config.data.buckets,
                                    int(self.config.data.max_length))
    order = np.argsort(split.lengths, kind="stable")
    probs = np.zeros((len(split), len(self.class_names)), np.float32)
    classes = np.zeros(len(split), np.int32)
    for start, batch in zip(range(0, len(order), size),
                            dataset.batches(split, size, order, buckets=buckets)):
      index = order[start:start + size]
      p, c = jax.device_get(self._apply()(self.variables,
                                          parallel.put_batch(batch, self.mesh)))
      probs[index], classes[index] = np.asarray(p)[:len(index)], np.asarray(c)[:len(index)]
    return probs, classes

  def probabilities_images(self, images):
    """uint8 [N, H, W, C] -> (probabilities, classes)."""
    size = int(self.config.data.eval_batch_size)
    probs = np.zeros((len(images), len(self.class_names)), np.float32)
    classes = np.zeros(len(images), np.int32)
    for start in range(0, len(images), size):
      part = images[start:start + size]
      n = len(part)
      if n < size:  # fixed shape: one compiled program; the filler rows are dropped
        part = np.concatenate([part, np.repeat(part[:1], size - n, axis=0)])
      batch = {"images": part, "mask": np.arange(size) < n}
      p, c = jax.device_get(self._apply()(self.variables,
                                          parallel.put_batch(batch, self.mesh)))
      probs[start:start + n] = np.asarray(p)[:n]
      classes[start:start + n] = np.asarray(c)[:n]
    return probs, classes

  def load_images(self, paths: list[Path]):
    """Image files -> uint8 [N, H, W, C] as the folder sources decode and resize them."""
    shape = tuple(self.meta["image_shape"])
    out = []
    for path in paths:
      try:
        a = images_lib.decode(path)
      except Exception as e:  # noqa: BLE001 - PIL raises several types
        raise ValueError(f"{path}: not a readable image ({type(e).__name__})") from None
      if int(self.config.data.image_size) and a.shape[:2] != shape[:2]:
        a = images_lib.resize(a, int(self.config.data.image_size))
      if a.shape[-1] == 1 and shape[-1] == 3:
        a = np.repeat(a, 3, axis=-1)
      if a.shape != shape:
        raise ValueError(f"{path}: image of shape {a.shape}, the model takes {shape} "
                         "(the run's data.image_size is 0: no resizing)")
      out.append(a)
    return np.stack(out).astype(np.uint8)


def load(workdir, checkpoint: str = "best", devices=None) -> Predictor:
  """The run in `workdir` ready to predict (its files only; no training data)."""
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"--workdir={workdir} is not a directory written by "
                            "jaxreg.main")
  config = workdir_lib.run_config(workdir)
  meta = model_files.read(workdir)
  if meta is None:
    raise FileNotFoundError(f"{workdir / 'model.json'} not found: the run was written "
                            "before jaxreg saved what predicting needs; rerun it")
  vocab = model_files.read_vocab(workdir, meta) if "vocab_file" in meta else None
  # The workdir's tokenizer and model config (no weights: the checkpoint has them).
  model_files.localize(config, workdir, meta)
  mesh = parallel.make_mesh(devices)
  with config_lib.as_config_error():
    parallel.check_batch_size("data.eval_batch_size", config.data.eval_batch_size, mesh)
  sized = types.SimpleNamespace(vocab=vocab, num_classes=len(meta["class_names"]),
                                class_names=meta["class_names"])
  model = models.from_config(config, sized)
  weights = workdir / EXPORTED_WEIGHTS
  if weights.exists() and not (workdir / "checkpoints").is_dir():  # jaxreg.export's
    variables = serialization.msgpack_restore(weights.read_bytes())
    return Predictor(workdir, config, meta, model,
                     parallel.put_replicated(variables, mesh), mesh, -1, vocab)
  ckpt = build.make_checkpointer(config, workdir, read_only=True)
  try:
    step = ckpt.named_step(checkpoint)
    state, _ = ckpt.restore(step, None)  # the tree as saved: no optimizer to rebuild
  finally:
    ckpt.close()
  variables = parallel.put_replicated(
      {"params": state["params"], **(state.get("model_state") or {})}, mesh)
  return Predictor(workdir, config, meta, model, variables, mesh, step, vocab)


def predict_split(p: Predictor, split: str):
  """(labels, probabilities, classes) of the run's own `split` (its data source)."""
  with config_lib.as_config_error():
    data = sources.load(p.config.data)
  if list(data.class_names) != p.class_names or (
      p.vocab is not None and list(data.vocab) != p.vocab):
    raise config_lib.ConfigError(
        f"the data source of {p.workdir} now gives other classes or another "
        "vocabulary than the run trained on (data.* files changed?)")
  part = data.split(split)
  if p.meta["modality"] == "image":
    probs, classes = p.probabilities_images(part.images)
  else:
    probs, classes = p.probabilities_text(part)
  return part.labels, probs, classes


def _table_suffix(path: Path) -> str:
  """'.csv' for data.csv and data.csv.gz (gzip files are read through)."""
  suffixes = [x.lower() for x in path.suffixes]
  if suffixes and suffixes[-1] == ".gz":
    suffixes.pop()
  return suffixes[-1] if suffixes else ""


def read_inputs(p: Predictor, texts: list[str], inputs: list[str], stdin=None):
  """(names shown in the output, texts or image paths) of the flags' inputs."""
  image = p.meta["modality"] == "image"
  if image and texts:
    raise ValueError("--text: this run classifies images; give --input=IMAGE|FOLDER")
  shown, items = list(texts), list(texts)
  for spec in inputs:
    if spec == "-":
      if image:
        raise ValueError("--input=-: this run classifies images; give files or folders")
      lines = [line.rstrip("\r\n") for line in (stdin or sys.stdin)]
      lines = [line for line in lines if line.strip()]
      shown += lines
      items += lines
      continue
    path = Path(spec).expanduser()
    if not path.exists():
      raise FileNotFoundError(f"--input={spec}: no such file or folder")
    if image:
      found = (sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
               if path.is_dir() else [path])
      if not found:
        raise ValueError(f"--input={spec}: no {'/'.join(IMAGE_SUFFIXES)} files")
      shown += [str(f) for f in found]
      items += found
    elif path.is_dir():
      raise ValueError(f"--input={spec} is a folder; text runs take files or -")
    elif _table_suffix(path) in TABLE_SUFFIXES:
      rows = files.read_texts(path, p.config.data, TABLE_SUFFIXES[_table_suffix(path)])
      shown += rows
      items += rows
    else:
      lines = [line for line in files.read_text(path).splitlines() if line.strip()]
      shown += lines
      items += lines
  if not items:
    raise ValueError("nothing to predict: give --text, --input or --split")
  return shown, items


def predict_items(p: Predictor, items):
  if p.meta["modality"] == "image":
    return p.probabilities_images(p.load_images(items))
  return p.probabilities_text(p.encode(items))


def format_rows(class_names, shown, probs, classes, labels=None, fmt: str = "csv") -> str:
  """The output table (see the module docstring)."""
  out = stdio.StringIO()
  if fmt == "csv":
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "input", *(["label"] if labels is not None else []),
                     "prediction", *(f"p:{c}" for c in class_names)])
  for i, (name, pr, c) in enumerate(zip(shown, probs, classes)):
    label = [] if labels is None else [class_names[int(labels[i])]]
    if fmt == "csv":
      writer.writerow([i, name, *label, class_names[int(c)],
                       *(f"{float(v):.6g}" for v in pr)])
    else:
      row = {"index": i, "input": str(name)}
      if labels is not None:
        row["label"] = label[0]
      row["prediction"] = class_names[int(c)]
      row["probabilities"] = {n: float(f"{float(v):.6g}") for n, v in zip(class_names, pr)}
      out.write(json.dumps(row, ensure_ascii=False) + "\n")
  return out.getvalue()

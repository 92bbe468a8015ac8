"""What a workdir holds to use its model without the training data: model.json, and
vocab.json (word-level text) or pretrained/ (a Hugging Face tokenizer and model config,
no weights: the checkpoint holds them).

Written once at the start of a run (process 0, after config.json), each file atomically
and model.json last, so its presence means the others are complete. Everything is named
relative to the workdir, so a copied or moved workdir keeps working (jaxreg.predict).

model.json: {"version", "family", "modality" ('text' | 'image'), "class_names",
  text: "vocab_file" or "pretrained_dir", "max_length"; BERT: "pretrained" (as given:
  a hub name, a directory, or `package:MODULE/SUBDIR`, never the path it resolved to)
  and "pretrained_sha256" (its config and weight files), "tokenizer_sha256";
  image: "image_shape" [H, W, C], "mean", "std" (the eval normalization, per channel);
  model.init_from: "upstream" {"init_from", "workdir", "step", "config_sha256"}}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from jaxreg import distributed, io, pretrained, records

VERSION = 1


def pretrained_sha256(name: str) -> str | None:
  """sha256 over a local Hugging Face directory's config and weight files (None for
  a hub name): which pretrained model a run started from, wherever it lived."""
  path = Path(pretrained.resolve(name))
  if not path.is_dir():
    return None
  h = hashlib.sha256()
  for f in sorted(path.iterdir()):
    if f.is_file() and (f.suffix in (".json", ".safetensors", ".msgpack", ".bin")):
      h.update(f.name.encode() + b"\0")
      with f.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
          h.update(chunk)
  return h.hexdigest()


def describe(config, data, feed) -> dict:
  """model.json's content for a run of `config` on `data` (its feed: image stats)."""
  image = hasattr(data, "image_shape")
  meta = {"version": VERSION, "family": str(config.model.family),
          "modality": "image" if image else "text",
          "class_names": list(data.class_names)}
  if image:
    meta.update(image_shape=list(data.image_shape),
                mean=[float(v) for v in feed.mean], std=[float(v) for v in feed.std])
    return meta
  meta["max_length"] = int(config.data.max_length)
  if str(config.data.get("tokenizer", "word")) == "word":
    meta["vocab_file"] = records.VOCAB_FILE
  else:
    from jaxreg.data import hf_tokenizer  # noqa: PLC0415 - transformers is slow to import
    meta["pretrained_dir"] = records.PRETRAINED_DIR
    meta["tokenizer_sha256"] = hf_tokenizer.identity(str(config.data.tokenizer))
  if config.model.family == "bert":
    meta["pretrained"] = str(config.model.pretrained)
    meta["pretrained_sha256"] = pretrained_sha256(str(config.model.pretrained))
  return meta


def write(config, workdir, data, feed, upstream: dict | None = None) -> None:
  """Writes the files (process 0; nothing when model.json exists: a resumed run).
  `upstream`: the run model.init_from started from (jaxreg.train.transfer), recorded
  as "upstream"."""
  workdir = Path(workdir)
  if not distributed.is_main() or (workdir / records.MODEL_FILE).exists():
    return
  meta = describe(config, data, feed)
  if upstream is not None:
    meta["upstream"] = upstream
  if "vocab_file" in meta:
    io.atomic_write(workdir / records.VOCAB_FILE,
                    json.dumps(list(data.vocab), ensure_ascii=False) + "\n")
  if "pretrained_dir" in meta:
    _write_pretrained(config, workdir / records.PRETRAINED_DIR)
  io.atomic_write_json(workdir / records.MODEL_FILE, meta)


def _write_pretrained(config, target: Path) -> None:
  """The tokenizer (save_pretrained) and the model's config as given (not resized to
  the classes: models.bert.hf_config does that again) into a temporary directory,
  renamed into place: a killed write leaves no half directory."""
  from transformers import AutoConfig  # noqa: PLC0415
  from jaxreg.data import hf_tokenizer  # noqa: PLC0415
  for left in target.parent.glob(f".{target.name}.*.tmp"):  # a killed run's (we hold
    shutil.rmtree(left, ignore_errors=True)                 # the workdir's lock)
  tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
  try:
    hf_tokenizer.load(str(config.data.tokenizer)).save_pretrained(tmp)
    if config.model.family == "bert":
      AutoConfig.from_pretrained(pretrained.resolve(str(config.model.pretrained))
                                 ).save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)  # left by a run killed before model.json
    os.replace(tmp, target)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def read(workdir) -> dict | None:
  """model.json of `workdir`, or None when the run was written before it existed."""
  path = Path(workdir) / records.MODEL_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def localize(config, workdir, meta: dict | None) -> None:
  """Points `config`'s Hugging Face tokenizer and BERT model at the workdir's own copy
  (pretrained/: same tokenizer content, the model's config without weights), so that a
  moved workdir evaluates and predicts without the original directory: the weights come
  from the checkpoint. A run written before model.json keeps its paths."""
  if not meta or "pretrained_dir" not in meta:
    return
  saved = str(Path(workdir) / meta["pretrained_dir"])
  config.data.tokenizer = saved
  if config.model.family == "bert":
    config.model.pretrained = saved


def read_vocab(workdir, meta: dict) -> list[str]:
  return json.loads((Path(workdir) / meta["vocab_file"]).read_text())

"""Exports of a trained run (the library behind `python -m jaxreg.export`, whose
docstring says what is written): `export(workdir, out)`, `pytorch_state_dict(params)`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jax
import numpy as np
from flax import serialization
from flax.traverse_util import flatten_dict

from jaxreg import inference, records
from jaxreg.models import bert


def pytorch_state_dict(params: dict) -> dict:
  """A transformers Flax params tree -> {PyTorch key: np.ndarray}: the inverse of
  transformers.modeling_flax_pytorch_utils.rename_key_and_reshape_tensor (its own
  Flax-to-PyTorch direction needs a torch model): dense kernels are transposed to
  [out, in], LayerNorm scales and embeddings become `weight`, paths join with '.'."""
  out = {}
  for path, value in flatten_dict(params).items():
    value = np.asarray(value, np.float32)
    *head, leaf = path
    if leaf == "kernel":
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
      leaf = "weight"
    elif leaf in ("scale", "embedding"):
      leaf = "weight"
    out[".".join([*head, leaf])] = np.ascontiguousarray(value)
  return out


def export(workdir, out, checkpoint: str = "best") -> Path:
  """Writes the export of `workdir`'s run into `out` (see the module docstring)."""
  out = Path(out)
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise FileExistsError(f"--out={out} exists and is not empty; give a new directory")
  p = inference.load(workdir, checkpoint)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir()
  try:
    if p.config.model.family == "bert":
      _write_hugging_face(p, tmp)
    else:
      _write_flax(p, tmp)
    if out.exists():
      out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out


def _write_hugging_face(p, tmp: Path) -> None:
  # Here: only BERT exports need them, and transformers takes seconds to import.
  from safetensors.numpy import save_file
  from transformers import AutoTokenizer
  names = p.class_names
  cfg = bert.hf_config(p.config.model, len(names))  # the run's classes and dropout
  cfg.id2label = dict(enumerate(names))
  cfg.label2id = {n: i for i, n in enumerate(names)}
  cfg.save_pretrained(tmp)
  params = jax.device_get(p.variables["params"])
  # metadata format 'pt': transformers' PyTorch loader refuses safetensors without it.
  save_file(pytorch_state_dict(params), str(tmp / "model.safetensors"),
            metadata={"format": "pt"})
  AutoTokenizer.from_pretrained(str(p.workdir / p.meta["pretrained_dir"])
                                ).save_pretrained(tmp)


def _write_flax(p, tmp: Path) -> None:
  (tmp / inference.EXPORTED_WEIGHTS).write_bytes(
      serialization.msgpack_serialize(jax.device_get(p.variables)))
  names = ["config.json", records.MODEL_FILE]
  if "vocab_file" in p.meta:
    names.append(p.meta["vocab_file"])
  for name in names:
    shutil.copy(p.workdir / name, tmp / name)

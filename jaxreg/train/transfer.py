"""model.init_from=DIR[:best|latest|STEP]: start a run from another jaxreg run.

The upstream run's workdir holds everything needed (docs/workdir.md): config.json (its
architecture), model.json, vocab.json or pretrained/ (its preprocessing) and its
checkpoints (its weights). Three steps, each in the one place that needs it:

* `adopt(config)` (before a run's config is validated and written): the downstream
  config with the upstream preprocessing the weights depend on taken over: a Hugging
  Face tokenizer and BERT config (data.tokenizer, model.pretrained -> DIR/pretrained),
  the image size (data.image_size). A downstream setting that contradicts the upstream
  run (any model.* key but the dropout rates, dtype, hoist_input and
  freeze_embeddings; the word-level tokenizer settings; data.normalize; an explicit other image size,
  tokenizer or pretrained model) is a one-line ConfigError naming the key.
* `preprocessing(config, workdir)` (setup): the vocabulary to encode text with (the
  RNN's embedding rows are upstream token ids) and the images' normalization
  statistics, read from the run's own model.json once it has one (a resumed or
  evaluated run), else from the upstream workdir. `check_data` then compares the
  loaded data with the upstream run's (image shape, a generated vocabulary).
* `load_weights` (setup, training only): every parameter and model state (BatchNorm
  statistics) of the upstream checkpoint except the head (`Model.head`), which keeps
  its fresh initialization for this run's classes; a missing or differently shaped
  parameter is a one-line ConfigError naming its path and both shapes.

`Upstream.record()` (the path as given, the resolved workdir and step, a hash of the
upstream config) goes into summary.json and model.json as "upstream".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxreg import checkpoint, config as config_lib, records
from jaxreg.config import ConfigError
from jaxreg.train import model_files

NAMES = ("best", "latest")
# model.* keys that may differ from the upstream run's: they change training, not the
# shapes or meaning of the weights.
MAY_DIFFER = ("model.init_from", "model.dtype", "model.hoist_input",
              "model.freeze_embeddings",
              "model.embeddings_format", "model.resnet.dropout_rate",
              "model.resnet.dropout_layers", "model.pretrained", "model.embeddings_file")
MAY_DIFFER_PREFIXES = ("model.dropout.",)
# Word-level text settings that decide which upstream id a word gets.
WORD_SETTINGS = ("data.lowercase", "data.punctuation", "data.strip_html")
KEY = "model.init_from"


@dataclasses.dataclass(frozen=True)
class Upstream:
  spec: str            # model.init_from as given
  workdir: Path
  checkpoint: str      # best | latest | STEP
  config: dict         # its config.json
  meta: dict           # its model.json

  @property
  def config_sha256(self) -> str:
    return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()

  def flat_config(self) -> dict:
    return config_lib.flatten(self.config)


def parse(spec: str) -> tuple[Path, str]:
  """'DIR[:best|latest|STEP]' -> (DIR, checkpoint name; 'best' by default)."""
  head, sep, tail = spec.rpartition(":")
  if sep and (tail in NAMES or tail.isdigit()):
    return Path(head).expanduser(), tail
  return Path(spec).expanduser(), "best"


def open_upstream(spec: str) -> Upstream:
  """The upstream run of model.init_from=`spec` (its files read; ConfigError when it
  is not a finished jaxreg workdir with model.json)."""
  workdir, name = parse(spec)
  path = workdir / "config.json"
  if not path.is_file():
    raise ConfigError(f"{KEY}={spec!r}: {path} not found; give the workdir of a "
                      "jaxreg run, optionally :best, :latest or :STEP")
  meta = model_files.read(workdir)
  if meta is None:
    raise ConfigError(f"{KEY}={spec!r}: {workdir / records.MODEL_FILE} not found (the "
                      "run was written before jaxreg saved its preprocessing); rerun it")
  return Upstream(spec, workdir, name, json.loads(path.read_text()), meta)


# The keys `adopt` sets from the upstream run.
ADOPTED = ("data.tokenizer", "model.pretrained", "data.image_size")


def adopt(config, workdir=None):
  """`config` with the upstream preprocessing taken over (a copy; `config` itself
  when model.init_from is empty). ConfigError on a contradicting setting.

  `workdir`: the run's own workdir. Once it holds a run of this model.init_from (its
  config.json and a model.json recording the upstream), the adopted keys are read from
  its config.json: a started run resumes without the upstream workdir (and any other
  difference is the workdir check's error)."""
  spec = str(config.model.get("init_from", "") or "")
  if not spec:
    return config
  own = _own_run(workdir, spec)
  if own is not None:
    out = config.copy_and_resolve_references()
    for key in ADOPTED:
      section, leaf = key.split(".")
      if leaf in own.get(section, {}):
        out[section][leaf] = own[section][leaf]
    return out
  up = open_upstream(spec)
  out = config.copy_and_resolve_references()
  flat_up = up.flat_config()
  flat = config_lib.flatten(json.loads(out.to_json()))
  where = up.workdir / "config.json"

  def conflict(key, value, upstream_value, hint=""):
    hint = hint or f"; set {key}={upstream_value!r} or drop it"
    return ConfigError(f"{KEY}={spec!r}: {key}={value!r} differs from the upstream "
                       f"run's {upstream_value!r} ({where}){hint}")

  for key in sorted(k for k in flat if k.startswith("model.") and k in flat_up):
    if key in MAY_DIFFER or key.startswith(MAY_DIFFER_PREFIXES):
      continue
    if flat[key] != flat_up[key]:
      raise conflict(key, flat[key], flat_up[key])
  if out.model.embeddings_file:
    raise ConfigError(f"{KEY}={spec!r} and model.embeddings_file="
                      f"{out.model.embeddings_file!r} both set the embedding table; "
                      "drop model.embeddings_file")
  image = up.meta["modality"] == "image"
  if image:
    for key in ("data.normalize",):
      if key in flat_up and flat[key] != flat_up[key]:
        raise conflict(key, flat[key], flat_up[key])
    size, up_size = int(out.data.image_size), int(flat_up.get("data.image_size", 0))
    if size and size != up_size:
      raise conflict("data.image_size", size, up_size,
                     "; the weights were trained at that size: drop the override")
    out.data.image_size = up_size
    return out
  if "vocab_file" in up.meta:  # word-level: the ids come from the upstream vocabulary
    if str(out.data.tokenizer) != "word":
      raise conflict("data.tokenizer", str(out.data.tokenizer), "word")
    for key in WORD_SETTINGS:
      if key in flat_up and flat[key] != flat_up[key]:
        raise conflict(key, flat[key], flat_up[key])
    return out
  # A Hugging Face tokenizer (and BERT's model config): the upstream workdir's copy.
  saved = str((up.workdir / up.meta["pretrained_dir"]).resolve())
  given = str(out.data.tokenizer)
  if given not in ("word", str(flat_up.get("data.tokenizer")), str(out.model.pretrained)):
    raise conflict("data.tokenizer", given, flat_up.get("data.tokenizer"),
                   "; the upstream tokenizer is taken over: drop the override")
  if out.model.family == "bert" and str(out.model.pretrained) not in (
      "", str(flat_up.get("model.pretrained"))) and \
      model_files.pretrained_sha256(str(out.model.pretrained)) != \
      up.meta.get("pretrained_sha256"):
    raise conflict("model.pretrained", str(out.model.pretrained),
                   flat_up.get("model.pretrained"),
                   "; the upstream model is taken over: leave model.pretrained empty")
  out.data.tokenizer = saved
  if out.model.family == "bert":
    out.model.pretrained = saved
  return out


def _own_run(workdir, spec: str) -> dict | None:
  """The config.json of `workdir` when it holds a run started from `spec`, else None."""
  if workdir is None:
    return None
  meta = model_files.read(workdir)
  path = Path(workdir) / "config.json"
  if not meta or "upstream" not in meta or not path.is_file():
    return None
  saved = json.loads(path.read_text())
  return saved if saved.get("model", {}).get("init_from") == spec else None


def started_from(workdir) -> dict | None:
  """The upstream record of a run in `workdir` that has started (model.json records
  it and a checkpoint exists: its weights come from there), else None."""
  meta = model_files.read(workdir) if workdir is not None else None
  ckpts = Path(workdir) / "checkpoints" if workdir is not None else None
  if not meta or "upstream" not in meta or not ckpts.is_dir():
    return None
  if not any(p.name.isdigit() for p in ckpts.iterdir()):
    return None
  return meta["upstream"]


# ----------------------------------------------------------------- preprocessing


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  vocab: list[str] | None                       # word-level text
  normalization: tuple[list, list] | None       # images: (mean, std) per channel
  meta: dict                                    # the model.json read


def preprocessing(config, workdir=None) -> Preprocessing | None:
  """What the weights of model.init_from need of the data: from the run's own
  model.json when it has one (the same content, written from the upstream's), else
  from the upstream workdir; None without model.init_from."""
  spec = str(config.model.get("init_from", "") or "")
  if not spec:
    return None
  own = model_files.read(workdir) if workdir is not None else None
  source, meta = (Path(workdir), own) if own is not None else (parse(spec)[0], None)
  if meta is None:
    meta = open_upstream(spec).meta
  vocab = model_files.read_vocab(source, meta) if "vocab_file" in meta else None
  norm = (meta["mean"], meta["std"]) if meta.get("modality") == "image" else None
  return Preprocessing(vocab, norm, meta)


def check_data(config, data, pre: Preprocessing) -> None:
  """The loaded data fits the upstream weights (ConfigError naming the key)."""
  spec = config.model.init_from
  if pre.meta.get("modality") == "image":
    shape = list(pre.meta["image_shape"])
    if list(data.image_shape) != shape:
      raise ConfigError(f"{KEY}={spec!r}: the images of data.source={config.data.source!r}"
                        f" are {list(data.image_shape)}, the upstream model's "
                        f"{shape}: set data.image_size={shape[0]}")
  elif pre.vocab is not None and list(data.vocab) != list(pre.vocab):
    raise ConfigError(f"{KEY}={spec!r}: data.source={config.data.source!r} brings its "
                      f"own vocabulary ({len(data.vocab)} entries), not the upstream "
                      f"run's ({len(pre.vocab)}): the embedding rows would mean other "
                      "words")


# ----------------------------------------------------------------------- weights


def load_weights(config, params, model_state: dict, head: str
                 ) -> tuple[dict, dict, dict]:
  """(params, model_state, record): the upstream checkpoint's parameters and model
  state in place of `params`' and `model_state`'s, except the parameters matching the
  regex `head` (kept as initialized). ConfigError names the first parameter that is
  missing on either side or differs in shape."""
  spec = str(config.model.init_from)
  up = open_upstream(spec)
  ckpt = checkpoint.Checkpointer(up.workdir / "checkpoints", read_only=True)
  try:
    try:
      step = ckpt.named_step(up.checkpoint)
    except FileNotFoundError:
      raise ConfigError(f"{KEY}={spec!r}: no checkpoint in "
                        f"{up.workdir / 'checkpoints'}") from None
    except ConfigError:
      raise ConfigError(f"{KEY}={spec!r}: checkpoint {up.checkpoint!r} is not one of: "
                        f"best, latest, {', '.join(map(str, ckpt.all_steps()))}") from None
    state, _ = ckpt.restore(step, None)  # the tree as saved
  finally:
    ckpt.close()
  is_head = re.compile(head).search
  new_params = _merge(spec, "parameter", params, state["params"], is_head)
  saved_state = state.get("model_state") or {}
  new_state = {name: _merge(spec, name, tree, saved_state.get(name, {}), is_head)
               for name, tree in model_state.items()}
  record = {"init_from": spec, "workdir": str(up.workdir.resolve()), "step": int(step),
            "config_sha256": up.config_sha256}
  return new_params, new_state, record


def _merge(spec: str, what: str, ours, theirs, is_head):
  ours_flat = {"/".join(map(str, k)): v for k, v in flatten_dict(dict(ours)).items()}
  theirs_flat = {"/".join(map(str, k)): v for k, v in flatten_dict(dict(theirs)).items()}
  out = {}
  for path, value in ours_flat.items():
    if is_head(path):
      out[path] = value
      continue
    if path not in theirs_flat:
      raise ConfigError(f"{KEY}={spec!r}: {what} {path} {tuple(value.shape)} is not in "
                        "the upstream checkpoint (another architecture?)")
    up = np.asarray(theirs_flat[path])
    if tuple(up.shape) != tuple(value.shape):
      raise ConfigError(f"{KEY}={spec!r}: {what} {path} has shape "
                        f"{tuple(value.shape)} here but {tuple(up.shape)} upstream")
    out[path] = jnp.asarray(up, value.dtype)
  extra = sorted(p for p in theirs_flat if p not in ours_flat and not is_head(p))
  if extra:
    raise ConfigError(f"{KEY}={spec!r}: upstream {what} {extra[0]} has no place in "
                      "this model (another architecture?)")
  return unflatten_dict({tuple(k.split("/")): v for k, v in out.items()})

"""Every config key jaxreg reads: its default (hence its type), its rule and its doc.

`KEYS` is the one place a key is defined. `get_base_config()` builds the base
ConfigDict from it (config files in configs/ import it and override what they need),
`validate()` applies every key's rule and then `CROSS_KEY_RULES`, and the config
reference (docs/config.md, `python -m jaxreg.config`) is generated from it.

The lists of allowed values are defined here, once: this package imports only
ml_collections and jaxreg.data.catalog (every command's `--help` stays fast, and config sits below everything
that reads it), so the modules that act on a value (optim.py, models/, metrics.py,
data/) cannot be imported for their lists; tests/test_config.py checks that each of
them implements every allowed value.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from jaxreg.config.rules import (RATE, Bool, ConfigError, Custom, Int, Num, OneOf,
                                 Regex, Rule, Str, near_miss)
# data.source values and modalities are listed once, in jaxreg/data/catalog.py (which,
# like this package, imports nothing heavy); jaxreg.config re-exports them.
from jaxreg.data import catalog as _catalog
from jaxreg.data.catalog import (FILE_SOURCES, IMAGE_SOURCES, SOURCES, TFDS_IMAGE_BUILTINS,
                                 TFDS_PREFIX)

# ------------------------------------------------------------------ allowed values

FAMILIES = ("rnn", "bert", "resnet")       # jaxreg/models/__init__.py: from_config
IMAGE_FAMILIES = ("resnet",)               # the families that read images
MODEL_DTYPES = ("float32", "bfloat16")     # models/bert.py, resnet.py, rnn.py
CELLS = ("rnn", "gru", "lstm")             # models/rnn.py
HOISTED_CELLS = ("lstm", "gru")            # models/rnn_hoisted.py: HOISTED
POOLINGS = ("last", "mean", "max", "attention")
RESNET_DEPTHS = (10, 18, 34, 50)           # models/resnet.py
RESNET_STEMS = ("cifar", "imagenet")
RESNET_NORMS = ("batch", "none", "nf")
RESNET_DROPOUT_LAYERS = (0, 1, 2, 3)
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adadelta", "adagrad")
SCHEDULES = ("constant", "cosine", "warmup_linear", "warmup_cosine", "step")
DECAY_MODES = ("lr_scaled", "independent")  # jaxreg/optim.py
CHECKPOINT_METRICS = (                     # jaxreg/metrics.py: summarize
    "accuracy", "balanced_accuracy", "macro_f1", "worst_class_accuracy", "loss")
ES_MODES = ("min", "max")
FINAL_CHECKPOINTS = ("best", "latest")
PUNCTUATION = ("split", "strip", "keep")   # data/text.py
STREAM_MODES = ("auto", "always", "never")  # data/stream.py: resident or streamed images
SHAPES_LABELS = ("colour_or_shape", "colour_and_shape")  # data/shapes.py LABELS
EMBEDDINGS_FORMATS = ("auto", "word2vec_bin", "word2vec_text", "glove")
TRACKERS = ("tensorboard", "wandb", "mlflow")   # jaxreg/trackers.py
# The packages of each optional tracker (pyproject's `trackers` extra).
TRACKER_MODULES = {"wandb": "wandb", "mlflow": "mlflow"}
TRACKERS_EXTRA = "pip install 'jaxreg[trackers]'"
DECAY_MASK_FORMS = ("'ndim>1'", "'all'", "'none'",
                    "'REGEX=true|false,REGEX=true|false,...'")


# --------------------------------------------------------------- rules of one key


def _source(key: str, value: Any) -> None:
  if isinstance(value, str) and value.startswith(TFDS_PREFIX):
    if not value[len(TFDS_PREFIX):].strip():
      raise ConfigError(f"{key}={value!r} names no dataset; use tfds:NAME, e.g. "
                        "tfds:trec, tfds:glue/sst2")
    return
  if value not in SOURCES:
    raise ConfigError(f"{key}={value!r} is not one of: {', '.join(SOURCES)}, tfds:NAME")


def _buckets(key: str, value: Any) -> None:
  """Comma-separated increasing integers >= 1, or '' (data/dataset.py: parse_buckets)."""
  spec = str(value).strip()
  if not spec:
    return
  try:
    values = [int(v) for v in spec.split(",")]
  except ValueError:
    values = []
  if not values or min(values) < 1 or any(b <= a for a, b in zip(values, values[1:])):
    raise ConfigError(f"{key}={spec!r} must be comma-separated increasing integers "
                      ">= 1 (or empty: no bucketing)")


def _max_vocab(key: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value in (1, 2):
    raise ConfigError(f"{key}={value!r} must be 0 (unlimited) or an integer >= 3 (it "
                      "counts <pad> and <unk>)")


def _folds(key: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value == 1 or value < 0:
    raise ConfigError(f"{key}={value!r} must be 0 (hold out data.val_fraction) or an "
                      "integer >= 2 (k-fold)")


def _val_fraction(key: str, value: Any) -> None:
  RATE.check(key, value)
  if value == 0:
    raise ConfigError(f"{key}=0 leaves no validation split; use a fraction in (0, 1)")


def _names(key: str, value: Any) -> None:
  """Comma-separated names, none twice ('' = the default order)."""
  Str().check(key, value)
  listed = [s.strip() for s in value.split(",") if s.strip()]
  if len(set(listed)) != len(listed):
    raise ConfigError(f"{key}={value!r} lists a class twice")


def _rate_or_checkpoints(key: str, value: Any) -> None:
  if value != -1 and not (isinstance(value, (int, float)) and 0 <= value < 1):
    raise ConfigError(f"{key}={value!r} must be a rate in [0, 1), or -1 for the "
                      "checkpoint's own rate")


def _trackers(key: str, value: Any) -> None:
  """Comma-separated names from TRACKERS, none twice, each one's package installed:
  found without importing it (importlib.util.find_spec), so validation stays fast and
  a missing package stops the run before anything is written."""
  import importlib.util  # here: only this rule needs it

  Str().check(key, value)
  listed = [s.strip() for s in value.split(",") if s.strip()]
  for name in listed:
    if name not in TRACKERS:
      raise ConfigError(f"{key}={value!r}: {name!r} is not one of: "
                        f"{', '.join(TRACKERS)}{near_miss(name, TRACKERS)}")
  if len(set(listed)) != len(listed):
    raise ConfigError(f"{key}={value!r} lists a tracker twice")
  for name in listed:
    module = TRACKER_MODULES.get(name)
    if module and importlib.util.find_spec(module) is None:
      raise ConfigError(f"{key}={value!r}: {name} is not installed; "
                        f"{TRACKERS_EXTRA}")


def _bn_stages(key: str, value: Any) -> None:
  stages = str(value).strip()
  if stages != "all" and any(p.strip() not in ("0", "1", "2", "3")
                             for p in stages.split(",") if p.strip()):
    raise ConfigError(f"{key}={value!r} must be 'all' or comma-separated stage "
                      "indices from 0, 1, 2, 3 ('' = none)")


def parse_decay_mask(spec: Any, key: str = "reg.decay_mask"):
  """reg.decay_mask -> 'ndim>1' | 'all' | 'none' | [(compiled regex, bool), ...].

  The forms are in the key's doc; jaxreg/optim.py: decay_mask applies them."""
  bad = ConfigError(f"{key}={spec!r} is not one of: " + ", ".join(DECAY_MASK_FORMS))
  if not isinstance(spec, str):
    raise bad
  compact = spec.replace(" ", "").lower()
  if compact in ("ndim>1", "all", "none"):
    return compact
  if not spec.strip():
    raise bad
  rules = []
  for item in spec.split(","):
    if "=" not in item:
      raise bad
    pattern, value = item.rsplit("=", 1)
    value = value.strip().lower()
    if value not in ("true", "false"):
      raise bad
    try:
      regex = re.compile(pattern.strip())
    except re.error as e:
      raise ConfigError(f"{key}={spec!r}: invalid regex {pattern.strip()!r} ({e}); "
                        "allowed forms: " + ", ".join(DECAY_MASK_FORMS)) from None
    rules.append((regex, value == "true"))
  return rules


# AdamW is Adam plus decoupled decay; optax.adamw is not used (module doc of optim.py).
_ADAMW = ("AdamW is optim.name=adam with reg.weight_decay > 0 (reg.weight_decay_mode="
          "lr_scaled: the decay is scaled by the learning rate)")


# ------------------------------------------------------------------------ the keys


@dataclasses.dataclass(frozen=True)
class Key:
  """One config key: dotted name, default (its type is the key's type), rule, doc."""
  name: str
  default: Any
  rule: Rule
  doc: str

  @property
  def type(self) -> str:
    return type(self.default).__name__


@dataclasses.dataclass(frozen=True)
class Section:
  """A nested ConfigDict (data.augment, ...) and what its keys are about."""
  name: str
  doc: str


NONNEG = Num(0.0)
POSITIVE = Num(0.0, lo_open=True)
UNIT = Num(0.0, 1.0, hi_open=True)

KEYS = (
    Key("seed", 0, Int(None),
        "parameter init, dropout and data order. Does not move the validation split."),

    Section("data", "Where the examples come from, how they are split and batched."),
    Key("data.source", "synthetic", Custom(_source, "one of: " + ", ".join(
        f"`{s}`" for s in SOURCES) + ", or `tfds:NAME`"),
        "where the data comes from: `synthetic` (the built-in offline set), `csv`, "
        "`tsv`, `jsonl`, `folder`, or `tfds:NAME` (docs/data.md); images: "
        "`shapes` (generated), `image_folder`, `tfds:cifar10` and other TFDS image sets "
        "(docs/images.md)."),
    Key("data.split_seed", 0, Int(None),
        "which training examples are held out for validation (stratified). Fixed when "
        "`seed` changes, so runs that differ in seed share their split."),
    Key("data.val_fraction", 0.1, Custom(_val_fraction, "in (0, 1)"),
        "fraction of each class held out of train for validation. Not used when "
        "`data.folds` >= 2."),
    Key("data.folds", 0, Custom(_folds, "0, or an integer >= 2"),
        "k-fold validation: >= 2 splits train into this many stratified folds (by "
        "`split_seed`: each class dealt evenly, fold sizes within one) and validates on "
        "fold `data.fold`, training on the others; 0: the `val_fraction` hold-out. "
        "`jaxreg.sweep --folds=K` sets it and runs every point on each fold."),
    Key("data.fold", 0, Int(0),
        "which fold is the validation split, `0 .. data.folds-1` (0 when `data.folds` "
        "= 0)."),
    Key("data.max_length", 64, Int(1),
        "sequences are truncated to this many tokens."),
    Key("data.eval_batch_size", 256, Int(1),
        "batch size for evaluation (the last batch is padded and masked)."),
    Key("data.buckets", "16,32,64,128,256,512",
        Custom(_buckets, "comma-separated increasing integers >= 1, or `''`"),
        "each batch is padded to the smallest of these lengths that holds its longest "
        "sequence (values >= `max_length` dropped; `max_length` is always the last "
        "bucket), so steps compile at most this many shapes; `''`: every batch at the "
        "split's width."),
    Key("data.sort_window", 0, Int(0),
        "> 0: after shuffling, sort examples by length within windows of this many "
        "batches, then shuffle the batches: similar lengths per batch, so buckets save "
        "compute (deterministic in `seed` and epoch)."),
    Key("data.lowercase", True, Bool(), "lowercase before tokenizing."),
    Key("data.punctuation", "split", OneOf(PUNCTUATION),
        "`split`: every punctuation character is a token; `strip`: dropped; `keep`: "
        "split on whitespace only. Words match `\\w+(?:['’]\\w+)*` (so `isn't` is one "
        "token)."),
    Key("data.strip_html", False, Bool(),
        "decode HTML entities (`&amp;`, `&#39;`, and the `#39;`, `quot;` forms that "
        "lost their `&` in some news sets) and replace HTML tags (IMDB's `<br />`) by "
        "a space before tokenizing (word-level and Hugging Face tokenizers alike)."),
    Key("data.min_freq", 1, Int(1), "training words seen fewer times become `<unk>`."),
    Key("data.max_vocab", 0, Custom(_max_vocab, "0, or an integer >= 3"),
        "vocabulary size including `<pad>` (id 0) and `<unk>` (id 1); 0: unlimited. The "
        "vocabulary comes from the training split minus the validation hold-out; ties "
        "by frequency then word."),
    Key("data.cache_dir", "~/.cache/jaxreg/data", Str(empty_means="no cache"),
        "the prepared-data cache: tokenized datasets under a sha256 of the source "
        "content, tokenizer and vocabulary settings, `max_length`, `split_seed` and "
        "`val_fraction` (and `folds`, `fold` under k-fold); decoded image folders under "
        "a sha256 of their files and `image_size`; `''`: no cache."),
    Key("data.tokenizer", "word",
        Str(nonempty=True, what="use 'word' or a Hugging Face tokenizer (directory or "
            "hub name)"),
        "`word`: the word-level pipeline of docs/data.md; otherwise a "
        "Hugging Face fast tokenizer (local directory or hub name) whose subword ids, "
        "special tokens included, are truncated to `max_length` (the "
        "lowercase/punctuation/vocabulary keys are then unused; the cache key holds the "
        "tokenizer's content hash). `configs/bert.py` links it to `model.pretrained`."),
    Key("data.train_file", "", Str(empty_means="none"),
        "`csv` / `tsv` / `jsonl`: the training file (plain or gzip-compressed)."),
    Key("data.test_file", "", Str(empty_means="use `test_fraction`"),
        "`csv` / `tsv` / `jsonl`: the test file."),
    Key("data.val_file", "", Str(empty_means="hold out `val_fraction` of train"),
        "`csv` / `tsv` / `jsonl`: a validation file (read like `train_file`; its labels "
        "must occur in training), used instead of holding `val_fraction` of train out "
        "(which is then unused). Not with `folds` >= 2."),
    Key("data.test_fraction", 0.0, RATE,
        "without a test file (or a folder without `test/`): this share of each class "
        "becomes the test split (by `split_seed`)."),
    Key("data.text_fields", "text", Str(),
        "comma-separated column names or 0-based indices (several are joined with a "
        "space)."),
    Key("data.label_field", "label", Str(), "the label column or key."),
    Key("data.header", True, Bool(), "`csv` / `tsv`: the first row names the columns."),
    Key("data.label_ids", False, Bool(), "labels are integer ids (else class names)."),
    Key("data.label_offset", 0, Int(None),
        "subtracted from integer ids (1 for 1-based ids)."),
    Key("data.class_names", "", Custom(_names, "comma-separated names, none twice"),
        "comma-separated class order (default: sorted label names, or `class_<id>` for "
        "ids)."),
    Key("data.root", "", Str(empty_means="none"),
        "`folder`: the directory with `train/<class>/*.txt` and `test/<class>/*.txt` "
        "(keras' layout; IMDB's aclImdb); `image_folder`: the same with "
        "`*.{png,jpg}`."),
    Key("data.classes", "", Custom(_names, "comma-separated names, none twice"),
        "`folder` / `image_folder`: the classes to read, e.g. `neg,pos` (skips "
        "aclImdb's `train/unsup`); "
        "default every subdirectory of `ROOT/train`, sorted."),
    Key("data.tfds_data_dir", "", Str(empty_means="`$TFDS_DATA_DIR` or "
                                      "`~/tensorflow_datasets`"),
        "TFDS data dir."),
    Key("data.download_dir", "", Str(empty_means="`<tfds_data_dir>/downloads`"),
        "TFDS download dir."),
    Key("data.text_feature", "", Str(empty_means="the built-in default"),
        "TFDS text feature(s), comma-separated ones joined by a space (built-in "
        "defaults: trec `text`, imdb_reviews `text`, ag_news_subset "
        "`title,description`, glue/sst2 `sentence`; other datasets must set it)."),
    Key("data.label_feature", "", Str(empty_means="the built-in default"),
        "TFDS ClassLabel feature, class names in its order (built-in defaults: trec "
        "`label-coarse`, others `label`)."),
    Key("data.train_split", "", Str(empty_means="`train`"),
        "TFDS split for training, e.g. `train[:90%]`; validation is held out of it."),
    Key("data.test_split", "", Str(empty_means="`test`"),
        "TFDS split for test (glue/sst2: `validation`, its test labels are hidden)."),
    Key("data.trec_fine", False, Bool(),
        "`tfds:trec`: TFDS's `label-fine` (47 classes: TFDS merges the three `other` "
        "fine labels) instead of the 6 coarse ones."),
    Key("data.trec_files", "", Str(empty_means="none"),
        "`tfds:trec`: a folder with `train_5500.label` and `TREC_10.label`; seeds TFDS's "
        "download dir so TREC prepares offline (other sources ignore it)."),

    Section("data.synthetic", "The built-in text set (`data.source = synthetic`, "
            "jaxreg/data/synthetic.py)."),
    Key("data.synthetic.train_size", 6000, Int(1),
        "training + validation examples of the built-in set."),
    Key("data.synthetic.test_per_class", 200, Int(1),
        "test examples per class (balanced)."),
    Key("data.synthetic.rare_fraction", 0.03, RATE,
        "share of training examples in the `rare` class."),
    Key("data.synthetic.generator_seed", 1234, Int(0),
        "the built-in set's own seed (the data is fixed by it)."),

    Key("data.image_feature", "", Str(empty_means="`image` for the built-in image sets"),
        "TFDS Image feature (built-in image sets: `cifar10`, `cifar100`, `mnist`, "
        "`fashion_mnist`, `svhn_cropped`, ...); setting it makes any `tfds:NAME` an "
        "image source."),
    Key("data.image_size", 0, Int(0),
        "> 0: every image resized (bilinear, antialiased) to this square side on load; "
        "0: as stored (all must share one shape)."),
    Key("data.normalize", True, Bool(),
        "images normalized on device by the per-channel mean and std of the training "
        "split; False: only scaled to [0, 1]."),
    Key("data.train_per_class", 0, Int(0),
        "> 0: keep this many training images per class (drawn by `split_seed`) before "
        "the validation hold-out: a subset for CPU runs."),

    Key("data.stream", "auto", OneOf(STREAM_MODES),
        "image folders and `tfds:` image sets: `never` keeps every split resident on "
        "the device; `always` streams them from their files (image files, or TFDS "
        "ArrayRecord records; grain workers decode and resize, docs/images.md); `auto` "
        "streams when the decoded splits exceed `data.resident_limit_mb`."),
    Key("data.resident_limit_mb", 0, Int(0),
        "`data.stream=auto`: the most MiB of decoded images kept resident; 0: half of "
        "the first device's memory (`memory_stats()['bytes_limit']`), or half of the "
        "host's RAM where the device reports none (CPU)."),
    Key("data.stream_workers", 0, Int(0),
        "streamed images: grain worker processes that decode and resize; 0: decode in "
        "threads of the training process."),
    Key("data.stream_threads", 4, Int(1),
        "streamed images: decoding threads (in each worker, or in the training process)."),
    Key("data.stream_crop_min_scale", 1.0, Num(0.0, 1.0, lo_open=True, note="1 = off"),
        "streamed images: a random resized crop on the host, from each training file "
        "at its full resolution (area fraction uniform in [this, 1], aspect ratio "
        "log-uniform in [3/4, 4/3], resized to `data.image_size`; ImageNet recipe: "
        "0.08), drawn from the epoch's order and the example's place in it, so a "
        "resumed run draws the same; 1.0: off. Needs a streamed run (`data.stream="
        "auto` streams for it; `data.augment.resized_crop_min_scale` crops on the "
        "device, from the image at `data.image_size`, on both paths)."),

    Section("data.shapes", "The built-in generated image set (`data.source = shapes`, "
            "jaxreg/data/shapes.py): colour classes and shape classes."),
    Key("data.shapes.train_size", 4000, Int(1),
        "training + validation images of the generated set (balanced over its "
        "classes)."),
    Key("data.shapes.test_per_class", 200, Int(1), "test images per class."),
    Key("data.shapes.image_size", 32, Int(8), "side in pixels."),
    Key("data.shapes.generator_seed", 1234, Int(0),
        "the generated set's own seed (the images are fixed by it)."),
    Key("data.shapes.labels", "colour_or_shape", OneOf(SHAPES_LABELS),
        "`colour_or_shape`: 4 colour classes (hued ellipses) and 4 shape classes (grey "
        "outlines); `colour_and_shape`: 16 classes, each a hue x outline pair of a "
        "coloured shape (the upstream set of the transfer experiment, "
        "docs/results/transfer.md)."),

    Section("data.augment", "On-device augmentation of training images "
            "(jaxreg/augment.py), drawn per example. Each is one strength; 0 (1.0 for "
            "`resized_crop_min_scale`) turns it off."),
    Key("data.augment.crop_padding", 0, Int(0),
        "random crop: zero-pad by this many pixels, crop back to the input size "
        "(CIFAR: 4)."),
    Key("data.augment.resized_crop_min_scale", 1.0, Num(0.0, 1.0, lo_open=True,
                                                        note="1 = off"),
        "random resized crop: area fraction uniform in [this, 1], aspect ratio "
        "log-uniform in [3/4, 4/3], bilinear back to the input size; 1.0: off (ImageNet "
        "recipe: 0.08)."),
    Key("data.augment.flip", 0.0, Num(0.0, 1.0, noun="a probability"),
        "probability of a horizontal flip."),
    Key("data.augment.brightness", 0.0, NONNEG,
        "colour jitter: pixels times a factor uniform in [1-b, 1+b]."),
    Key("data.augment.contrast", 0.0, NONNEG,
        "colour jitter: blend with the image's mean grey by a factor in [1-c, 1+c]."),
    Key("data.augment.saturation", 0.0, NONNEG,
        "colour jitter: blend with the pixel's grey by a factor in [1-s, 1+s]."),
    Key("data.augment.hue", 0.0, Num(0.0, 0.5, note="turns"),
        "colour jitter: hue rotated by a uniform angle in [-h, h] turns."),
    Key("data.augment.cutout", 0, Int(0),
        "side in pixels of one square set to 0 after normalization (the mean colour), "
        "centred uniformly (clipped at the border)."),

    Section("model", "The network: family, sizes, dropout."),
    Key("model.family", "rnn", OneOf(FAMILIES),
        "the model family: `rnn` (the RNN/GRU/LSTM text classifier), `bert` "
        "(transformers' Flax sequence classifiers, docs/bert.md) or "
        "`resnet` (images, `jaxreg/models/resnet.py`). Each family is a "
        "`jaxreg.models.Model` (init, apply): see `jaxreg/models/__init__.py`. A family "
        "that reads images with a text source (or the reverse) is a one-line error."),
    Key("model.pretrained", "", Str(empty_means="none"),
        "family `bert`: a Hugging Face directory or hub name (offline: a name in the HF "
        "cache), or `package:MODULE/SUBDIR`, a folder of an installed Python package "
        "(configs/bert.py's MiniLM); config.json keeps it as given, model.json adds a "
        "content hash. A directory holding only `config.json` gives a randomly "
        "initialized model."),
    Key("model.dtype", "float32", OneOf(MODEL_DTYPES),
        "compute dtype of every family (`bfloat16` on GPUs); parameters, optimizer "
        "state and logits stay float32 (and an RNN's recurrent carry and head)."),
    Key("model.cell", "lstm", OneOf(CELLS),
        "`rnn` (Elman, `nn.SimpleCell`), `gru`, `lstm` (`nn.OptimizedLSTMCell`)."),
    Key("model.hoist_input", False, Bool(),
        "`model.cell` `lstm` or `gru`: compute every position's input projection "
        "x @ W_i in one matmul before the recurrence, so that the sequential scan "
        "holds only h @ W_h (cuDNN's way; meant for GPUs, where the one large matmul "
        "pays; slower on a CPU). The same parameters (paths, shapes, initial values: a "
        "checkpoint loads with either setting) and the same function up to float "
        "rounding (`jaxreg/models/rnn_hoisted.py`)."),
    Key("model.embed_size", 64, Int(1), "word embedding size."),
    Key("model.hidden_size", 64, Int(1), "RNN state size (per direction)."),
    Key("model.num_layers", 1, Int(1), "stacked RNN layers."),
    Key("model.bidirectional", False, Bool(),
        "a backward RNN beside each forward one (outputs concatenated)."),
    Key("model.pooling", "last", OneOf(POOLINGS),
        "sentence vector: `last` valid state (both directions' final states when "
        "bidirectional), masked `mean`, masked `max`, or `attention` (additive attention "
        "over valid steps)."),
    Key("model.embeddings_file", "", Str(empty_means="random initialization only"),
        "pretrained word vectors for the embedding table "
        "(jaxreg/data/embeddings.py). The run logs how many vocabulary words were found "
        "(lowercase fallback) and writes the rest to `DIR/embeddings_missing.txt`; "
        "those rows keep their random init. Dimension must equal `model.embed_size`."),
    Key("model.embeddings_format", "auto", OneOf(EMBEDDINGS_FORMATS),
        "`auto`, `word2vec_bin`, `word2vec_text` (header `N D`), `glove` (no header); "
        "`.gz` is read directly."),
    Key("model.freeze_embeddings", False, Bool(),
        "the embedding table gets exactly zero update (no optimizer state, no decay, "
        "left out of clipping norms); needs `model.embeddings_file`."),

    Key("model.init_from", "", Str(empty_means="initialize from scratch (or "
                                   "`model.pretrained`)"),
        "`DIR[:best|latest|STEP]`: start from another jaxreg run (default `best`). Every "
        "parameter and BatchNorm statistic is loaded except the classifier head, which "
        "is created fresh for this dataset's classes; the run takes over the upstream "
        "preprocessing the weights depend on (vocabulary, tokenizer, image size, "
        "normalization) and `model.*` must equal the upstream run's (dropout rates, "
        "`dtype`, `hoist_input` and `freeze_embeddings` may differ). See "
        "docs/transfer.md."),
    Section("model.dropout", "Dropout rates: `embed`, `between`, `output` for the RNN "
            "family; `hidden`, `attention`, `classifier` for the BERT family."),
    Key("model.dropout.embed", 0.0, RATE, "dropout on word embeddings."),
    Key("model.dropout.between", 0.0, RATE, "dropout between stacked RNN layers."),
    Key("model.dropout.output", 0.0, RATE,
        "dropout on the sentence vector before the classifier head."),
    Key("model.dropout.hidden", -1.0,
        Custom(_rate_or_checkpoints, "a rate in [0, 1), or -1"),
        "family `bert`: the transformer's hidden dropout (BERT `hidden_dropout_prob`, "
        "DistilBERT `dropout`); -1 keeps the checkpoint's rate."),
    Key("model.dropout.attention", -1.0,
        Custom(_rate_or_checkpoints, "a rate in [0, 1), or -1"),
        "family `bert`: attention-probability dropout (`attention_probs_dropout_prob`, "
        "DistilBERT `attention_dropout`); -1: the checkpoint's."),
    Key("model.dropout.classifier", -1.0,
        Custom(_rate_or_checkpoints, "a rate in [0, 1), or -1"),
        "family `bert`: dropout before the classifier head (`classifier_dropout`, "
        "ALBERT `classifier_dropout_prob`, DistilBERT `seq_classif_dropout`); -1: the "
        "checkpoint's (BERT: its hidden rate)."),

    Section("model.resnet", "`model.family = resnet` (jaxreg/models/resnet.py)."),
    Key("model.resnet.depth", 18, OneOf(RESNET_DEPTHS),
        "10 (tiny: one basic block a stage), 18, 34 (basic blocks), 50 (bottleneck)."),
    Key("model.resnet.width", 64, Int(1), "base channels (stage k has `width * 2**k`)."),
    Key("model.resnet.stem", "cifar", OneOf(RESNET_STEMS),
        "`cifar` (3x3 stride 1, no max-pool) or `imagenet` (7x7 stride 2 + 3x3 "
        "max-pool)."),
    Key("model.resnet.norm", "batch", OneOf(RESNET_NORMS),
        "`batch` (BatchNorm, momentum 0.9, eps 1e-5), `none` (no normalization), `nf` "
        "(normalizer-free: scaled weight standardization and SkipInit, for AGC without "
        "BatchNorm)."),
    Key("model.resnet.bn_stages", "all",
        Custom(_bn_stages, "`all`, or comma-separated stages from 0, 1, 2, 3"),
        "with `norm=batch`: the stages that have BatchNorm (the stem counts as stage 0; "
        "`''`: none)."),
    Key("model.resnet.dropout_layers", 0, OneOf(RESNET_DROPOUT_LAYERS),
        "dropout layers: 1 before the head, 2 also after stage 3, 3 also after stage 2."),
    Key("model.resnet.dropout_rate", 0.0, RATE, "their rate."),

    Section("optim", "The optimizer and its learning-rate schedule (jaxreg/optim.py)."),
    Key("optim.name", "adam", OneOf(OPTIMIZERS, hints={"adamw": _ADAMW}),
        "the optimizer. AdamW is `adam` with `reg.weight_decay`."),
    Key("optim.learning_rate", 3e-3, POSITIVE, "peak learning rate."),
    Key("optim.momentum", 0.9, UNIT, "for `momentum` and `nesterov`."),
    Key("optim.b1", 0.9, UNIT, "Adam's first-moment decay."),
    Key("optim.b2", 0.999, UNIT, "Adam's second-moment decay."),
    Key("optim.eps", 1e-8, POSITIVE, "epsilon of adam, rmsprop, adadelta, adagrad."),
    Key("optim.decay", 0.9, UNIT, "rmsprop's and adadelta's rho."),
    Key("optim.schedule", "constant", OneOf(SCHEDULES),
        "`constant`, `cosine` (to `min_lr_ratio`), `warmup_linear`, `warmup_cosine` "
        "(linear warmup from 0 over `warmup_steps`, then decay to `min_lr_ratio`), "
        "`step` (times `step_factor` every `step_epochs` epochs); optax's schedules "
        "(jaxreg/optim.py)."),
    Key("optim.warmup_steps", 0, Int(0),
        "warmup length for the `warmup_*` schedules (and only for them); less than the "
        "run's steps."),
    Key("optim.warmup_fraction", 0.0, UNIT,
        "warmup as a fraction of the run's steps (`epochs * steps per epoch`, rounded, "
        "at least 1), instead of `warmup_steps` (set one of the two): the same share "
        "of training whatever the dataset's size."),
    Key("optim.min_lr_ratio", 0.0, Num(0.0, 1.0),
        "final learning rate of the decaying schedules, as a fraction of the peak."),
    Key("optim.step_epochs", 10, Int(1), "`step` schedule: epochs between drops."),
    Key("optim.step_factor", 0.1, POSITIVE, "`step` schedule: multiplier at each drop."),

    Section("reg", "Regularizers, as one optax chain in a fixed order "
            "(docs/regularizers.md); 0 turns a strength off."),
    Key("reg.l1", 0.0, NONNEG,
        "L1: `l1 * sign(w)` added to the gradient (masked by `decay_mask`); a "
        "subgradient, not proximal: it adds nothing at an exact 0, the loss gradient "
        "still moves such a weight, and small weights oscillate around 0 rather than "
        "becoming 0."),
    Key("reg.l2", 0.0, NONNEG,
        "coupled L2: `l2 * w` added to the gradient before the optimizer (the gradient "
        "of `l2/2 * ||w||^2`; goes through Adam's normalization)."),
    Key("reg.weight_decay", 0.0, NONNEG,
        "decoupled weight decay (masked by `decay_mask`), in the convention of "
        "`weight_decay_mode`."),
    Key("reg.weight_decay_mode", "lr_scaled", OneOf(DECAY_MODES),
        "`lr_scaled`: the step is `-lr_t * weight_decay * w` (AdamW, SGDW); "
        "`independent`: `-weight_decay * w` every step, whatever the learning rate and "
        "schedule."),
    Key("reg.clip_norm", 0.0, NONNEG, "clip the global gradient norm to this (0: off)."),
    Key("reg.clip_value", 0.0, NONNEG, "clip every gradient entry to `[-v, v]` (0: off)."),
    Key("reg.agc", 0.0, NONNEG,
        "adaptive gradient clipping factor lambda (`optax.adaptive_grad_clip`; 0: off). "
        "Depends on the batch size."),
    Key("reg.agc_eps", 1e-3, POSITIVE, "AGC's floor on the parameter norm."),
    Key("reg.agc_exclude", "^head/", Regex(empty_means="clip every parameter"),
        "parameter paths AGC leaves alone (the classifier head, as NFNets do)."),
    Key("reg.decay_mask", "ndim>1",
        Custom(lambda key, value: parse_decay_mask(value, key),
               "one of: " + ", ".join(f"`{f[1:-1]}`" for f in DECAY_MASK_FORMS)),
        "which parameters L1, L2 and weight decay touch: `ndim>1` (weights and "
        "embeddings; not biases or norm scales), `all`, `none`, or rules "
        "`REGEX=true,REGEX=false,...` matched against paths like `rnn0/cell/hi/kernel`, "
        "first match wins, and a parameter no rule matches is an error."),

    Section("train", "The loop: batches, epochs, checkpoints, early stopping."),
    Key("train.batch_size", 32, Int(1),
        "global batch size (split over devices; must divide by the device count)."),
    Key("train.epochs", 10, Int(1), "epochs to train."),
    Key("train.checkpoint_metric", "accuracy", OneOf(CHECKPOINT_METRICS),
        "validation metric that picks the \"best\" checkpoint (`loss`: lowest best, "
        "the others highest)."),
    Key("train.final_checkpoint", "best", OneOf(FINAL_CHECKPOINTS),
        "which checkpoint the end-of-run val/test evaluation (summary.json) uses: "
        "`best` by validation (itself a form of early stopping) or `latest` (the last "
        "epoch: for unregularized baselines). `summary.json` says which in "
        "`evaluated_checkpoint` / `evaluated_step`."),
    Key("train.log_every_steps", 50, Int(1), "`train_step` log lines and NaN checks."),
    Key("train.target_accuracy", 0.0, Num(0.0, 1.0, note="0 = none"),
        "> 0: `summary.json`'s `time_to_target_seconds` is the training time until "
        "validation accuracy first reached this (the course's 87%: 0.87)."),

    Key("train.trainable", "", Regex(empty_means="every parameter trains"),
        "regex (`re.search`) over parameter paths such as `head/kernel`, "
        "`stage3_block0/bn1/scale`: the parameters that train (`^head/`: a linear "
        "probe). The others are frozen: exactly zero update (no optimizer state, no "
        "decay, left out of clipping norms), and the layers they make up run in "
        "inference mode in training (a BatchNorm layer whose scale and bias are both "
        "frozen normalizes with, and keeps, its running statistics; a dropout layer is "
        "off when the layer before it is frozen). See docs/transfer.md."),

    Section("train.early_stopping", "Stop when a validation metric stops improving."),
    Key("train.early_stopping.metric", "accuracy", OneOf(CHECKPOINT_METRICS),
        "validation metric watched."),
    Key("train.early_stopping.mode", "max", OneOf(ES_MODES),
        "must agree with the metric (`min` for `loss`, `max` for the others), otherwise "
        "exit 2 naming the mode to set: with the default `max`, `metric=loss` would "
        "count a rising loss as improvement."),
    Key("train.early_stopping.patience", 0, Int(0),
        "stop after this many consecutive evaluations without improvement (0: never "
        "stop)."),
    Key("train.early_stopping.min_delta", 0.0, NONNEG,
        "an improvement must beat the best by more than this."),

    Section("log", "Where a run's metrics go besides metrics.jsonl (docs/trackers.md). "
            "Not part of the experiment: a workdir resumes with other values."),
    Key("log.trackers", "tensorboard",
        Custom(_trackers, "comma-separated names from: " +
               ", ".join(f"`{t}`" for t in TRACKERS) + ", or `''`"),
        "`tensorboard`: event files in `<workdir>/tensorboard`; `wandb`: a Weights & "
        "Biases run written offline under `<workdir>/wandb` (`wandb sync` uploads "
        "it); `mlflow`: an MLflow run at `log.mlflow_uri`. Each gets the resolved "
        "config, per-step loss, learning rate and grad_norm, per-epoch metrics with "
        "per-class accuracy, the test summary and the plots. wandb and mlflow need "
        f"`{TRACKERS_EXTRA}`."),
    Key("log.project", "jaxreg", Str(nonempty=True),
        "the W&B project and the MLflow experiment name."),
    Key("log.mlflow_uri", "", Str(empty_means="`sqlite:///<dir>/mlflow.db`"),
        "MLflow tracking URI; `''`: an SQLite file `mlflow.db` in the sweep directory "
        "(a sweep's run) or the workdir, artifacts beside it in `mlartifacts/`."),
)


# ------------------------------------------------------------- rules of several keys


def is_image_source(data_cfg) -> bool:
  """True when config.data names an image dataset (decides the data path and model)."""
  return _catalog.is_image_source(data_cfg.source, data_cfg.get("image_feature", ""))


def _is_trec(source: str) -> bool:
  return source.startswith(TFDS_PREFIX) and \
      source[len(TFDS_PREFIX):].split(":")[0].strip("/") == "trec"


def _local_sources(c) -> None:
  """`csv`, `tsv`, `jsonl` need `data.train_file`, exactly one of `data.test_file` and
  `data.test_fraction`, and non-empty `data.text_fields`, `data.label_field`;
  `data.val_file` only for them, and not with `data.folds`; `folder` and
  `image_folder` need `data.root`."""
  d = c.data
  if d.source in FILE_SOURCES:
    if not d.train_file:
      raise ConfigError(f"data.train_file is empty: data.source={d.source!r} needs a "
                        "training file")
    if bool(d.test_file) == bool(d.test_fraction):
      raise ConfigError("give exactly one of data.test_file and data.test_fraction "
                        f"(got {d.test_file!r} and {d.test_fraction!r})")
    for key in ("text_fields", "label_field"):
      if not d[key].strip():
        raise ConfigError(f"data.{key} is empty: name a column or key")
    if d.val_file and d.folds >= 2:
      raise ConfigError(f"data.val_file={d.val_file!r} and data.folds={d.folds} both "
                        "choose the validation split: give one (data.folds=0 to use "
                        "the file)")
  elif d.val_file:
    raise ConfigError(f"data.val_file={d.val_file!r} only applies to data.source in "
                      f"{', '.join(FILE_SOURCES)}, not {d.source!r}")
  layout = {"folder": "train/<class>/*.txt",
            "image_folder": "train/<class>/*.{png,jpg}"}.get(d.source)
  if layout and not d.root:
    raise ConfigError(f"data.root is empty: data.source={d.source!r} needs a directory "
                      f"with {layout}")


def _trec_only(c) -> None:
  """`data.trec_fine` only with `data.source = tfds:trec` (it changes the labels).
  `data.trec_files` is where TREC's files are, like `data.root` for folders: other
  sources ignore it, so a `:trec_reg` recipe runs on `--config.data.source=csv`."""
  d = c.data
  if d.trec_fine and not _is_trec(d.source):
    raise ConfigError(f"data.trec_fine=True only applies to data.source='tfds:trec', "
                      f"not {d.source!r} (for your own data use the `reg` variant, "
                      "e.g. --config=lstm:reg, or set data.trec_fine=False)")


def _fold_in_range(c) -> None:
  """`data.fold` is one of `0 .. data.folds-1` (0 without k-fold)."""
  folds, fold = c.data.folds, c.data.fold
  if not fold < max(folds, 1):
    allowed = f"0..{folds - 1}" if folds else "0 (data.folds=0: no k-fold)"
    raise ConfigError(f"data.fold={fold!r} is not one of: {allowed}")


def _frozen_needs_vectors(c) -> None:
  """`model.freeze_embeddings` needs `model.embeddings_file` (a frozen random table is
  almost never intended)."""
  if c.model.freeze_embeddings and not c.model.embeddings_file:
    raise ConfigError("model.freeze_embeddings=True needs model.embeddings_file "
                      "(freezing a random table is almost never intended)")


def _family_reads_the_source(c) -> None:
  """An image family (`resnet`) needs an image source, a text family a text source."""
  family, source = c.model.family, c.data.source
  is_image = is_image_source(c.data)
  if family in IMAGE_FAMILIES and not is_image:
    raise ConfigError(f"model.family={family!r} needs an image source; data.source="
                      f"{source!r} is text (use one of: {', '.join(IMAGE_SOURCES)}, "
                      "tfds:cifar10, tfds:NAME with data.image_feature)")
  if family not in IMAGE_FAMILIES and is_image:
    raise ConfigError(f"data.source={source!r} holds images; model.family={family!r} "
                      f"reads text (use one of: {', '.join(IMAGE_FAMILIES)})")


def _bert_inputs(c) -> None:
  """`model.family = bert` needs `model.pretrained`, a text source (not `synthetic`,
  which holds token ids) and a Hugging Face `data.tokenizer` (not `word`)."""
  if c.model.family != "bert" or c.model.get("init_from"):
    return  # init_from: the upstream run's model and tokenizer (docs/transfer.md)
  if not c.model.pretrained:
    raise ConfigError("model.pretrained is empty: model.family='bert' needs a Hugging "
                      "Face directory or hub name")
  if c.data.source == "synthetic":
    raise ConfigError("data.source='synthetic' holds token ids, not text: "
                      "model.family='bert' needs a text source (csv, tsv, jsonl, "
                      "folder, tfds:NAME)")
  if c.data.tokenizer == "word":
    raise ConfigError("data.tokenizer='word' cannot feed model.family='bert': set it "
                      "to the model's tokenizer (configs/bert.py links it to "
                      "model.pretrained)")


def _hoist_needs_a_gated_cell(c) -> None:
  """`model.hoist_input` only with `model.cell` `lstm` or `gru` (the cells it
  implements)."""
  m = c.model
  if m.family == "rnn" and m.hoist_input and m.cell not in HOISTED_CELLS:
    raise ConfigError(f"model.hoist_input=True needs model.cell in: "
                      f"{', '.join(HOISTED_CELLS)} (got {m.cell!r}; or set "
                      "model.hoist_input=False)")


def _warmup_schedule(c) -> None:
  """`optim.warmup_steps` or `optim.warmup_fraction` (not both) > 0 only with a
  `warmup_*` schedule (elsewhere it would do nothing)."""
  o = c.optim
  if o.warmup_steps and o.warmup_fraction:
    raise ConfigError(f"optim.warmup_steps={o.warmup_steps} and optim.warmup_fraction="
                      f"{o.warmup_fraction} are both set: give one (set the other to 0)")
  for key in ("warmup_steps", "warmup_fraction"):
    if o[key] and not o.schedule.startswith("warmup_"):
      raise ConfigError(f"optim.{key}={o[key]} has no effect with "
                        f"optim.schedule={o.schedule!r}; use one of: warmup_linear, "
                        "warmup_cosine")


def _early_stopping_direction(c) -> None:
  """`train.early_stopping.mode` agrees with its metric: `min` for `loss`, `max` for
  the others. An error, not a silent fix: with the default `max`, `metric=loss` would
  count a rising loss as improvement (`train.checkpoint_metric` has no mode: its
  direction comes from the metric)."""
  es = c.train.early_stopping
  better = "min" if es.metric == "loss" else "max"
  if es.mode != better:
    raise ConfigError(
        f"train.early_stopping.mode={es.mode!r} contradicts train.early_stopping.metric="
        f"{es.metric!r} ({'lower' if better == 'min' else 'higher'} is better): set "
        f"train.early_stopping.mode={better}")


# Run after every key passed its own rule, in this order.
CROSS_KEY_RULES: tuple[Callable[[Any], None], ...] = (
    _local_sources, _trec_only, _fold_in_range, _frozen_needs_vectors,
    _family_reads_the_source, _bert_inputs, _hoist_needs_a_gated_cell, _warmup_schedule,
    _early_stopping_direction)

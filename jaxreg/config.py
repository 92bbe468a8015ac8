"""The base config: every key jaxreg reads, its default, and its validation.

Config files in configs/ import `get_base_config()` and override what they need, so a
key exists in exactly one place. `validate()` turns a bad value into one line that names
the key and the allowed choices (main.py prints it and exits with code 2).
"""

from __future__ import annotations

import contextlib
import math

import ml_collections

FAMILIES = ("rnn", "bert", "resnet")   # model.family -> jaxreg/models/__init__.py:from_config
IMAGE_FAMILIES = ("resnet",)    # families that read images (data/images.py)
MODEL_DTYPES = ("float32", "bfloat16")   # model.dtype (families bert and resnet)
CELLS = ("rnn", "gru", "lstm")
POOLINGS = ("last", "mean", "max", "attention")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adadelta", "adagrad")
SCHEDULES = ("constant", "cosine", "warmup_linear", "warmup_cosine", "step")
DECAY_MODES = ("lr_scaled", "independent")
ES_MODES = ("min", "max")
CHECKPOINT_METRICS = (
    "accuracy", "balanced_accuracy", "macro_f1", "worst_class_accuracy", "loss")
SOURCES = ("synthetic", "csv", "tsv", "jsonl", "folder", "shapes", "image_folder")
IMAGE_SOURCES = ("shapes", "image_folder")  # and tfds: image sets (data/images.py)
PUNCTUATION = ("split", "strip", "keep")
FILE_SOURCES = ("csv", "tsv", "jsonl")


class ConfigError(ValueError):
  """A bad config key or value; the message is one line for the user."""


@contextlib.contextmanager
def as_config_error():
  """Re-raises a ValueError from building data or the optimizer as a ConfigError."""
  try:
    yield
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from e


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"
  c.data.split_seed = 0       # fixes the val split; independent of `seed`
  c.data.val_fraction = 0.1   # held out of train, stratified by class
  # k-fold: folds >= 2 makes the fold-th of `folds` stratified folds of train (by
  # split_seed) the validation split, instead of val_fraction. jaxreg.sweep --folds=K
  # runs every point once per fold.
  c.data.folds = 0
  c.data.fold = 0
  c.data.max_length = 64      # tokens; longer sequences are truncated
  c.data.eval_batch_size = 256
  # Batches are padded to the smallest of these lengths that fits (max_length is always
  # the last): at most this many compiled step shapes. '' = every batch at full width.
  c.data.buckets = "16,32,64,128,256,512"
  c.data.sort_window = 0          # >0: batches of similar length, sorted within windows of this many batches
  # Text pipeline for raw-text sources (jaxreg/data/text.py).
  c.data.lowercase = True         # lowercase before tokenizing
  c.data.punctuation = "split"    # split: own tokens | strip: dropped | keep: attached
  c.data.strip_html = False       # replace HTML tags (IMDB's <br />) by a space
  c.data.min_freq = 1             # words seen fewer times in train become <unk>
  c.data.max_vocab = 0            # table size incl. <pad>, <unk>; 0 = unlimited
  c.data.cache_dir = "~/.cache/jaxreg/data"  # tokenized-data cache; '' = no cache
  # 'word': the word-level pipeline above; else a Hugging Face tokenizer (local dir or
  # hub name; configs/bert.py links it to model.pretrained): subwords, truncation to
  # max_length, the lowercase/punctuation/vocab keys unused (jaxreg/data/hf_tokenizer.py).
  c.data.tokenizer = "word"
  # Local files, data.source = csv | tsv | jsonl (jaxreg/data/files.py).
  c.data.train_file = ""          # path of the training file
  c.data.test_file = ""           # path of the test file ('' = use test_fraction)
  c.data.test_fraction = 0.0      # without test_file/test dir: held-out test share
  c.data.text_fields = "text"     # comma-separated columns/keys (names or 0-based)
  c.data.label_field = "label"    # label column/key (name or 0-based index)
  c.data.header = True            # csv/tsv: first row holds the column names
  c.data.label_ids = False        # labels are integer ids (else class names)
  c.data.label_offset = 0         # subtracted from integer ids (1: 1-based ids)
  c.data.class_names = ""         # comma-separated class order ('' = sorted/class_<i>)
  # Text folder, data.source = folder: ROOT/{train,test}/<class>/*.txt.
  c.data.root = ""                # the folder holding train/ and test/
  c.data.classes = ""             # comma-separated classes ('' = all of ROOT/train)
  # tensorflow-datasets, data.source = 'tfds:NAME' (jaxreg/data/tfds_source.py). Empty
  # feature/split keys take the built-in defaults of tfds:trec, imdb_reviews,
  # ag_news_subset and glue/sst2 (other datasets must set them).
  c.data.tfds_data_dir = ""       # TFDS data dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.data.download_dir = ""        # TFDS download dir ('' = <tfds_data_dir>/downloads)
  c.data.text_feature = ""        # Text feature(s), comma-separated ones joined by a space
  c.data.label_feature = ""       # ClassLabel feature; class names in its order
  c.data.train_split = ""         # TFDS split string for training (val is held out of it)
  c.data.test_split = ""          # TFDS split string for test (glue/sst2: 'validation')
  c.data.trec_fine = False        # tfds:trec: 'label-fine' (47 TFDS classes), not coarse
  c.data.trec_files = ""          # tfds:trec: folder with train_5500.label, TREC_10.label:
                                  # seeds the download dir so TREC prepares offline
  # Built-in synthetic set (data.source = 'synthetic'): see jaxreg/data/synthetic.py.
  c.data.synthetic = ml_collections.ConfigDict()
  c.data.synthetic.train_size = 6000
  c.data.synthetic.test_per_class = 200
  c.data.synthetic.rare_fraction = 0.03
  c.data.synthetic.generator_seed = 1234
  # Images (jaxreg/data/images.py): data.source = shapes | image_folder (data.root/
  # <split>/<class>/*.{png,jpg}) | tfds:NAME with an Image feature.
  c.data.image_feature = ""       # tfds: Image feature ('' = 'image' for the built-in image sets)
  c.data.image_size = 0           # >0: images resized to this square side; 0 = as stored
  c.data.normalize = True         # per-channel mean/std of the training split, on device
  c.data.train_per_class = 0      # >0: keep this many training images per class (a subset)
  # Built-in generated image set (data.source = 'shapes'): colour classes and shape classes.
  c.data.shapes = ml_collections.ConfigDict()
  c.data.shapes.train_size = 4000
  c.data.shapes.test_per_class = 200
  c.data.shapes.image_size = 32
  c.data.shapes.generator_seed = 1234
  # On-device augmentation of training images (jaxreg/augment.py), drawn per example.
  # Each is one strength; 0 (1.0 for resized_crop_min_scale) turns it off.
  c.data.augment = ml_collections.ConfigDict()
  c.data.augment.crop_padding = 0          # pixels of zero padding, then a random crop back
  c.data.augment.resized_crop_min_scale = 1.0  # random resized crop: area scale in [min, 1]
  c.data.augment.flip = 0.0                # probability of a horizontal flip
  c.data.augment.brightness = 0.0          # factor uniform in [1-b, 1+b]
  c.data.augment.contrast = 0.0            # factor uniform in [1-c, 1+c] around the mean
  c.data.augment.saturation = 0.0          # factor uniform in [1-s, 1+s] around the grey
  c.data.augment.hue = 0.0                 # hue rotated by uniform [-h, h] turns (h <= 0.5)
  c.data.augment.cutout = 0                # side in pixels of a zeroed square (after normalizing)

  c.model = ml_collections.ConfigDict()
  c.model.family = "rnn"          # rnn (RNN/GRU/LSTM) | bert (transformers) | resnet (images)
  # family bert (jaxreg/models/bert.py): a Hugging Face directory or hub name.
  c.model.pretrained = ""
  c.model.dtype = "float32"       # bert, resnet: compute dtype (float32 | bfloat16); params stay f32
  c.model.cell = "lstm"
  c.model.embed_size = 64
  c.model.hidden_size = 64
  c.model.num_layers = 1
  c.model.bidirectional = False
  c.model.pooling = "last"
  # Pretrained word vectors for the embedding table (jaxreg/data/embeddings.py): rows of
  # vocabulary words found in the file are replaced, the others stay random; the run
  # writes the words not found to <workdir>/embeddings_missing.txt.
  c.model.embeddings_file = ""        # '' = random initialization only
  c.model.embeddings_format = "auto"  # auto | word2vec_bin | word2vec_text | glove
  c.model.freeze_embeddings = False   # True: the table gets exactly zero update
  c.model.dropout = ml_collections.ConfigDict()
  c.model.dropout.embed = 0.0
  c.model.dropout.between = 0.0
  c.model.dropout.output = 0.0
  # family bert: the transformer's own rates (-1 keeps the checkpoint's value).
  c.model.dropout.hidden = -1.0
  c.model.dropout.attention = -1.0
  c.model.dropout.classifier = -1.0
  # model.family = 'resnet' (jaxreg/models/resnet.py).
  c.model.resnet = ml_collections.ConfigDict()
  c.model.resnet.depth = 18           # 10 (tiny: one basic block a stage) | 18 | 34 | 50
  c.model.resnet.width = 64           # base channels
  c.model.resnet.stem = "cifar"       # cifar (3x3 stride 1) | imagenet (7x7/2 + max-pool)
  c.model.resnet.norm = "batch"       # batch | none | nf (normalizer-free, for AGC)
  c.model.resnet.bn_stages = "all"    # norm=batch: 'all' or stage indices '0,1' (stem is 0)
  c.model.resnet.dropout_layers = 0   # 0..3: head; + after stage 3; + after stage 2
  c.model.resnet.dropout_rate = 0.0

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"
  c.optim.learning_rate = 3e-3
  c.optim.momentum = 0.9
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.decay = 0.9
  c.optim.schedule = "constant"
  c.optim.warmup_steps = 0
  c.optim.min_lr_ratio = 0.0
  c.optim.step_epochs = 10
  c.optim.step_factor = 0.1

  c.reg = ml_collections.ConfigDict()
  c.reg.l1 = 0.0
  c.reg.l2 = 0.0
  c.reg.weight_decay = 0.0
  c.reg.weight_decay_mode = "lr_scaled"
  c.reg.clip_norm = 0.0
  c.reg.clip_value = 0.0
  c.reg.agc = 0.0
  c.reg.agc_eps = 1e-3
  c.reg.agc_exclude = "^head/"
  c.reg.decay_mask = "ndim>1"

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32
  c.train.epochs = 10
  c.train.checkpoint_metric = "accuracy"   # picks the "best" checkpoint on val
  c.train.final_checkpoint = "best"        # evaluated at the end: best | latest
  c.train.log_every_steps = 50
  # >0: summary.json's time_to_target_seconds is the training time until validation
  # accuracy first reached this (e.g. 0.87); null if never.
  c.train.target_accuracy = 0.0
  c.train.early_stopping = ml_collections.ConfigDict()
  c.train.early_stopping.metric = "accuracy"
  c.train.early_stopping.mode = "max"
  c.train.early_stopping.patience = 0      # 0: never stop early
  c.train.early_stopping.min_delta = 0.0
  return c


def flatten(tree: dict, prefix: str = "") -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}: config dicts (to_json) as dotted keys."""
  flat = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      flat.update(flatten(v, f"{prefix}{k}."))
    else:
      flat[f"{prefix}{k}"] = v
  return flat


def _choice(config, key, allowed):
  value = _get(config, key)
  if value not in allowed:
    raise ConfigError(
        f"{key}={value!r} is not one of: {', '.join(map(str, allowed))}")


def _get(config, key):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def _nonneg(config, key):
  value = _get(config, key)
  if not isinstance(value, (int, float)) or value < 0:
    raise ConfigError(f"{key}={value!r} must be a number >= 0")


def _positive_int(config, key):
  value = _get(config, key)
  if not isinstance(value, int) or value < 1:
    raise ConfigError(f"{key}={value!r} must be an integer >= 1")


def _rate(config, key):
  value = _get(config, key)
  if not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise ConfigError(f"{key}={value!r} must be a rate in [0, 1)")


def _bool(config, key):
  value = _get(config, key)
  if not isinstance(value, bool):
    raise ConfigError(f"{key}={value!r} must be true or false")


def _validate_text_data(config) -> None:
  """The data.* keys of the text pipeline and the local file / folder sources."""
  from jaxreg.data import dataset  # noqa: PLC0415 (numpy only; keeps config light)
  d = config.data
  try:
    dataset.parse_buckets(d.buckets, d.max_length)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  for key in ("data.lowercase", "data.header", "data.label_ids", "data.strip_html"):
    _bool(config, key)
  _choice(config, "data.punctuation", PUNCTUATION)
  if not isinstance(d.sort_window, int) or d.sort_window < 0:
    raise ConfigError(f"data.sort_window={d.sort_window!r} must be an integer >= 0")
  _positive_int(config, "data.min_freq")
  if not isinstance(d.max_vocab, int) or d.max_vocab < 0 or d.max_vocab in (1, 2):
    raise ConfigError(f"data.max_vocab={d.max_vocab!r} must be 0 (unlimited) or an "
                      "integer >= 3 (it counts <pad> and <unk>)")
  if not isinstance(d.label_offset, int):
    raise ConfigError(f"data.label_offset={d.label_offset!r} must be an integer")
  _rate(config, "data.test_fraction")
  if d.source in FILE_SOURCES:
    if not d.train_file:
      raise ConfigError(f"data.train_file is empty: data.source={d.source!r} needs "
                        "a training file")
    if bool(d.test_file) == bool(d.test_fraction):
      raise ConfigError("give exactly one of data.test_file and data.test_fraction "
                        f"(got {d.test_file!r} and {d.test_fraction!r})")
    for key in ("data.text_fields", "data.label_field"):
      if not str(_get(config, key)).strip():
        raise ConfigError(f"{key} is empty: name a column or key")
  if d.source == "folder" and not d.root:
    raise ConfigError("data.root is empty: data.source='folder' needs a directory "
                      "with train/<class>/*.txt")


TFDS_PREFIX = "tfds:"
EMBEDDINGS_FORMATS = ("auto", "word2vec_bin", "word2vec_text", "glove")


def _validate_source(config) -> None:
  """data.source: one of SOURCES, or 'tfds:NAME' (any TFDS dataset)."""
  source = config.data.source
  if isinstance(source, str) and source.startswith(TFDS_PREFIX):
    if not source[len(TFDS_PREFIX):].strip():
      raise ConfigError(f"data.source={source!r} names no dataset; use tfds:NAME, "
                        "e.g. tfds:trec, tfds:glue/sst2")
    return
  if source not in SOURCES:
    raise ConfigError(f"data.source={source!r} is not one of: {', '.join(SOURCES)}, "
                      "tfds:NAME")


def _validate_tfds_and_embeddings(config) -> None:
  """data.* keys of TFDS sources and model.* keys of pretrained embeddings."""
  d, m = config.data, config.model
  _bool(config, "data.trec_fine")
  for key in ("data.tfds_data_dir", "data.download_dir", "data.text_feature",
              "data.label_feature", "data.train_split", "data.test_split",
              "data.trec_files", "model.embeddings_file"):
    if not isinstance(_get(config, key), str):
      raise ConfigError(f"{key}={_get(config, key)!r} must be a string ('' = default)")
  is_trec = d.source.split(":")[0] == "tfds" and \
      d.source[len(TFDS_PREFIX):].split(":")[0].strip("/") == "trec"
  if d.trec_fine and not is_trec:
    raise ConfigError(f"data.trec_fine=True only applies to data.source='tfds:trec', "
                      f"not {d.source!r}")
  if d.trec_files and not is_trec:
    raise ConfigError(f"data.trec_files={d.trec_files!r} only applies to "
                      f"data.source='tfds:trec', not {d.source!r}")
  _choice(config, "model.embeddings_format", EMBEDDINGS_FORMATS)
  _bool(config, "model.freeze_embeddings")
  if m.freeze_embeddings and not m.embeddings_file:
    raise ConfigError("model.freeze_embeddings=True needs model.embeddings_file "
                      "(freezing a random table is almost never intended)")


def _validate_folds(config) -> None:
  folds, fold = config.data.folds, config.data.fold
  if not isinstance(folds, int) or isinstance(folds, bool) or folds == 1 or folds < 0:
    raise ConfigError(f"data.folds={folds!r} must be 0 (hold out data.val_fraction) "
                      "or an integer >= 2 (k-fold)")
  if not isinstance(fold, int) or isinstance(fold, bool) or \
      not 0 <= fold < max(folds, 1):
    allowed = f"0..{folds - 1}" if folds else "0 (data.folds=0: no k-fold)"
    raise ConfigError(f"data.fold={fold!r} is not one of: {allowed}")


def _validate_early_stopping(config) -> None:
  """train.early_stopping.mode must agree with its metric: loss is better lower, every
  other metric (CHECKPOINT_METRICS) higher. An error, not a silent fix: with the default
  mode 'max', metric=loss would count a rising validation loss as improvement.
  (train.checkpoint_metric has no mode: its direction comes from the metric.)"""
  es = config.train.early_stopping
  better = "min" if es.metric == "loss" else "max"
  if es.mode != better:
    raise ConfigError(
        f"train.early_stopping.mode={es.mode!r} contradicts train.early_stopping.metric="
        f"{es.metric!r} ({'lower' if better == 'min' else 'higher'} is better): set "
        f"train.early_stopping.mode={better}")


RESNET_DEPTHS = (10, 18, 34, 50)
RESNET_STEMS = ("cifar", "imagenet")
RESNET_NORMS = ("batch", "none", "nf")


def _validate_images(config) -> None:
  """data.* image keys, data.augment.*, model.resnet.*, model.dtype, target accuracy."""
  d, a, r = config.data, config.data.augment, config.model.resnet
  _bool(config, "data.normalize")
  if not isinstance(d.image_feature, str):
    raise ConfigError(f"data.image_feature={d.image_feature!r} must be a string "
                      "('' = default)")
  for key in ("data.image_size", "data.train_per_class", "data.augment.crop_padding",
              "data.augment.cutout", "data.shapes.generator_seed"):
    value = _get(config, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
      raise ConfigError(f"{key}={value!r} must be an integer >= 0")
  for key in ("data.shapes.train_size", "data.shapes.test_per_class",
              "data.shapes.image_size"):
    _positive_int(config, key)
  if d.shapes.image_size < 8:
    raise ConfigError(f"data.shapes.image_size={d.shapes.image_size!r} must be >= 8")
  scale = a.resized_crop_min_scale
  if not isinstance(scale, (int, float)) or not 0 < scale <= 1:
    raise ConfigError(f"data.augment.resized_crop_min_scale={scale!r} must be in (0, 1] "
                      "(1 = off)")
  if not isinstance(a.flip, (int, float)) or not 0 <= a.flip <= 1:
    raise ConfigError(f"data.augment.flip={a.flip!r} must be a probability in [0, 1]")
  for key in ("data.augment.brightness", "data.augment.contrast",
              "data.augment.saturation"):
    _nonneg(config, key)
  if not isinstance(a.hue, (int, float)) or not 0 <= a.hue <= 0.5:
    raise ConfigError(f"data.augment.hue={a.hue!r} must be in [0, 0.5] (turns)")
  _choice(config, "model.dtype", MODEL_DTYPES)
  _choice(config, "model.resnet.depth", RESNET_DEPTHS)
  _choice(config, "model.resnet.stem", RESNET_STEMS)
  _choice(config, "model.resnet.norm", RESNET_NORMS)
  _positive_int(config, "model.resnet.width")
  _choice(config, "model.resnet.dropout_layers", (0, 1, 2, 3))
  _rate(config, "model.resnet.dropout_rate")
  stages = str(r.bn_stages).strip()
  if stages != "all" and any(p.strip() not in ("0", "1", "2", "3")
                             for p in stages.split(",") if p.strip()):
    raise ConfigError(f"model.resnet.bn_stages={r.bn_stages!r} must be 'all' or "
                      "comma-separated stage indices from 0, 1, 2, 3 ('' = none)")
  if d.source == "image_folder" and not d.root:
    raise ConfigError("data.root is empty: data.source='image_folder' needs a directory "
                      "with train/<class>/*.{png,jpg}")
  target = config.train.target_accuracy
  if not isinstance(target, (int, float)) or not 0 <= target <= 1:
    raise ConfigError(f"train.target_accuracy={target!r} must be in [0, 1] (0 = none)")
  is_image = is_image_source(config.data)
  family = config.model.family
  if family in IMAGE_FAMILIES and not is_image:
    raise ConfigError(f"model.family={family!r} needs an image source; data.source="
                      f"{d.source!r} is text (use one of: {', '.join(IMAGE_SOURCES)}, "
                      "tfds:cifar10, tfds:NAME with data.image_feature)")
  if family not in IMAGE_FAMILIES and is_image:
    raise ConfigError(f"data.source={d.source!r} holds images; model.family={family!r} "
                      f"reads text (use one of: {', '.join(IMAGE_FAMILIES)})")


# tfds: datasets read as images without data.image_feature (their feature is 'image').
TFDS_IMAGE_BUILTINS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped",
                       "emnist", "kmnist", "cifar10_corrupted", "imagenette")


def is_image_source(data_cfg) -> bool:
  """True when config.data names an image dataset (decides the data path and model)."""
  d = data_cfg
  if d.source in IMAGE_SOURCES:
    return True
  if isinstance(d.source, str) and d.source.startswith(TFDS_PREFIX):
    bare = d.source[len(TFDS_PREFIX):].strip().split(":")[0].strip("/").split("/")[0]
    return bool(d.get("image_feature")) or bare in TFDS_IMAGE_BUILTINS
  return False


def _validate_transformer(config) -> None:
  """model.family='bert' keys: pretrained, its dropout rates, data.tokenizer."""
  m = config.model
  for key in ("model.pretrained", "data.tokenizer"):
    if not isinstance(_get(config, key), str):
      raise ConfigError(f"{key}={_get(config, key)!r} must be a string")
  if not config.data.tokenizer.strip():
    raise ConfigError("data.tokenizer is empty: use 'word' or a Hugging Face tokenizer "
                      "(directory or hub name)")
  for key in ("model.dropout.hidden", "model.dropout.attention",
              "model.dropout.classifier"):
    value = _get(config, key)
    if value != -1 and not (isinstance(value, (int, float)) and 0 <= value < 1):
      raise ConfigError(f"{key}={value!r} must be a rate in [0, 1), or -1 for the "
                        "checkpoint's own rate")
  if m.family == "bert":
    if not m.pretrained:
      raise ConfigError("model.pretrained is empty: model.family='bert' needs a Hugging "
                        "Face directory or hub name")
    if config.data.source == "synthetic":
      raise ConfigError("data.source='synthetic' holds token ids, not text: "
                        "model.family='bert' needs a text source (csv, tsv, jsonl, "
                        "folder, tfds:NAME)")
    if config.data.tokenizer == "word":
      raise ConfigError("data.tokenizer='word' cannot feed model.family='bert': set it "
                        "to the model's tokenizer (configs/bert.py links it to "
                        "model.pretrained)")


def _finite(config) -> None:
  """No key may be NaN or inf: `nan < 0` is False, so range checks let NaN through."""
  for key, value in flatten(config.to_dict()).items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"{key}={value!r} must be a finite number")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line: key, value, allowed choices) on a bad value."""
  _finite(config)
  _validate_source(config)
  _validate_text_data(config)
  _validate_tfds_and_embeddings(config)
  _choice(config, "model.family", FAMILIES)
  _validate_images(config)
  _choice(config, "model.cell", CELLS)
  _choice(config, "model.pooling", POOLINGS)
  _choice(config, "optim.name", OPTIMIZERS)
  _choice(config, "optim.schedule", SCHEDULES)
  _choice(config, "reg.weight_decay_mode", DECAY_MODES)
  _choice(config, "train.early_stopping.mode", ES_MODES)
  _choice(config, "train.early_stopping.metric", CHECKPOINT_METRICS)
  _validate_early_stopping(config)
  _choice(config, "train.checkpoint_metric", CHECKPOINT_METRICS)
  _choice(config, "train.final_checkpoint", ("best", "latest"))
  for key in ("model.dropout.embed", "model.dropout.between", "model.dropout.output"):
    _rate(config, key)
  _validate_transformer(config)
  _rate(config, "data.val_fraction")
  _validate_folds(config)
  if config.data.val_fraction == 0:
    raise ConfigError("data.val_fraction=0 leaves no validation split; use a "
                      "fraction in (0, 1)")
  for key in ("optim.learning_rate", "reg.l1", "reg.l2", "reg.weight_decay",
              "reg.clip_norm", "reg.clip_value", "reg.agc", "reg.agc_eps",
              "optim.warmup_steps", "optim.min_lr_ratio",
              "train.early_stopping.min_delta", "train.early_stopping.patience"):
    _nonneg(config, key)
  for key in ("model.embed_size", "model.hidden_size", "model.num_layers",
              "train.batch_size", "train.epochs", "data.max_length",
              "data.eval_batch_size", "train.log_every_steps"):
    _positive_int(config, key)
  if config.optim.learning_rate == 0:
    raise ConfigError("optim.learning_rate=0 must be > 0")

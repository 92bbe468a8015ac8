"""The base config: every key jaxreg reads, its default, and its validation.

Config files in configs/ import `get_base_config()` and override what they need, so a
key exists in exactly one place. `validate()` turns a bad value into one line that names
the key and the allowed choices (main.py prints it and exits with code 2).
"""

from __future__ import annotations

import contextlib

import ml_collections

CELLS = ("rnn", "gru", "lstm")
POOLINGS = ("last", "mean", "max", "attention")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adadelta", "adagrad")
SCHEDULES = ("constant", "cosine", "warmup_linear", "warmup_cosine", "step")
DECAY_MODES = ("lr_scaled", "independent")
ES_MODES = ("min", "max")
CHECKPOINT_METRICS = (
    "accuracy", "balanced_accuracy", "macro_f1", "worst_class_accuracy", "loss")
SOURCES = ("synthetic",)


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
  c.data.max_length = 64      # tokens; longer sequences are truncated
  c.data.eval_batch_size = 256
  # Built-in synthetic set (data.source = 'synthetic'): see jaxreg/data/synthetic.py.
  c.data.synthetic = ml_collections.ConfigDict()
  c.data.synthetic.train_size = 6000
  c.data.synthetic.test_per_class = 200
  c.data.synthetic.rare_fraction = 0.03
  c.data.synthetic.generator_seed = 1234

  c.model = ml_collections.ConfigDict()
  c.model.cell = "lstm"
  c.model.embed_size = 64
  c.model.hidden_size = 64
  c.model.num_layers = 1
  c.model.bidirectional = False
  c.model.pooling = "last"
  c.model.dropout = ml_collections.ConfigDict()
  c.model.dropout.embed = 0.0
  c.model.dropout.between = 0.0
  c.model.dropout.output = 0.0

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
  c.train.log_every_steps = 50
  c.train.early_stopping = ml_collections.ConfigDict()
  c.train.early_stopping.metric = "accuracy"
  c.train.early_stopping.mode = "max"
  c.train.early_stopping.patience = 0      # 0: never stop early
  c.train.early_stopping.min_delta = 0.0
  return c


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


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line: key, value, allowed choices) on a bad value."""
  _choice(config, "data.source", SOURCES)
  _choice(config, "model.cell", CELLS)
  _choice(config, "model.pooling", POOLINGS)
  _choice(config, "optim.name", OPTIMIZERS)
  _choice(config, "optim.schedule", SCHEDULES)
  _choice(config, "reg.weight_decay_mode", DECAY_MODES)
  _choice(config, "train.early_stopping.mode", ES_MODES)
  _choice(config, "train.early_stopping.metric", CHECKPOINT_METRICS)
  _choice(config, "train.checkpoint_metric", CHECKPOINT_METRICS)
  for key in ("model.dropout.embed", "model.dropout.between", "model.dropout.output"):
    _rate(config, key)
  _rate(config, "data.val_fraction")
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

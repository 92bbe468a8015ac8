"""Elman RNN (nn.SimpleCell) text classifier.

  python -m jaxreg.main --config=configs/rnn.py --workdir=runs/rnn
  python -m jaxreg.main --config=configs/rnn.py:trec --workdir=runs/rnn_trec
  python -m jaxreg.main --config=configs/rnn.py:trec_reg --workdir=runs/rnn_trec_reg

Variants (configs/text.py): synthetic (default), trec, trec_reg, imdb, imdb_reg, tiny.
Measured results: README "Results".
"""

from configs import text
from jaxreg.config import get_base_config


def get_config(arg: str | None = None):
  config = get_base_config()
  config.model.cell = "rnn"
  return text.variant(config, arg)

"""LSTM text classifier; by default on the built-in synthetic set (no download).

  python -m jaxreg.main --config=configs/lstm.py --workdir=runs/lstm
  python -m jaxreg.main --config=configs/lstm.py:trec --workdir=runs/lstm_trec
  python -m jaxreg.main --config=configs/lstm.py:trec_reg --workdir=runs/lstm_trec_reg

Variants (configs/text.py): synthetic (default), trec, trec_reg, imdb, imdb_reg, tiny.
Measured results: README "Results".
"""

from configs import text
from jaxreg.config import get_base_config


def get_config(arg: str | None = None):
  config = get_base_config()
  config.model.cell = "lstm"
  return text.variant(config, arg)

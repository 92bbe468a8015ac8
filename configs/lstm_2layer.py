"""Two stacked LSTM layers (dropout between them in the _reg variants).

  python -m jaxreg.main --config=configs/lstm_2layer.py --workdir=runs/lstm_2layer
  python -m jaxreg.main --config=configs/lstm_2layer.py:trec --workdir=runs/lstm_2layer_trec
  python -m jaxreg.main --config=configs/lstm_2layer.py:trec_reg --workdir=runs/lstm_2layer_trec_reg

Variants (configs/text.py): synthetic (default), trec, trec_reg, imdb, imdb_reg, tiny.
Measured results: README "Results".
"""

from configs import text
from jaxreg.config import get_base_config


def get_config(arg: str | None = None):
  config = get_base_config()
  config.model.cell = "lstm"
  config.model.num_layers = 2
  return text.variant(config, arg)

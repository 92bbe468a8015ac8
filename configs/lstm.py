"""LSTM text classifier; by default on the built-in synthetic set (no download).

  python -m jaxreg.main --config=configs/lstm.py --workdir=runs/lstm

Variants (`--config=configs/lstm.py:NAME`): `tiny` (a few hundred examples, 2 epochs:
for smoke tests).

Measured: see README "Results" (filled in from the command above).
"""

from jaxreg.config import get_base_config


def get_config(arg: str | None = None):
  config = get_base_config()
  config.model.cell = "lstm"
  if arg == "tiny":
    config.data.synthetic.train_size = 400
    config.data.synthetic.test_per_class = 10
    config.train.epochs = 2
    config.train.log_every_steps = 5
  elif arg:
    raise ValueError(f"configs/lstm.py variant {arg!r} is not one of: tiny")
  return config

"""Moved to jaxreg/configs/lstm_2layer.py (it ships with the package: `--config=lstm_2layer`);
`--config=configs/lstm_2layer.py` and `from configs import lstm_2layer` keep working through this file."""

from jaxreg.configs.lstm_2layer import *  # noqa: F401,F403

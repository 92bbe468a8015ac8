"""Moved to jaxreg/configs/lstm.py (it ships with the package: `--config=lstm`);
`--config=configs/lstm.py` and `from configs import lstm` keep working through this file."""

from jaxreg.configs.lstm import *  # noqa: F401,F403

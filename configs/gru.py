"""Moved to jaxreg/configs/gru.py (it ships with the package: `--config=gru`);
`--config=configs/gru.py` and `from configs import gru` keep working through this file."""

from jaxreg.configs.gru import *  # noqa: F401,F403

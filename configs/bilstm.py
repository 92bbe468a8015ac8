"""Moved to jaxreg/configs/bilstm.py (it ships with the package: `--config=bilstm`);
`--config=configs/bilstm.py` and `from configs import bilstm` keep working through this file."""

from jaxreg.configs.bilstm import *  # noqa: F401,F403

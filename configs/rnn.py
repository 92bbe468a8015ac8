"""Moved to jaxreg/configs/rnn.py (it ships with the package: `--config=rnn`);
`--config=configs/rnn.py` and `from configs import rnn` keep working through this file."""

from jaxreg.configs.rnn import *  # noqa: F401,F403

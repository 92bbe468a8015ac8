"""Moved to jaxreg/configs/bert.py (it ships with the package: `--config=bert`);
`--config=configs/bert.py` and `from configs import bert` keep working through this file."""

from jaxreg.configs.bert import *  # noqa: F401,F403

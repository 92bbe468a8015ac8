"""Moved to jaxreg/configs/text.py (it ships with the package: `--config=text`);
`--config=configs/text.py` and `from configs import text` keep working through this file."""

from jaxreg.configs.text import *  # noqa: F401,F403

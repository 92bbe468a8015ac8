"""Moved to jaxreg/configs/datasets.py (it ships with the package: `--config=datasets`);
`--config=configs/datasets.py` and `from configs import datasets` keep working through this file."""

from jaxreg.configs.datasets import *  # noqa: F401,F403

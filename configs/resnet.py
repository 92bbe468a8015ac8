"""Moved to jaxreg/configs/resnet.py (it ships with the package: `--config=resnet`);
`--config=configs/resnet.py` and `from configs import resnet` keep working through this file."""

from jaxreg.configs.resnet import *  # noqa: F401,F403

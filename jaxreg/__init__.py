"""jaxreg: how regularization changes a classifier's accuracy class by class."""

__version__ = "0.1.0"

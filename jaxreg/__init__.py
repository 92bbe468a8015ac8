"""jaxreg: how regularization changes a classifier's accuracy class by class.

The notebook API (jaxreg/notebook.py, docs/notebook.md), imported on first use so that
`import jaxreg` loads neither jax nor pandas:

  jaxreg.fit(config, workdir, **overrides) -> summary dict
  jaxreg.run_sweep(config, workdir, axes={...}) / jaxreg.load_sweep(dir) -> SweepResults
  jaxreg.load_run(dir) -> Run;  jaxreg.load_config(config, **overrides) -> ConfigDict
"""

__version__ = "0.1.0"

_NOTEBOOK = ("fit", "load_config", "load_run", "load_sweep", "run_sweep")


def __getattr__(name):
  # PEP 562: the notebook API on first use (jaxreg.train, .sweep, .report stay the
  # subpackages: `jaxreg.fit` trains).
  if name in _NOTEBOOK:
    from jaxreg import notebook
    return getattr(notebook, name)
  raise AttributeError(f"module 'jaxreg' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_NOTEBOOK])

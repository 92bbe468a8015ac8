"""EarlyStopping (jaxreg/train/early_stopping.py; moved out of optim.py with its tests)."""

import json

import pytest

from jaxreg.train.early_stopping import EarlyStopping


def test_early_stopping_max_patience_and_reset():
  es = EarlyStopping(metric="accuracy", mode="max", patience=2)
  es = es.update(0.5, step=1)  # first evaluation always improves
  assert (es.best, es.best_step, es.bad_evals, es.should_stop) == (0.5, 1, 0, False)
  es = es.update(0.5, step=2)  # equal is not better
  assert (es.bad_evals, es.should_stop) == (1, False)
  es = es.update(0.6, step=3)  # an improvement resets the count
  assert (es.best, es.best_step, es.bad_evals, es.should_stop) == (0.6, 3, 0, False)
  es = es.update(0.55, step=4)
  assert not es.should_stop
  es = es.update(0.59, step=5)  # 2nd consecutive non-improving: stop now
  assert es.should_stop and es.bad_evals == 2 and es.best_step == 3


def test_early_stopping_min_and_min_delta():
  es = EarlyStopping(metric="loss", mode="min", patience=1, min_delta=0.1)
  es = es.update(1.0, step=0)
  es = es.update(0.95, step=1)  # better by less than min_delta: not an improvement
  assert es.should_stop and es.best == 1.0 and es.best_step == 0
  es = EarlyStopping(metric="loss", mode="min", patience=1, min_delta=0.1)
  es = es.update(1.0, step=0).update(0.85, step=1)
  assert not es.should_stop and es.best == 0.85 and es.best_step == 1
  # mode max with min_delta.
  es = EarlyStopping(metric="acc", mode="max", patience=1, min_delta=0.1)
  assert es.update(0.5, 0).update(0.55, 1).should_stop
  assert not es.update(0.5, 0).update(0.65, 1).should_stop


def test_early_stopping_patience_zero_never_stops_and_nan():
  es = EarlyStopping(metric="acc", mode="max", patience=0)
  for step, v in enumerate([0.9] + [0.1] * 20):
    es = es.update(v, step)
  assert not es.should_stop and es.bad_evals == 20
  es = EarlyStopping(metric="loss", mode="min", patience=3)
  es = es.update(float("nan"), 0)
  assert es.best is None and es.bad_evals == 1
  es = es.update(2.0, 1)
  assert es.best == 2.0 and es.bad_evals == 0


def test_early_stopping_dict_round_trip_and_validation():
  es = EarlyStopping(metric="macro_f1", mode="max", patience=3, min_delta=0.01)
  es = es.update(0.4, 10).update(0.3, 20)
  d = json.loads(json.dumps(es.to_dict()))
  assert EarlyStopping.from_dict(d) == es
  fresh = EarlyStopping(metric="loss", mode="min")
  assert EarlyStopping.from_dict(json.loads(json.dumps(fresh.to_dict()))) == fresh
  with pytest.raises(ValueError, match="unknown keys"):
    EarlyStopping.from_dict(dict(d, extra=1))
  with pytest.raises(ValueError, match="mode='up'"):
    EarlyStopping(metric="acc", mode="up")
  with pytest.raises(ValueError, match="patience=-1"):
    EarlyStopping(metric="acc", patience=-1)


def test_early_stopping_from_config_and_a_bad_min_delta():
  from tests.conftest import tiny_config
  config = tiny_config(**{"train.early_stopping.patience": 2})
  es = EarlyStopping.from_config(config.train.early_stopping)
  assert (es.metric, es.mode, es.patience, es.min_delta) == ("accuracy", "max", 2, 0.0)
  with pytest.raises(ValueError, match="min_delta=inf"):
    EarlyStopping(metric="acc", min_delta=float("inf"))

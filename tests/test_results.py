"""End-to-end claims of docs/results/builtin.md on the built-in dataset (slow tier)."""

import numpy as np
import pytest

from jaxreg import train
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow


def test_default_lstm_reaches_95_percent_within_two_minutes(tmp_path):
  from configs import lstm
  summary = train.train_and_evaluate(lstm.get_config(), tmp_path)
  assert summary["test"]["accuracy"] >= 0.95, summary["test"]["per_class_accuracy"]
  assert summary["train_seconds"] <= 120
  assert (tmp_path / "plots" / "val_per_class_accuracy.png").stat().st_size > 10_000


FRAGILE = ("rare", "order_xy", "order_yx", "conj_pq")
FREQUENT = ("freq_a", "freq_b", "freq_c", "freq_d")


def _per_class(summary):
  t = summary["test"]
  return dict(zip(t["class_names"], t["per_class_accuracy"]))


def test_weight_decay_costs_the_fragile_classes_not_the_frequent_ones(tmp_path):
  # Momentum SGD: coupled L2 then trades off against each class's share of the loss
  # (Adam's per-parameter normalization makes the collapse erratic across seeds).
  # Median over 3 seeds: XLA compiles for the CPU it runs on, and single runs of this
  # recipe are unstable on some CPUs (an AMD EPYC without AVX-512: seed 0 at L2 3e-3
  # also loses freq_b), while the per-class pattern holds in the median on every CPU
  # seen so far.
  common = {"data.synthetic.train_size": 3000, "data.synthetic.test_per_class": 100,
            "train.epochs": 8, "optim.name": "momentum", "optim.learning_rate": 0.1,
            "train.log_every_steps": 50}

  def median_per_class(name, **extra):
    runs = [_per_class(train.train_and_evaluate(
        tiny_config(**common, **extra, seed=seed), tmp_path / f"{name}{seed}"))
            for seed in (0, 1, 2)]
    return {c: float(np.median([r[c] for r in runs])) for c in runs[0]}

  plain = median_per_class("plain")
  decayed = median_per_class("l2", **{"reg.l2": 0.003})
  drop = {c: plain[c] - decayed[c] for c in plain}
  assert all(plain[c] >= 0.75 for c in plain), plain  # unregularized learns them all
  assert all(decayed[c] >= 0.95 for c in FREQUENT), decayed
  assert drop["rare"] >= 0.3, drop
  fragile_loss = sum(max(drop[c], 0) for c in FRAGILE)
  frequent_loss = sum(max(drop[c], 0) for c in FREQUENT)
  assert np.mean([drop[c] for c in FRAGILE]) >= 0.15, drop
  assert frequent_loss <= 0.1 * fragile_loss, drop


def test_tensorboard_shows_loss_accuracy_and_per_class_accuracy(tmp_path):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  train.train_and_evaluate(tiny_config(), tmp_path)
  acc = EventAccumulator(str(tmp_path / "tensorboard"))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  assert {"val/loss", "val/accuracy", "train/accuracy", "train/step_loss",
          "val/worst_class_accuracy", "val/class_accuracy/rare"} <= tags
  assert [e.step for e in acc.Scalars("val/accuracy")] == [12, 24]

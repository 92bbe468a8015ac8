"""Own data without friction (issue 16, item 9): recipes that apply to any source,
warmup as a share of training, compressed and HTML-escaped inputs, a validation file,
the length/truncation log, class names that survive every table."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest

from jaxreg import config as config_lib
from jaxreg import optim
from jaxreg.configs import bert as bert_config


# ------------------------------------------------------------------ warmup fraction


def _optim(**over):
  o = config_lib.get_base_config().optim
  o.update(over)
  return o


def test_warmup_fraction_scales_with_the_run():
  """warmup_fraction=0.1 warms up over 10% of the run, whatever its length."""
  for total in (110, 1000):
    f = optim.schedule_shape(_optim(schedule="warmup_linear", warmup_fraction=0.1),
                             steps_per_epoch=10, total_steps=total)
    w = round(0.1 * total)
    np.testing.assert_allclose([f(0), f(w // 2), f(w), f(total)],
                               [0.0, (w // 2) / w, 1.0, 0.0], atol=1e-6)
    assert float(f(w - 1)) < 1.0


def test_warmup_steps_and_fraction_together_is_a_one_line_error():
  c = bert_config.get_config()
  c.optim.warmup_steps = 46
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  msg = str(e.value)
  assert "optim.warmup_steps=46" in msg and "optim.warmup_fraction=0.1" in msg
  assert "\n" not in msg


def test_bert_config_warms_up_a_share_not_a_step_count():
  c = bert_config.get_config()
  assert c.optim.warmup_steps == 0 and c.optim.warmup_fraction == pytest.approx(0.1)
  assert c.optim.schedule == "warmup_linear"
  # TREC's 154 steps per epoch x 3 epochs: the 46 steps the config used to hard-code.
  assert optim.warmup_steps(c.optim, 154 * 3) == 46

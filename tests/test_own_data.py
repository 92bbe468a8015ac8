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


# ------------------------------------------------------------------ compressed inputs


def _data_cfg(tmp_path, **over):
  c = config_lib.get_base_config().data
  c.cache_dir = str(tmp_path / "cache")
  c.update(over)
  return c


AG_ROWS = [("3", "Wall St. Bears Claw Back", "Short-sellers, Wall Street's dwindling band"),
           ("4", "Oil prices soar", "it#39;s a #36;5 rise &amp; more<br />now"),
           ("3", "Stocks fall", "quot;Sell!quot; said one &lt;b&gt;trader&lt;/b&gt;"),
           ("1", "Vote today", "polls open, lines long")]


def _gz(path, text):
  path.write_bytes(gzip.compress(text.encode()))
  return str(path)


@pytest.mark.parametrize("source", ["csv", "tsv", "jsonl"])
def test_gzip_files_read_as_their_plain_text(tmp_path, source):
  """AG News ships as train.csv.gz without a header: read through, not refused with a
  'column 1 must be a 0-based index below 1' error about the compressed bytes."""
  from jaxreg.data import files
  if source == "jsonl":
    body = "".join(json.dumps({"label": lab, "title": t, "body": b}) + "\n"
                   for lab, t, b in AG_ROWS)
    fields = dict(text_fields="title,body", label_field="label")
  else:
    sep = "," if source == "csv" else "\t"
    body = "".join(sep.join(['"%s"' % x if source == "csv" else x for x in row]) + "\n"
                   for row in AG_ROWS)
    fields = dict(text_fields="1,2", label_field="0", header=False)
  plain = tmp_path / f"train.{source}"
  plain.write_text(body)
  gz = _gz(tmp_path / f"train.{source}.gz", body)
  got = {}
  for path in (str(plain), gz):
    raw = files.load(_data_cfg(tmp_path, source=source, train_file=path,
                               test_file=path, test_fraction=0.0, **fields))
    got[path] = (raw.train.texts, raw.train.labels.tolist(), raw.class_names)
  assert got[gz] == got[str(plain)]
  assert got[gz][2] == ["1", "3", "4"] and len(got[gz][0]) == 4


@pytest.mark.parametrize("magic,kind", [(b"PK\x03\x04rest", "zip"),
                                        (b"BZh91AY&SY", "bzip2"),
                                        (b"a,b\n\x00\x01\x02", "NUL")])
def test_other_binary_input_is_a_one_line_error(tmp_path, magic, kind):
  from jaxreg.data import files
  path = tmp_path / "train.csv"
  path.write_bytes(magic)
  with pytest.raises(ValueError) as e:
    files.load(_data_cfg(tmp_path, source="csv", train_file=str(path),
                         test_file=str(path), test_fraction=0.0))
  assert str(path) in str(e.value) and kind in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ HTML entities


def test_strip_html_decodes_entities_also_without_their_ampersand():
  from jaxreg.data import text
  tok = lambda s: text.tokenize(s, punctuation="keep", strip_html=True)  # noqa: E731
  assert tok("it#39;s a #36;5 rise &amp; more<br />now") == \
      ["it's", "a", "$5", "rise", "&", "more", "now"]
  assert tok("quot;Sell!quot; said &lt;b&gt;one&lt;/b&gt; AT&amp;T") == \
      ['"sell!"', "said", "one", "at&t"]
  # Left alone: what is not a lost entity, and everything without strip_html.
  assert tok("issue #7; salt; caf&eacute;") == ["issue", "#7;", "salt;", "café"]
  assert text.tokenize("it#39;s", punctuation="keep") == ["it#39;s"]


def test_strip_html_entities_change_the_cache_key(tmp_path):
  """Entries prepared before entities were decoded are not reused."""
  from jaxreg.data import text
  on = _data_cfg(tmp_path, strip_html=True)
  off = _data_cfg(tmp_path, strip_html=False)
  assert text.settings(on).get("html_entities") == 1
  assert "html_entities" not in text.settings(off)

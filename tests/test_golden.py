"""The redesign's guard: golden solo runs stay bit-identical (see tests/golden.py)."""

import json

import pytest

from tests import golden

@pytest.mark.slow
def test_golden_runs_are_bit_identical(tmp_path):
  path = golden.golden_path()
  if not path.exists():
    pytest.skip(f"no golden recorded for this machine {golden.signature()}: "
                "python -m tests.golden --record")
  now = golden.run_all(tmp_path)
  diffs = golden.differences(json.loads(path.read_text())["runs"], now)
  assert not diffs, diffs


def test_a_changed_number_is_caught(tmp_path):
  """The comparison itself: one float in one line, or one parameter hash, differs."""
  run = {"summary": {"test": {"accuracy": 0.5}}, "params": {"sha256": "a"},
         "metrics": [{"split": "val", "step": 1, "loss": 0.25}]}
  other = json.loads(json.dumps(run))
  other["metrics"][0]["loss"] = 0.25000000000000006
  assert golden.differences({"r": run}, {"r": other}) == [
      "r: metrics.jsonl line 1 (val step 1) differs in loss"]
  other = json.loads(json.dumps(run))
  other["params"]["sha256"] = "b"
  assert golden.differences({"r": run}, {"r": other}) == ["r: params differ"]

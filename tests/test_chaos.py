"""The chaos campaign (tests/chaos.py) with 5 SIGKILLs: during saves, in the final
evaluation and at random times; every rerun must end exactly like the uninterrupted
run. The seed is printed (JAXREG_CHAOS_SEED=S replays it); `python -m tests.chaos
--kills=N` runs longer campaigns."""

import os
import time

import pytest

from tests import chaos


@pytest.mark.slow
def test_five_kills_at_random_points_all_rerun_to_the_same_result(tmp_path, capsys):
  seed = int(os.environ.get("JAXREG_CHAOS_SEED", int(time.time() * 1000) % 2**31))
  with capsys.disabled():
    print(f"\nJAXREG_CHAOS_SEED={seed}")
  problems = chaos.campaign(kills=5, seed=seed, base=tmp_path)
  assert problems == [], f"seed {seed}: " + "; ".join(problems)

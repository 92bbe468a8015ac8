"""The benchmark that needs no PyTorch runs end to end on the current APIs (it calls
jaxreg.group and train internals, so a refactor there broke it once unnoticed)."""

import re
import subprocess
import sys

from tests.conftest import ROOT, python_env


def test_vmap_sweep_quick_prints_a_ratio_per_k():
  out = subprocess.run([sys.executable, str(ROOT / "bench" / "vmap_sweep.py"), "--quick"],
                       capture_output=True, text=True, env=python_env(), timeout=600,
                       check=True).stdout
  rows = re.findall(r"^\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s*$", out,
                    re.M)
  assert [k for k, _ in rows] == ["1", "4"], out
  assert all(float(ratio) > 0 for _, ratio in rows), out

"""What the bench scripts share: PyTorch when it is installed, alternating timed rounds,
and the record of where a number came from (device, commit, versions, load).

The scripts put their own directory on sys.path (python bench/NAME.py), so they import
this module as `benchlib`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

# Said (printed and recorded) whenever a PyTorch half is left out: CI has no torch.
TORCH_SKIPPED = "PyTorch half skipped: torch is not installed"
# Written by bench/gpu_carry.py next to the wheels: the device machine gets a copy of
# the working tree without .git, so the commit travels as a file.
CARRY_DIR = ROOT / ".gpu_carry"
# bench/gpu_suite.py leaves its last GPU result here (the device machine keeps it while
# warm): bench/resnet50_cifar_93.py sizes its epochs from its ResNet-50 images/s.
LAST_SUITE = Path.home() / ".cache" / "jaxreg" / "gpu_suite_last.json"
VERSIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy",
            "transformers", "tokenizers", "huggingface-hub", "ml_collections", "torch")


def import_torch():
  """torch, or None when it is not installed (the caller skips its PyTorch half)."""
  try:
    import torch
  except ImportError:
    return None
  return torch


def alternate(runs: dict, rounds: int) -> dict:
  """{name: fn() -> seconds}: `rounds` rounds of every fn in turn (drift on a busy
  machine hits each alike) -> {name: [seconds per round]}."""
  out = {name: [] for name in runs}
  for _ in range(rounds):
    for name, fn in runs.items():
      out[name].append(fn())
  return out


def median(values) -> float:
  return statistics.median(values)


def load_average() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "unknown"


def source() -> dict:
  """The code version: git when .git is here, else the carried source.json."""
  def git(*args):
    try:
      out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
      return None
    return out.stdout.strip() if out.returncode == 0 else None
  commit = git("rev-parse", "HEAD")
  if commit:
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "from": "git"}
  carried = CARRY_DIR / "source.json"
  if carried.exists():
    return {**json.loads(carried.read_text()), "from": str(carried.relative_to(ROOT))}
  return {"commit": None, "from": "unknown (no .git, no carried source.json)"}


def versions() -> dict:
  out = {"python": platform.python_version()}
  for name in VERSIONS:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def environment(torch=None) -> dict:
  """Where the numbers come from. Call after the benchmark has imported jax."""
  import jax
  dev = jax.devices()[0]
  env = {"jax_device": f"{dev.platform} x{len(jax.devices())} ({dev.device_kind})",
         "backend": jax.default_backend(),
         # getattr: a record must never fail a finished measurement on another jax.
         "jax_default_matmul_precision": getattr(
             jax.config, "jax_default_matmul_precision", "unknown"),
         "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "xla_mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", ""),
         "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
         "load_average": load_average(), "source": source(), "versions": versions(),
         "torch": None if torch is None else torch_settings(torch)}
  return env


def torch_device(torch) -> str:
  return "cuda" if torch.cuda.is_available() else "cpu"


def fix_torch_settings(torch) -> None:
  """The PyTorch settings every comparison runs under (written into the results by
  torch_settings). TF32 allowed for float32 matmuls and convolutions, as JAX's
  default precision does on a GPU; cudnn.benchmark picks the fastest convolution."""
  torch.manual_seed(0)
  torch.backends.cuda.matmul.allow_tf32 = True
  torch.backends.cudnn.allow_tf32 = True
  torch.backends.cudnn.benchmark = True


def _fp32_precision(module) -> str | None:
  value = getattr(module, "fp32_precision", None)
  return None if value is None else str(value)


def torch_settings(torch) -> dict:
  out = {"version": torch.__version__, "device": torch_device(torch),
         "threads": torch.get_num_threads(),
         "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
         "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
         "cudnn_benchmark": torch.backends.cudnn.benchmark,
         # torch >= 2.9's view of the same flags (absent before).
         "fp32_precision": {
             k: _fp32_precision(m)
             for k, m in (("matmul", torch.backends.cuda.matmul),
                          ("conv", getattr(torch.backends.cudnn, "conv", None)),
                          ("rnn", getattr(torch.backends.cudnn, "rnn", None)))},
         "cudnn_version": torch.backends.cudnn.version()
         if torch.backends.cudnn.is_available() else None}
  if torch.cuda.is_available():
    out["gpu"] = torch.cuda.get_device_name()
  return out


def sync_torch(torch) -> None:
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def gpu_info() -> list[dict] | None:
  """nvidia-smi's view (no CUDA context is created in this process)."""
  try:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,"
         "clocks.max.sm,temperature.gpu,utilization.gpu", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.TimeoutExpired):
    return None
  if out.returncode != 0:
    return None
  keys = ("name", "driver", "memory", "sm_clock", "max_sm_clock", "temperature_c",
          "utilization")
  return [dict(zip(keys, (v.strip() for v in line.split(","))))
          for line in out.stdout.strip().splitlines()]


def write_json(path, payload) -> None:
  if path:
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")

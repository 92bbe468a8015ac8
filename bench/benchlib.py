"""What the bench scripts share: PyTorch when it is installed, jaxreg's timed train
step, alternating timed rounds, and the record of where a number came from (device,
commit, versions, load).

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
import time
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


def start(threads: int = 0):
  """jaxreg's compilation cache, then jax, then torch, in that order (jax first claims
  its share of a GPU). Returns torch, or None when it is not installed (said on stdout);
  `threads` > 0 limits torch's CPU threads."""
  # Here, not at the top: a script may set XLA_FLAGS before jax starts.
  from jaxreg import cli
  cli.enable_compilation_cache()
  import jax  # noqa: F401
  torch = import_torch()
  if torch is None:
    print(TORCH_SKIPPED, flush=True)
  elif threads:
    torch.set_num_threads(threads)
  return torch


def record(path, bench: str, quick: bool, torch, env: dict, **results) -> dict:
  """A comparison's JSON record, also written to `path` when one is given."""
  out = {"bench": bench, "quick": quick,
         "torch_skipped": TORCH_SKIPPED if torch is None else None, "env": env,
         **results}
  write_json(path, out)
  return out


class JaxregStep:
  """jaxreg's optimizer chain and jitted train step (jaxreg.train.compile_steps) for
  `model` under `config`, on a mesh of every device: `put` moves batches there, `run`
  trains on them and returns the seconds it took. The model is initialized from key 0
  on `sample`; `num_params` counts its parameters."""

  def __init__(self, config, model, sample: dict, classes: int):
    # Here, not at the top: a script imports jax after setting up jaxreg's compilation
    # cache and before torch (jax first claims its share of a GPU).
    import jax
    from jaxreg import metrics, parallel, train
    self._jax, self._parallel = jax, parallel
    self.mesh = parallel.make_mesh()
    variables = dict(jax.jit(model.init)(jax.random.key(0), sample))
    params = variables.pop("params")
    self.num_params = sum(int(x.size) for x in jax.tree.leaves(params))
    tx = train.make_optimizer(config, params, steps_per_epoch=100)
    self.state = parallel.put_replicated(train.TrainState.create(
        apply_fn=model.apply, params=params, tx=tx,
        rng=jax.random.key_data(jax.random.key(1)), model_state=variables), self.mesh)
    self.step_fn, _ = train.compile_steps(model, self.mesh, classes)
    self.counts = parallel.put_replicated(metrics.zero_counts(classes), self.mesh)

  def put(self, batches):
    return [self._parallel.put_batch(b, self.mesh) for b in batches]

  def run(self, batches) -> float:
    t0 = time.perf_counter()
    for batch in batches:
      self.state, self.counts, out = self.step_fn(self.state, batch, self.counts)
    self._jax.block_until_ready((self.state.params, out["loss"]))
    return time.perf_counter() - t0


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

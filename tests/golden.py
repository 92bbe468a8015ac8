"""Golden solo runs: the guard of the one-loop redesign (issue 15, step 0).

Four short runs (the default LSTM of `make run`, a tiny 2-layer LSTM with every dropout
on and length-sorted batches, a tiny ResNet, a tiny BERT with dropout) must give
bit-identical metrics and final parameters through every refactoring step. XLA compiles
for the CPU it runs on, so the same code gives other bits on another CPU model or jax
version: goldens are recorded per machine signature (CPU model and vector extensions,
package versions) under tests/golden/, and tests/test_golden.py compares only where a
golden of this signature exists (elsewhere it skips and says how to record one).

  python -m tests.golden --record        # (re)record this machine's goldens
  python -m tests.golden                 # compare, print what differs

A change that is meant to alter numbers (e.g. optax's schedules instead of hand-written
ones) re-records the goldens in its own commit and says why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "numpy")
# Fields of metrics.jsonl / summary.json that are measurements of time, not results.
TIMING = {"train_seconds", "examples_per_second", "epoch_seconds",
          "time_to_target_seconds", "provenance", "seconds"}
# Descriptions of the input, not results of training: summary.json gained them after
# goldens were recorded on other machines, whose files a re-record here cannot update.
DESCRIPTIVE = {"data_lengths"}


def signature() -> dict:
  cpu, flags = platform.machine(), ""
  try:
    info = Path("/proc/cpuinfo").read_text()
    cpu = next((l.split(":", 1)[1].strip() for l in info.splitlines()
                if l.startswith("model name")), cpu)
    flags = next((l.split(":", 1)[1] for l in info.splitlines()
                  if l.startswith("flags")), "")
  except OSError:
    pass
  ext = sorted(f for f in flags.split() if f.startswith(("avx", "fma", "amx")))
  versions = {}
  for p in PACKAGES:
    try:
      versions[p] = metadata.version(p)
    except metadata.PackageNotFoundError:
      versions[p] = None
  return {"cpu": cpu, "extensions": ext, "python": platform.python_version()[:4],
          **versions}


def signature_key(sig: dict | None = None) -> str:
  sig = sig or signature()
  return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]


def _configs(tmp: Path) -> dict:
  sys.path.insert(0, str(ROOT))
  from configs import lstm, resnet
  from tests.conftest import tiny_config
  from tests.test_bert import tiny_bert_config
  bert_tmp = tmp / "bert_inputs"
  bert_tmp.mkdir(parents=True, exist_ok=True)
  return {"lstm_default": lstm.get_config(),
          # every RNN dropout on, length-sorted windows, several buckets
          "lstm_dropout": tiny_config(**{
              "model.num_layers": 2, "model.dropout.embed": 0.2,
              "model.dropout.between": 0.2, "model.dropout.output": 0.2,
              "data.sort_window": 3, "train.epochs": 2}),
          "resnet_tiny": resnet.get_config("tiny"),
          "bert_tiny": tiny_bert_config(bert_tmp, "bert",
                                        **{"model.dropout.hidden": 0.1})}


def _strip(record):
  if isinstance(record, dict):
    return {k: _strip(v) for k, v in record.items() if k not in TIMING | DESCRIPTIVE}
  if isinstance(record, list):
    return [_strip(v) for v in record]
  return record


def params_digest(workdir: Path) -> dict:
  """sha256 of every array of the latest checkpoint's state (orbax, no jaxreg code)."""
  import orbax.checkpoint as ocp
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                 if p.name.isdigit())
  tree = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(steps[-1])
                                            / "state")
  import jax
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  h = hashlib.sha256()
  for path, leaf in leaves:
    arr = np.asarray(leaf)
    h.update(jax.tree_util.keystr(path).encode())
    h.update(str(arr.dtype).encode() + str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
  return {"latest_step": steps[-1], "leaves": len(leaves), "sha256": h.hexdigest()}


def run_all(tmp: Path) -> dict:
  import os
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from jaxreg import train
  out = {}
  for name, config in _configs(tmp).items():
    workdir = tmp / name
    summary = train.train_and_evaluate(config, workdir)
    lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
    out[name] = {"summary": _strip(summary), "metrics": _strip(lines),
                 "params": params_digest(workdir)}
  return out


def differences(golden: dict, now: dict) -> list[str]:
  diffs = []
  for name in golden:
    g, n = golden[name], now.get(name)
    if n is None:
      diffs.append(f"{name}: not run")
      continue
    for part in ("params", "summary"):
      if g[part] != n[part]:
        diffs.append(f"{name}: {part} differ")
    gm, nm = g["metrics"], n["metrics"]
    if len(gm) != len(nm):
      diffs.append(f"{name}: metrics.jsonl has {len(nm)} lines, golden {len(gm)}")
    for i, (a, b) in enumerate(zip(gm, nm)):
      if a != b:
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        diffs.append(f"{name}: metrics.jsonl line {i + 1} ({a.get('split')} step "
                     f"{a.get('step')}) differs in {', '.join(keys)}")
        break
  return diffs


def golden_path() -> Path:
  return GOLDEN_DIR / f"{signature_key()}.json"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--record", action="store_true", help="write this machine's goldens")
  args = ap.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    now = run_all(Path(tmp))
  path = golden_path()
  if args.record:
    GOLDEN_DIR.mkdir(exist_ok=True)
    path.write_text(json.dumps({"signature": signature(), "runs": now}, indent=1,
                               sort_keys=True) + "\n")
    print(f"recorded {path}")
    return 0
  if not path.exists():
    print(f"no golden for this machine ({signature()}); record with --record")
    return 1
  diffs = differences(json.loads(path.read_text())["runs"], now)
  print("\n".join(diffs) or "identical to the goldens")
  return 1 if diffs else 0


if __name__ == "__main__":
  sys.exit(main())

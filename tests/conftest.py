"""Shared test setup: the repo root importable (configs/), the compile cache on."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

from jaxreg import cli  # noqa: E402

cli.enable_compilation_cache()


def tiny_config(**overrides):
  """configs/lstm.py:tiny with dotted-key overrides, e.g. {'reg.l2': 1e-3}."""
  from configs import lstm
  from jaxreg.sweep import config_for
  return config_for(lstm.get_config("tiny"), overrides)


@pytest.fixture
def make_config():
  return tiny_config


def kill_when_exists(proc, path: Path, timeout: float, what: str) -> None:
  """SIGKILLs `proc` as soon as `path` exists (e.g. a finished checkpoint)."""
  import signal
  import time
  deadline = time.time() + timeout
  while not path.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert path.exists(), f"{what} never appeared"
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def python_env(**extra):
  """Environment for a subprocess that runs jaxreg from this checkout."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  env.update(extra)
  return env


_CUE_WORDS = {"north": "n", "south": "s", "east": "e", "west": "w"}


def _varied_length_rows(n: int, seed: int) -> list[dict]:
  """Texts of 2-8 words, one in 16 of 20-64 words: batches of 16 fall in buckets of
  8, 32 and 64 tokens (4 classes, a cue word somewhere in each text)."""
  rng = np.random.default_rng(seed)
  filler = [f"f{i}" for i in range(40)]
  rows = []
  for i in range(n):
    label = list(_CUE_WORDS)[i % 4]
    length = int(rng.integers(20, 65) if rng.random() < 1 / 16 else rng.integers(2, 9))
    words = list(rng.choice(filler, length - 1)) + [label]
    rng.shuffle(words)
    rows.append({"text": " ".join(words), "label": label})
  return rows


def varied_length_data(tmp_path) -> dict:
  """Config overrides for a JSONL text set (written to `tmp_path`) of 4 classes whose
  batches of 16 fall in length buckets 8, 32 and 64 (tests/test_group.py,
  bench/group_probe.py)."""
  files = {}
  for name, n, seed in (("train", 160, 0), ("test", 40, 1)):
    files[name] = tmp_path / f"{name}.jsonl"
    files[name].write_text("".join(json.dumps(r) + "\n"
                                   for r in _varied_length_rows(n, seed)))
  return {"data.source": "jsonl", "data.train_file": str(files["train"]),
          "data.test_file": str(files["test"]), "data.cache_dir": "",
          "data.val_fraction": 0.2, "data.max_length": 64, "data.buckets": "8,32",
          "train.batch_size": 16, "train.log_every_steps": 1}


def train_on_one_batch(config, model, variables, batch, steps: int,
                       num_classes: int) -> tuple[list, dict]:
  """jaxreg's jitted train step `steps` times on one batch -> (losses, final params)
  (tests/test_bf16.py, tests/test_rnn_hoist.py)."""
  import jax
  from jaxreg import metrics, parallel, train
  variables = dict(variables)
  params = variables.pop("params")
  mesh = parallel.make_mesh()
  state = parallel.put_replicated(train.TrainState.create(
      apply_fn=model.apply, params=params, tx=train.make_optimizer(config, params, 100),
      rng=jax.random.key_data(jax.random.key(1)), model_state=variables), mesh)
  step, _ = train.compile_steps(model, mesh, num_classes)
  counts = parallel.put_replicated(metrics.zero_counts(num_classes), mesh)
  device_batch = parallel.put_batch(batch, mesh)
  losses = []
  for _ in range(steps):
    state, counts, out = step(state, device_batch, counts)
    losses.append(float(out["loss"]))
  return losses, jax.device_get(state.params)

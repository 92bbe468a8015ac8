"""jaxreg's LSTM train step against PyTorch nn.LSTM + pack_padded_sequence, one process.

  .venv/bin/python bench/rnn_vs_torch.py                 # TREC and IMDB shapes
  .venv/bin/python bench/rnn_vs_torch.py --shape=trec --rounds=7

The same classifier on both sides (embedding, one LSTM layer, last valid state, linear
head, Adam lr 1e-3, cross-entropy), the same vocabulary size and the same batches (token
ids, lengths, labels drawn once and fed to both). jaxreg runs its real jitted
`train.train_step` over the device mesh (which also accumulates the training confusion
matrix); PyTorch runs the classic packed-sequence loop. Both are warmed up, then timed
in alternating rounds so that drift on a busy machine hits both alike; the median ms per
step of each is printed with the ratio jaxreg / torch (< 1: jaxreg is faster).

Shapes: `trec`: B=32, lengths of TREC questions (mean ~10, max 37 tokens; batches padded
to their longest sequence, as jaxreg's length buckets do), E=300, H=200, V=8700 (the
size of TREC's training vocabulary), 6 classes. `imdb`: B=64, T=256 (every review
truncated to 256 tokens), E=300, H=200, V=20000, 2 classes.
Time it on a quiet machine (no tests or other jobs), twice.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {
    "trec": dict(batch=32, vocab=8700, classes=6, embed=300, hidden=200,
                 lengths=("trec", 37)),
    "imdb": dict(batch=64, vocab=20000, classes=2, embed=300, hidden=200,
                 lengths=("fixed", 256)),
}


def make_batches(shape: dict, steps: int, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  b = shape["batch"]
  kind, top = shape["lengths"]
  batches = []
  for _ in range(steps):
    if kind == "trec":  # TREC question lengths: mostly 5-15 tokens, a few up to 37
      lengths = np.clip(rng.gamma(4.0, 2.6, b).round().astype(np.int32), 3, top)
    else:
      lengths = np.full(b, top, np.int32)
    t = int(lengths.max())
    tokens = rng.integers(2, shape["vocab"], (b, t)).astype(np.int32)
    tokens[np.arange(t)[None, :] >= lengths[:, None]] = 0
    batches.append({"tokens": tokens, "lengths": lengths,
                    "labels": rng.integers(0, shape["classes"], b).astype(np.int32),
                    "mask": np.ones(b, bool)})
  return batches


class JaxregStep:
  """jaxreg's own model, optimizer chain and jitted train step."""

  def __init__(self, shape: dict):
    import jax
    from jaxreg import config as config_lib, metrics, optim, parallel, train
    from jaxreg.models import rnn
    config = config_lib.get_base_config()
    config.model.embed_size, config.model.hidden_size = shape["embed"], shape["hidden"]
    config.optim.learning_rate = 1e-3
    self._jax, self._parallel = jax, parallel
    self.mesh = parallel.make_mesh()
    model = rnn.from_config(config.model, shape["vocab"], shape["classes"])
    sample = make_batches(shape, 1)[0]
    params = jax.jit(model.init)(jax.random.key(0), sample["tokens"],
                                 sample["lengths"])["params"]
    tx = optim.build_optimizer(config.optim, config.reg, params, 100, 10_000)
    self.state = parallel.put_replicated(train.TrainState.create(
        apply_fn=model.apply, params=params, tx=tx,
        rng=jax.random.key_data(jax.random.key(1))), self.mesh)
    self.step_fn, _ = train.compile_steps(model, self.mesh, shape["classes"])
    self.counts = parallel.put_replicated(metrics.zero_counts(shape["classes"]),
                                          self.mesh)

  def run(self, batches) -> float:
    t0 = time.perf_counter()
    for batch in batches:
      self.state, self.counts, out = self.step_fn(
          self.state, self._parallel.put_batch(batch, self.mesh), self.counts)
    self._jax.block_until_ready(out["loss"])
    return time.perf_counter() - t0


class TorchStep:
  def __init__(self, shape: dict):
    import torch
    from torch import nn
    torch.manual_seed(0)
    self.torch = torch

    class Model(nn.Module):
      def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(shape["vocab"], shape["embed"], padding_idx=0)
        self.lstm = nn.LSTM(shape["embed"], shape["hidden"], batch_first=True)
        self.head = nn.Linear(shape["hidden"], shape["classes"])

      def forward(self, tokens, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.head(h[-1])

    self.model = Model()
    self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
    self.loss = nn.CrossEntropyLoss()

  def run(self, batches) -> float:
    torch = self.torch
    tensors = [(torch.from_numpy(b["tokens"]).long(), torch.from_numpy(b["lengths"]),
                torch.from_numpy(b["labels"]).long()) for b in batches]
    t0 = time.perf_counter()
    for tokens, lengths, labels in tensors:
      self.opt.zero_grad(set_to_none=True)
      loss = self.loss(self.model(tokens, lengths), labels)
      loss.backward()
      self.opt.step()
    return time.perf_counter() - t0


def bench(name: str, steps: int, rounds: int) -> dict:
  shape = SHAPES[name]
  batches = make_batches(shape, steps)
  jx, th = JaxregStep(shape), TorchStep(shape)
  jx.run(batches), th.run(batches)  # warm-up: compile every batch shape once
  jax_ms, torch_ms = [], []
  for _ in range(rounds):
    jax_ms.append(1e3 * jx.run(batches) / steps)
    torch_ms.append(1e3 * th.run(batches) / steps)
  j, t = statistics.median(jax_ms), statistics.median(torch_ms)
  return {"shape": name, **{k: v for k, v in shape.items() if k != "lengths"},
          "steps_per_round": steps, "rounds": rounds,
          "jaxreg_ms_per_step": round(j, 3), "torch_ms_per_step": round(t, 3),
          "ratio_jaxreg_over_torch": round(j / t, 3),
          "jaxreg_rounds_ms": [round(x, 2) for x in jax_ms],
          "torch_rounds_ms": [round(x, 2) for x in torch_ms]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per round (default: 100 trec, 10 imdb)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args()
  import jax
  import torch
  names = list(SHAPES) if args.shape == "all" else [args.shape]
  results = []
  for name in names:
    steps = args.steps or (100 if name == "trec" else 10)
    r = bench(name, steps, args.rounds)
    results.append(r)
    print(f"{name}: B={r['batch']} E={r['embed']} H={r['hidden']} V={r['vocab']}  "
          f"jaxreg {r['jaxreg_ms_per_step']:.2f} ms/step  torch "
          f"{r['torch_ms_per_step']:.2f} ms/step  ratio {r['ratio_jaxreg_over_torch']:.2f}x",
          flush=True)
  env = {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
         "jax": jax.__version__, "torch": torch.__version__,
         "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or
         platform.machine()}
  print(json.dumps(env))
  if args.json:
    args.json.write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""jaxreg's LSTM train step against PyTorch nn.LSTM + pack_padded_sequence, one process.

  .venv/bin/python bench/rnn_vs_torch.py                 # TREC and IMDB shapes
  .venv/bin/python bench/rnn_vs_torch.py --shape=trec --rounds=7
  .venv/bin/python bench/rnn_vs_torch.py --quick         # tiny shapes, a smoke run
  .venv/bin/python bench/rnn_vs_torch.py --hoist         # jaxreg with model.hoist_input

The same classifier on both sides (embedding, one LSTM layer, last valid state, linear
head, Adam lr 1e-3, cross-entropy), the same vocabulary size and the same batches (token
ids, lengths, labels drawn once and fed to both). jaxreg runs its real jitted
`train.train_step` over the device mesh (which also accumulates the training confusion
matrix) with `train.make_optimizer`'s chain; PyTorch runs the classic packed-sequence
loop (on a GPU that is cuDNN's LSTM; float32 on both sides, TF32 allowed on both, see
benchlib.fix_torch_settings). Batches are put on the device before timing, on both
sides, so both time the step alone. Both are warmed up (every batch shape compiled),
then timed in alternating rounds so that drift on a busy machine hits both alike; the
median ms per step of each is printed with the time ratio jaxreg / torch (< 1: jaxreg
is faster). Without torch installed the PyTorch half is skipped (said so) and only
jaxreg's ms per step is printed.

Shapes: `trec`: B=32, lengths of TREC questions (mean ~10, max 37 tokens), padded as
jaxreg's TREC runs pad them (to the smallest of data.buckets 16, 32, 40 that holds the
batch's longest; torch packs the exact lengths), E=300, H=200, V=8700 (the size of
TREC's training vocabulary), 6 classes. `imdb`: B=64, T=256 (every review truncated to
256 tokens), E=300, H=200, V=20000, 2 classes. --quick shrinks both (V=500, E=H=16,
B=8, IMDB T=32) and runs 1 step, 1 round. --hoist sets model.hoist_input on jaxreg's
side: x @ W_i for all steps in one matmul before the scan, as cuDNN does
(bench/gpu_suite.py passes it).
Time it on a quiet machine (no tests or other jobs), twice.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SHAPES = {
    "trec": dict(batch=32, vocab=8700, classes=6, embed=300, hidden=200,
                 lengths=("trec", 37)),
    "imdb": dict(batch=64, vocab=20000, classes=2, embed=300, hidden=200,
                 lengths=("fixed", 256)),
}
QUICK = {"trec": dict(batch=8, vocab=500, embed=16, hidden=16),
         "imdb": dict(batch=8, vocab=500, embed=16, hidden=16, lengths=("fixed", 32))}
TREC_MAX_LENGTH = 40  # configs/datasets.py: data.max_length of TREC


def buckets() -> tuple[int, ...]:
  """The widths jaxreg pads TREC batches to (the base config's data.buckets)."""
  from jaxreg import config as config_lib
  from jaxreg.data import dataset
  return dataset.parse_buckets(config_lib.get_base_config().data.buckets,
                               TREC_MAX_LENGTH)


def make_batches(shape: dict, steps: int, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  b = shape["batch"]
  kind, top = shape["lengths"]
  widths = buckets()
  batches = []
  for _ in range(steps):
    if kind == "trec":  # TREC question lengths: mostly 5-15 tokens, a few up to 37
      lengths = np.clip(rng.gamma(4.0, 2.6, b).round().astype(np.int32), 3, top)
      t = next(w for w in widths if w >= lengths.max())
    else:
      lengths = np.full(b, top, np.int32)
      t = top
    tokens = rng.integers(2, shape["vocab"], (b, t)).astype(np.int32)
    tokens[np.arange(t)[None, :] >= lengths[:, None]] = 0
    batches.append({"tokens": tokens, "lengths": lengths,
                    "labels": rng.integers(0, shape["classes"], b).astype(np.int32),
                    "mask": np.ones(b, bool)})
  return batches


def jaxreg_step(shape: dict, hoist: bool = False) -> benchlib.JaxregStep:
  """jaxreg's own model, optimizer chain and jitted train step."""
  from jaxreg import config as config_lib
  from jaxreg.models import Model, rnn
  config = config_lib.get_base_config()
  config.model.embed_size, config.model.hidden_size = shape["embed"], shape["hidden"]
  config.model.hoist_input = hoist
  config.optim.learning_rate = 1e-3
  model = Model(rnn.from_config(config.model, shape["vocab"], shape["classes"]))
  return benchlib.JaxregStep(config, model, make_batches(shape, 1)[0], shape["classes"])


class TorchStep:
  def __init__(self, shape: dict, torch):
    from torch import nn
    benchlib.fix_torch_settings(torch)
    self.torch = torch
    self.device = torch.device(benchlib.torch_device(torch))

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

    self.model = Model().to(self.device)
    self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
    self.loss = nn.CrossEntropyLoss()

  def put(self, batches):
    torch = self.torch
    # pack_padded_sequence takes the lengths on the CPU (it sorts them there).
    return [(torch.from_numpy(b["tokens"]).long().to(self.device),
             torch.from_numpy(b["lengths"]).long(),
             torch.from_numpy(b["labels"]).long().to(self.device)) for b in batches]

  def run(self, batches) -> float:
    benchlib.sync_torch(self.torch)
    t0 = time.perf_counter()
    for tokens, lengths, labels in batches:
      self.opt.zero_grad(set_to_none=True)
      loss = self.loss(self.model(tokens, lengths), labels)
      loss.backward()
      self.opt.step()
    loss.item()  # waits for the device
    return time.perf_counter() - t0


def bench(name: str, shape: dict, steps: int, rounds: int, torch,
          hoist: bool = False) -> dict:
  host = make_batches(shape, steps)
  sides = {"jaxreg": jaxreg_step(shape, hoist)}
  if torch is not None:
    sides["torch"] = TorchStep(shape, torch)
  data = {k: side.put(host) for k, side in sides.items()}
  for k, side in sides.items():  # warm-up: compile every batch shape once
    side.run(data[k])
  rounds_s = benchlib.alternate({k: (lambda s=side, d=data[k]: s.run(d))
                                 for k, side in sides.items()}, rounds)
  ms = {k: [1e3 * s / steps for s in v] for k, v in rounds_s.items()}
  r = {"shape": name, **{k: v for k, v in shape.items() if k != "lengths"},
       "max_length": shape["lengths"][1], "hoist_input": hoist,
       "steps_per_round": steps, "rounds": rounds,
       "jaxreg_ms_per_step": round(benchlib.median(ms["jaxreg"]), 3),
       "jaxreg_rounds_ms": [round(x, 2) for x in ms["jaxreg"]],
       "torch_ms_per_step": None, "time_ratio_jaxreg_over_torch": None}
  if "torch" in ms:
    t = benchlib.median(ms["torch"])
    r.update(torch_ms_per_step=round(t, 3), torch_rounds_ms=[round(x, 2) for x in ms["torch"]],
             time_ratio_jaxreg_over_torch=round(r["jaxreg_ms_per_step"] / t, 3))
  return r


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per round (default: 100 trec, 10 imdb)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--quick", action="store_true",
                      help="tiny shapes, 1 step, 1 round (a smoke run)")
  parser.add_argument("--hoist", action="store_true",
                      help="jaxreg with model.hoist_input=True (the input projection "
                           "before the scan)")
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args(argv)
  torch = benchlib.start(threads=1 if args.quick else 0)
  names = list(SHAPES) if args.shape == "all" else [args.shape]
  results = []
  for name in names:
    shape = {**SHAPES[name], **(QUICK[name] if args.quick else {})}
    steps = 1 if args.quick else args.steps or (100 if name == "trec" else 10)
    r = bench(name, shape, steps, 1 if args.quick else args.rounds, torch, args.hoist)
    results.append(r)
    line = (f"{name}: B={r['batch']} E={r['embed']} H={r['hidden']} V={r['vocab']}  "
            f"jaxreg{' (hoisted)' if args.hoist else ''} "
            f"{r['jaxreg_ms_per_step']:.2f} ms/step")
    if r["torch_ms_per_step"] is not None:
      line += (f"  torch {r['torch_ms_per_step']:.2f} ms/step  time ratio jaxreg/torch "
               f"{r['time_ratio_jaxreg_over_torch']:.2f}x")
    print(line, flush=True)
  return benchlib.record(args.json, "rnn_vs_torch", args.quick, torch,
                         benchlib.environment(torch), results=results)


if __name__ == "__main__":
  main()

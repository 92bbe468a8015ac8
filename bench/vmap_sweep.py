"""K models in one compiled program (jaxreg.group) against K sequential solo runs.

  .venv/bin/python bench/vmap_sweep.py              # K = 1, 4, 16, 64
  .venv/bin/python bench/vmap_sweep.py --quick      # K = 1, 4; a few steps (smoke run)
  .venv/bin/python bench/vmap_sweep.py --ks=16 --rounds=7 --shared
  .venv/bin/python bench/vmap_sweep.py --ks=16 --steps=20 --json=vmap.json   # GPU

The TREC-sized LSTM classifier (B=32, sequences of 5-20 tokens padded to T=20, E=300,
H=200, V=8700, 6 classes; random token ids: only the shapes matter), Adam with decoupled
weight decay, output dropout 0.1. The K members differ in seed (so each has its own
batches: a [K, B, T] batch per step, as in a seed sweep; `--shared` gives all one batch,
as in a sweep at a fixed seed) and in weight decay.

- group: `jaxreg.feeds.jit_group_host_step`, the jit(vmap(member train step)) program
  that a group of text runs trains with (`jaxreg.train.run` over K configs), on the
  stacked state of the K members (`jaxreg.train.population`);
- sequential: the solo program of `train.compile_steps` (what `train.train_and_evaluate`
  runs) on the K members' own states, one member after another (n steps of member 1,
  then n of member 2, ...: consecutive steps on one state, as K runs in a row do).
  (`jaxreg.group.probe_timings` times the same two ways on a sweep's real batches.)

Both include the host-to-device copy of each step's batch, both are compiled and warmed
up first, then timed in alternating rounds (drift on a busy machine hits both alike).
Printed per K: milliseconds per group step and per K solo steps, model-steps per second
of each, and ratio = group throughput / sequential throughput (> 1: the group is faster;
the JSON also holds its inverse, the time ratio group / sequential, < 1: faster).
Time it on a quiet machine: other jobs change the ratio (the machine's load average is
printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SHAPE = dict(batch=32, length=20, min_length=5, vocab=8700, classes=6, embed=300,
             hidden=200)


def make_batches(k: int, n: int, seed: int = 0) -> list[list[dict]]:
  """n batches for each of k members (member i's own draws)."""
  out = []
  for i in range(k):
    rng = np.random.default_rng([seed, i])
    member = []
    for _ in range(n):
      b, t = SHAPE["batch"], SHAPE["length"]
      lengths = rng.integers(SHAPE["min_length"], t + 1, b).astype(np.int32)
      tokens = rng.integers(2, SHAPE["vocab"], (b, t)).astype(np.int32)
      tokens[np.arange(t)[None, :] >= lengths[:, None]] = 0
      member.append({"tokens": tokens, "lengths": lengths,
                     "labels": rng.integers(0, SHAPE["classes"], b).astype(np.int32),
                     "mask": np.ones(b, bool)})
    out.append(member)
  return out


class Bench:
  """The K members' states, the group program and the solo program."""

  def __init__(self, k: int, shared: bool, pool: int = 4):
    import jax
    from jaxreg import config as config_lib, feeds, metrics, parallel, train
    from jaxreg.models import Model, rnn
    from jaxreg.train import population, steps
    self.jax, self.feeds, self.parallel = jax, feeds, parallel
    self.k, self.shared = k, shared
    configs = []
    for i in range(k):
      c = config_lib.get_base_config()
      c.model.embed_size, c.model.hidden_size = SHAPE["embed"], SHAPE["hidden"]
      c.model.dropout.output = 0.1
      c.optim.learning_rate = 1e-3
      c.reg.weight_decay = float(10.0 ** -(1 + i % 4))
      c.seed = i
      configs.append(c)
    self.mesh = mesh = parallel.make_mesh()
    model = Model(rnn.from_config(configs[0].model, SHAPE["vocab"], SHAPE["classes"]))
    self.batches = make_batches(1 if shared else k, pool)
    sample = self.batches[0][0]
    init = jax.jit(model.init)
    params = [init(jax.random.key(c.seed), sample)["params"] for c in configs]
    steps_per_epoch = 100
    # Sequential: K solo states of one program (the same tx and model objects, so one
    # compilation), each with its own weight decay in opt_state.hyperparams.
    solo_tx = train.make_optimizer(configs[0], params[0], steps_per_epoch)
    self.solo_states = []
    for c, p in zip(configs, params):
      state = train.TrainState.create(apply_fn=model.apply, params=p, tx=solo_tx,
                                      rng=jax.random.key_data(jax.random.key(c.seed)))
      hp = population.member_hyperparams(c)
      state = state.replace(opt_state=population.with_hyperparams(state.opt_state, hp))
      self.solo_states.append(parallel.put_replicated(state, mesh))
    self.solo_counts = [parallel.put_replicated(metrics.zero_counts(SHAPE["classes"]),
                                                mesh) for _ in configs]
    self.solo_step, _ = train.compile_steps(model, mesh, SHAPE["classes"])
    # Group: the stacked state, the vmapped program.
    group_tx = train.make_optimizer(population.group_config(configs), params[0],
                                    steps_per_epoch)
    self.state = parallel.put_replicated(population.stack([
        population.group_state(s, group_tx, model.apply,
                               population.member_hyperparams(c))
        for s, c in zip(self.solo_states, configs)]), mesh)
    self.values = parallel.put_replicated(
        population.stack([population.member_values(c) for c in configs]), mesh)
    self.counts = parallel.put_replicated(population.stack(
        [metrics.zero_counts(SHAPE["classes"])] * k), mesh)
    self.group_step = feeds.jit_group_host_step(steps.bind(model, SHAPE["classes"]),
                                                mesh, shared)
    self.pool = pool
    self.t = 0

  def run_group(self, n: int) -> float:
    jax, feeds = self.jax, self.feeds
    t0 = time.perf_counter()
    for _ in range(n):
      j = self.t % self.pool
      self.t += 1
      batch = (self.parallel.put_batch(self.batches[0][j], self.mesh) if self.shared else
               feeds.put_stacked(feeds.stack_batches([m[j] for m in self.batches]),
                                 self.mesh))
      self.state, self.counts, out = self.group_step(self.state, self.values, batch,
                                                     self.counts)
    jax.block_until_ready((self.state, out))
    return time.perf_counter() - t0

  def run_sequential(self, n: int) -> float:
    jax, parallel = self.jax, self.parallel
    t0 = time.perf_counter()
    outs = []
    for i in range(self.k):  # K runs one after another: n steps of member i, then i+1
      for j in range(n):
        batch = self.batches[0 if self.shared else i][(self.t + j) % self.pool]
        self.solo_states[i], self.solo_counts[i], out = self.solo_step(
            self.solo_states[i], parallel.put_batch(batch, self.mesh),
            self.solo_counts[i])
        outs.append(out)
    self.t += n
    jax.block_until_ready((self.solo_states, outs))
    return time.perf_counter() - t0


def bench_k(k: int, shared: bool, rounds: int, steps: int) -> dict:
  b = Bench(k, shared)
  t0 = time.perf_counter()
  b.run_group(1)
  b.run_sequential(1)
  compile_s = time.perf_counter() - t0
  b.run_group(1)  # warm up
  b.run_sequential(1)
  group_t, seq_t = [], []
  for _ in range(rounds):
    group_t.append(b.run_group(steps) / steps)
    seq_t.append(b.run_sequential(steps) / steps)
  g, s = statistics.median(group_t), statistics.median(seq_t)
  return {"k": k, "shared_batch": shared, "group_ms_per_step": 1e3 * g,
          "sequential_ms_per_k_steps": 1e3 * s, "group_model_steps_per_s": k / g,
          "sequential_model_steps_per_s": k / s, "ratio": s / g,
          "time_ratio_group_over_sequential": g / s,
          "compile_and_first_steps_s": compile_s, "rounds": rounds, "steps": steps}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ks", default="1,4,16,64", help="comma-separated K values")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
  parser.add_argument("--shared", action="store_true",
                      help="one batch for all members (a sweep at a fixed seed)")
  parser.add_argument("--quick", action="store_true",
                      help="K = 1, 4 with 2 rounds of 2 steps (a smoke run)")
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args(argv)
  ks = [int(k) for k in args.ks.split(",")]
  rounds, steps = args.rounds, args.steps
  if args.quick:
    ks, rounds, steps = [k for k in ks if k <= 4] or [1, 4], 2, 2

  from jaxreg import cli
  cli.enable_compilation_cache()
  import jax
  devices = jax.devices()
  print(f"device: {devices[0].platform} x{len(devices)} ({devices[0].device_kind}); "
        f"{os.cpu_count()} CPUs; {platform.python_version()}; jax {jax.__version__}")
  print(f"shape: B={SHAPE['batch']} T={SHAPE['length']} E={SHAPE['embed']} "
        f"H={SHAPE['hidden']} V={SHAPE['vocab']} C={SHAPE['classes']}; "
        f"{'one shared batch' if args.shared else 'a batch per member'}; "
        f"{rounds} rounds x {steps} steps, medians")
  print(f"load average before: {benchlib.load_average()}")
  print(f"{'K':>4} {'group ms/step':>14} {'seq ms/K steps':>15} {'group steps/s':>14} "
        f"{'seq steps/s':>12} {'ratio':>6}")
  results = []
  for k in ks:
    r = bench_k(k, args.shared, rounds, steps)
    results.append(r)
    print(f"{k:>4} {r['group_ms_per_step']:>14.1f} {r['sequential_ms_per_k_steps']:>15.1f} "
          f"{r['group_model_steps_per_s']:>14.1f} {r['sequential_model_steps_per_s']:>12.1f}"
          f" {r['ratio']:>6.2f}", flush=True)
  print(f"load average after: {benchlib.load_average()}")
  out = {"bench": "vmap_sweep", "quick": args.quick, "torch_skipped": None,
         "env": benchlib.environment(), "results": results}
  benchlib.write_json(args.json, out)
  return out


if __name__ == "__main__":
  main()

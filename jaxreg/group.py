"""Many runs in one compiled program: which runs may train as a vmapped group, whether
that is faster here, and `train_group`, the one training loop (jaxreg.train.run) over K
members.

Runs whose configs differ only in values a group traces (`population.traced_keys`: the
optimizer's strengths, the family's traced fields, the feed's strengths, the seed) and
in host-side settings (`population.HOST_KEYS`) have the same compiled step up to values,
so they train as one program over a leading K axis; each member writes its own workdir,
exactly like a run alone (see jaxreg/train/population.py for how the members are
stacked, and docs/sweeps.md "Groups" for what "equal to its run alone" means).

`plan(configs)` decides how a sweep trains its runs, once for the whole sweep: in
groups (`partition`) or every run alone, never a mix of the two across the settings it
compares (a vmapped program is not bit-identical to the solo one over a whole run). With
`probe`, it times the real programs on the real batches (`probe_timings`) and groups
only where that is faster.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import jax
import ml_collections
import numpy as np

from jaxreg import checkpoint, config as config_lib, train
from jaxreg.data import sources
from jaxreg.train import build, population, transfer
from jaxreg.train.early_stopping import EarlyStopping
from jaxreg.train.evaluation import EpochTimes

group_key = population.group_key
check_group = population.check_group
traced_keys = population.traced_keys


def partition(configs: Sequence[ml_collections.ConfigDict]) -> list[list[int]]:
  """Indices of `configs` in groups that can train together (equal `group_key`), in
  order of first appearance."""
  groups: dict[str, list[int]] = {}
  for i, c in enumerate(configs):
    groups.setdefault(group_key(c), []).append(i)
  return list(groups.values())


def train_group(configs: Sequence[ml_collections.ConfigDict],
                workdirs: Sequence[str | Path], devices=None,
                why: str | None = None) -> list[dict]:
  """Trains configs[i] into workdirs[i], all K as one vmapped program (jaxreg.train.run).

  Returns one dict per member, in order: its summary.json dict (its `executor`:
  {"kind": "group", "size": K, "why": why}) or, for a member whose loss became NaN/inf,
  {"status": "diverged", "error": message} (also in workdir/outcome.json). Raises
  ConfigError when the configs cannot share a program or a workdir holds another run."""
  return train.run(configs, workdirs, devices, executor={"why": why} if why else None)


# ------------------------------------------------------------------------------ plan


@dataclasses.dataclass(frozen=True)
class Plan:
  """How a sweep trains its runs: `groups` (indices into the configs) of `kind`
  'group' (one vmapped program per group) or 'alone' (every group of one run)."""
  kind: str
  groups: list
  why: str
  timings: dict | None = None

  def executor(self, group: Sequence[int]) -> dict:
    """summary.json's `executor` for the runs of `group`."""
    return {"kind": self.kind, "size": len(group), "why": self.why}


def plan(configs: Sequence[ml_collections.ConfigDict], probe: bool = True,
         devices=None, data=None) -> Plan:
  """Groups where every group has a partner (and, with `probe`, where the probe
  measures the group faster); else every run alone, with the reason."""
  configs = list(configs)
  groups = partition(configs)
  alone = [[i] for i in range(len(configs))]
  if all(len(g) == 1 for g in groups):
    return Plan("alone", alone, "no two runs differ only in values one vmapped "
                "program can carry")
  lonely = sum(len(g) == 1 for g in groups)
  if lonely:
    return Plan("alone", alone, f"{lonely} runs have no partner to group with, and a "
                "sweep does not mix grouped and alone runs")
  if not probe:
    return Plan("group", groups, "asked for groups (--executor=group)")
  largest = max(groups, key=len)
  t = probe_timings([configs[i] for i in largest], devices=devices, data=data)
  measured = (f"probe: a group of {t['k']} trained {t['group_model_steps_per_second']:.1f}"
              f" model-steps/s, one run after another "
              f"{t['sequential_model_steps_per_second']:.1f}")
  if t["ratio"] > 1.0:
    return Plan("group", groups, measured, t)
  return Plan("alone", alone, measured, t)


def probe_timings(configs: Sequence[ml_collections.ConfigDict], steps: int | None = None,
                  rounds: int = 3, devices=None, data=None) -> dict:
  """Model-steps per second of the group's program against the K runs one after
  another, both timed as the loop runs them: the first `steps` batches of epoch 0 in
  each member's own order (built, padded and stacked on the host as in training; by
  default enough steps for several length buckets), after one untimed pass that
  compiles every width; `rounds` alternating rounds, medians. ratio > 1: the group is
  faster."""
  with config_lib.as_config_error():
    configs = [transfer.adopt(c) for c in configs]  # model.init_from, as `run` does
  for c in configs:
    config_lib.validate(c)
  check_group(configs)
  k = len(configs)
  with config_lib.as_config_error():
    if data is None:
      pre = transfer.preprocessing(configs[0])
      data = sources.load(configs[0].data, vocab=pre.vocab if pre else None)
  # Set up as the runs would be (checkpoints='later': nothing is written anywhere).
  setups = [build.setup(configs[0], Path("jaxreg-probe"), devices, data=data,
                        checkpoints="later")]
  setups += [build.setup(c, Path("jaxreg-probe"), devices, data=data,
                         checkpoints="later", feed=setups[0].feed) for c in configs[1:]]
  spe = setups[0].steps_per_epoch
  buckets = getattr(setups[0].feed, "buckets", None) or ()
  steps = min(spe, steps or max(8, 4 * len(buckets)))

  def members():
    return [population.Member(i, s, None, None,
                              EarlyStopping.from_config(s.config.train.early_stopping),
                              EpochTimes(0.0), checkpoint.abstract_like(s.state), s.state)
            for i, s in enumerate(setups)]

  # The group first: it stacks copies of the states that the solo steps then donate.
  group = population.StackedProgram(members(), setups[0].model)
  solos = [population.SoloProgram(m) for m in members()]

  def timed(program) -> float:
    counts = program.counts()
    t0 = time.perf_counter()
    for batch in program.batches(0, 0, steps):
      counts, out = program.step(batch, counts)
    jax.block_until_ready(out)
    return time.perf_counter() - t0

  for program in [group, *solos]:
    timed(program)  # compiles every batch width of the sample
  group_t, solo_t = [], []
  for _ in range(rounds):  # alternating: drift on a busy machine hits both alike
    group_t.append(timed(group))
    solo_t.append(sum(timed(p) for p in solos))
  group_s, sequential_s = float(np.median(group_t)), float(np.median(solo_t))
  return {"k": k, "steps": steps, "rounds": rounds,
          "group_seconds_per_step": group_s / steps,
          "sequential_seconds_per_k_steps": sequential_s / steps,
          "group_model_steps_per_second": k * steps / group_s,
          "sequential_model_steps_per_second": k * steps / sequential_s,
          "ratio": sequential_s / max(group_s, 1e-12)}


def probe(configs: Sequence[ml_collections.ConfigDict], **kwargs) -> bool:
  """True when the group's program trains the K runs faster than one after another."""
  return probe_timings(configs, **kwargs)["ratio"] > 1.0

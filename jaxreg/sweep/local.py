"""The local launcher: trains a sweep's runs in this process and keeps sweep.json and
runs.csv up to date after every run.

An executor trains: `execute(runs, on_done)` gets every pending `Run` (full config, its
own directory, perhaps checkpoints of an interrupted attempt) and calls
`on_done(run, Outcome)` once per run, in the calling thread, after the run's
summary.json is written or on its failure. The bookkeeping (sweep.json, runs.csv,
progress lines) is all in `run_sweep`'s `on_done`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

from jaxreg import group, preemption, records, train
from jaxreg.sweep.axes import Axis, display_values
from jaxreg.sweep.plan import Run, locked, prepare


@dataclasses.dataclass
class Outcome:
  status: str                 # 'done' | 'diverged' | 'error'
  summary: dict | None = None
  error: str | None = None
  seconds: float = 0.0
  # how the run was trained ({kind, size, why}); a finished run's summary says it too
  executor: dict | None = None


class Executor(Protocol):
  def execute(self, runs: Sequence[Run],
              on_done: Callable[[Run, Outcome], None]) -> None:
    """Trains `runs` (all unfinished), calling on_done(run, outcome) once for each."""


class SequentialExecutor:
  """One run after another, in this process (the compile cache makes repeats cheap).
  `executor`: what each summary.json records of how the run was trained."""

  def __init__(self, devices=None, executor: dict | None = None):
    self.devices = devices
    self.executor = executor or {"kind": "alone", "size": 1,
                                 "why": "asked for one run after another "
                                        "(--executor=sequential)"}

  def execute(self, runs, on_done):
    for run in runs:
      t0 = time.perf_counter()
      try:
        summary = train.train_and_evaluate(run.config, run.workdir, self.devices,
                                           executor=self.executor)
        outcome = Outcome("done", summary=summary)
      except train.TrainingDiverged as e:
        outcome = Outcome("diverged", error=records.one_line(e))
      except preemption.Preempted:
        raise  # the whole sweep stops (its checkpoint is saved); rerun to resume
      except Exception as e:  # noqa: BLE001 - recorded; the sweep goes on
        outcome = Outcome("error", error=records.one_line(e))
      outcome.seconds = time.perf_counter() - t0
      outcome.executor = self.executor
      on_done(run, outcome)


def train_as_group(members: Sequence[Run], devices=None,
                   why: str | None = None) -> list[Outcome]:
  """The group trainer's one call site: `members` as one vmapped program."""
  try:
    results = group.train_group([m.config for m in members],
                                [m.workdir for m in members], devices, why)
  except preemption.Preempted:
    raise  # the whole sweep stops (every member's checkpoint is saved)
  except Exception as e:  # noqa: BLE001 - recorded for every member
    results = [{"status": "error", "error": records.one_line(e)}] * len(members)
  outcomes = []
  for result in results:
    status = result.get("status")
    outcomes.append(Outcome(status, error=result.get("error"))
                    if status in records.FAILED else Outcome("done", summary=result))
  return outcomes


class GroupExecutor:
  """Runs that differ only in values one vmapped program can carry (jaxreg.group)
  train together; each member still writes its own run dir. `group.plan` decides once
  for all runs: groups, or every run alone (never a mix across the compared settings);
  with `probe` (the `auto` executor) it times both ways on the real batches first and
  groups only where that is faster.
  """

  def __init__(self, devices=None, probe: bool = False, out=None):
    self.devices, self.probe, self.out = devices, probe, out or sys.stderr

  def execute(self, runs, on_done):
    plan = group.plan([r.config for r in runs], probe=self.probe, devices=self.devices)
    print(f"{len(runs)} runs: {'in groups' if plan.kind == 'group' else 'alone'}: "
          f"{plan.why}", file=self.out)
    for indices in plan.groups:
      members = [runs[i] for i in indices]
      if plan.kind == "alone":
        SequentialExecutor(self.devices, plan.executor(indices)).execute(members, on_done)
        continue
      t0 = time.perf_counter()
      outcomes = train_as_group(members, self.devices, plan.why)
      seconds = (time.perf_counter() - t0) / len(members)
      for member, outcome in zip(members, outcomes):
        outcome.seconds = seconds
        outcome.executor = plan.executor(indices)
        on_done(member, outcome)


EXECUTORS: dict[str, Callable[[], Executor]] = {
    "sequential": SequentialExecutor,
    "group": GroupExecutor,
    "auto": lambda: GroupExecutor(probe=True),
}


def run_sweep(base_config, workdir, axes: Sequence[Axis], *, budget: int = 0,
              sampler_seed: int = 0, executor: Executor | None = None,
              retry_diverged: bool = False, out=None,
              command: Sequence[str] | None = None,
              upstream=None) -> dict[str, Outcome]:
  """Plans, resumes and trains a sweep; returns {run name: Outcome} of this call.
  Nothing is written unless every point's config is valid; the sweep directory is
  locked while it runs. `upstream` (plan.load_upstream): one run per finished
  upstream run and point, starting from it."""
  with locked(base_config, workdir, axes, budget=budget, sampler_seed=sampler_seed,
              upstream=upstream) as planned:
    return _run_sweep(base_config, Path(workdir), axes, planned, budget=budget,
                      sampler_seed=sampler_seed, executor=executor,
                      retry_diverged=retry_diverged, out=out or sys.stdout,
                      command=command, upstream=upstream)


def _run_sweep(base_config, workdir: Path, axes, planned, *, budget, sampler_seed,
               executor, retry_diverged, out, command,
               upstream) -> dict[str, Outcome]:
  runs, meta = prepare(base_config, workdir, axes, budget=budget,
                       sampler_seed=sampler_seed, command=command, runs=planned,
                       upstream=upstream)
  entries = {e["name"]: e for e in meta["runs"]}
  summaries = {}
  for run in runs:
    summary = records.roll_up(run.workdir, entries[run.name])
    if summary is not None:
      summaries[run.name] = summary
  total = len(runs)

  def say(run: Run, what: str) -> None:
    print(f"[{run.index + 1}/{total}] {display_values(run.values)}: {what}", file=out,
          flush=True)

  pending = []
  for run in runs:
    entry = entries[run.name]
    if records.needs_training(entry, retry_diverged):
      records.retry(run.workdir, entry)
      pending.append(run)
    elif entry["status"] == "done":
      say(run, "finished already, test acc "
          f"{summaries[run.name]['test']['accuracy']:.4f}")
    else:
      say(run, "diverged before, skipped (--retry_diverged to train it again)")
  records.write_status(workdir, meta, summaries)

  outcomes: dict[str, Outcome] = {}

  def on_done(run: Run, outcome: Outcome) -> None:
    outcomes[run.name] = outcome
    entry = entries[run.name]
    entry["status"] = outcome.status
    entry["seconds"] = round(outcome.seconds, 3)
    executor = (outcome.summary or {}).get("executor") or outcome.executor
    if executor:
      entry["executor"] = executor
    if outcome.status == "done":
      entry.pop("error", None)
      summaries[run.name] = outcome.summary
      test = outcome.summary["test"]
      what = (f"test acc {test['accuracy']:.4f}, worst class "
              f"{test['worst_class_accuracy']:.4f}")
    else:
      entry["error"] = outcome.error
      what = f"{outcome.status}: {outcome.error}"
    records.write_status(workdir, meta, summaries)
    say(run, f"{what} ({outcome.seconds:.0f} s)")

  (executor or SequentialExecutor()).execute(pending, on_done)
  print(records.status_line(workdir, meta["runs"]), file=out, flush=True)
  return outcomes

"""A run's workdir: checked before anything is written, locked while trained into, resumed
from its newest intact checkpoint.

One workdir holds one experiment: `check` refuses a workdir whose saved config differs
(config.json, or the copy in its newest checkpoint's meta), one another process trains
in, or one whose metrics.jsonl or checkpoints cannot be resumed; all without writing.
`opened` then locks the workdirs of a population (all or none) and writes their
config.json. `resume_step` sets aside corrupt checkpoints and says where to resume.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import jax

from jaxreg import checkpoint, config as config_lib, distributed, io, lock
from jaxreg.logs import METRICS_FILE, MetricsLog
from jaxreg.train.build import make_checkpointer


def check(config, workdir: Path) -> None:
  """ConfigError unless `workdir` can hold this run: a writable directory (or one
  that can be created) that is new or holds a run of the same config. Reads only."""
  io.check_writable_dir(workdir)
  if jax.process_count() == 1:  # several: process 0 decides, in `opened`
    lock.check(workdir)  # another run trains in it: say so first, read nothing live
  check_config(config, workdir)
  check_resumable(config, workdir)


@contextlib.contextmanager
def opened(configs, workdirs):
  """Locks every workdir (created if needed) for the block, then writes their
  config.json; LockHeld if another process holds one: the directories this call
  created for the others are removed again, so a refusal writes nothing. Call after
  everything is validated."""
  workdirs = [Path(w) for w in workdirs]
  # Every process has checked (read) the workdirs before process 0 writes in them: a
  # process that saw checkpoints/ another had just created would open a read-only
  # manager the others do not, and orbax's collective syncs would then mismatch.
  distributed.barrier("jaxreg: workdirs checked")
  with contextlib.ExitStack() as held:
    created = [w for w in workdirs if not w.exists()]
    try:
      for w in workdirs:
        held.enter_context(lock.acquire_main(w) or contextlib.nullcontext())
      for c, w in zip(configs, workdirs):
        check_config(c, w)  # again: a run may have ended meanwhile
    except config_lib.ConfigError:
      held.close()
      for w in created:  # nothing but the lock file in them yet
        if w.is_dir() and [p.name for p in w.iterdir()] == [lock.LOCK_FILE]:
          (w / lock.LOCK_FILE).unlink()
          w.rmdir()
      raise
    distributed.barrier("jaxreg: workdirs checked under the lock")
    for c, w in zip(configs, workdirs):
      write_config(c, w)
    yield


def _differing_keys(old: dict, new: dict) -> list[str]:
  return config_lib.experiment_differences(old, new)


def saved_config(workdir: Path) -> tuple[dict | None, str]:
  """The config a workdir's run was written with, and where it came from: its
  config.json, else the copy in its newest readable checkpoint (the config travels
  in every checkpoint's meta); (None, '') for a new workdir. Reads only."""
  workdir = Path(workdir)
  path = workdir / "config.json"
  if path.exists():
    try:
      return json.loads(path.read_text()), str(path)
    except (ValueError, OSError) as e:
      raise config_lib.ConfigError(
          f"{path} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:80]}): "
          "remove it to have the run checked against its checkpoint's copy, or use "
          "a new --workdir") from None
  if not (workdir / "checkpoints").is_dir():
    return None, ""
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    for step in reversed(ckpt.all_steps()):
      try:
        saved = ckpt.meta(step).get("config")
      except Exception:  # noqa: BLE001 - an unreadable step: try an older one
        continue
      if saved is not None:
        return saved, f"checkpoint step {step} ({ckpt.step_dir(step)})"
  finally:
    ckpt.close()
  return None, ""


def run_config(workdir: Path):
  """The ConfigDict of a workdir's run (`saved_config`) over the current defaults, so
  keys added to jaxreg after the run was written take their defaults; ConfigError
  when the workdir holds no run. Reads only."""
  saved, _ = saved_config(workdir)
  if saved is None:
    raise config_lib.ConfigError(
        f"{Path(workdir) / 'config.json'} not found: --workdir must be a directory "
        "written by jaxreg.main")
  config = config_lib.get_base_config()
  merge_saved(config, saved)
  return config


def merge_saved(config, saved: dict) -> None:
  """Sets every key of `saved` (a config.json dict) in `config`, nested dicts by key."""
  for key, value in saved.items():
    if isinstance(value, dict) and key in config:
      merge_saved(config[key], value)
    else:
      config[key] = value


def check_config(config, workdir: Path) -> None:
  """A workdir holds one experiment: resuming with other settings is an error.
  Reads only (config.json or, without it, the checkpoint's copy)."""
  previous, where = saved_config(workdir)
  if previous is None:
    return
  diff = _differing_keys(previous, json.loads(config.to_json()))
  if diff:
    raise config_lib.ConfigError(
        f"workdir {workdir} holds a run with other settings ({', '.join(diff)}; "
        f"from {where}); use a new --workdir")


def write_config(config, workdir: Path) -> None:
  """config.json, when missing (a new run, or one whose file was deleted and whose
  checkpoint's copy matched)."""
  path = workdir / "config.json"
  if distributed.is_main() and not path.exists():
    io.atomic_write_json(path, json.loads(config.to_json()))


def config_meta(config) -> dict:
  """What every checkpoint's meta carries of the config: all of it, so that a
  workdir whose config.json was lost is still checked (saved_config)."""
  return {"config": json.loads(config.to_json())}


def resume_step(ckpt: checkpoint.Checkpointer) -> int | None:
  """The checkpoint step to resume from, after checking every kept step.

  A corrupt step, and every kept step after it, is set aside (one warning line
  each) and training resumes from the newest intact step before it: the replay
  recreates the later steps exactly (data order and dropout keys depend on seed,
  epoch and step only), so the run ends as if nothing had happened. With no intact
  step before the first corrupt one, ConfigError names it and what to do.
  """
  step, bad, later = _resume_plan(ckpt)
  for aside in later:
    moved = ckpt.set_aside(aside, "corrupt" if aside in bad else "superseded")
    if distributed.is_main():
      why = (f"{bad[aside]}" if aside in bad else
             f"checkpoint step {aside} comes after corrupt step {min(bad)}")
      print(f"warning: {why}; moved to {moved}, resuming from step {step}",
            file=sys.stderr, flush=True)
  return step


def _resume_plan(ckpt: checkpoint.Checkpointer, warn: bool = True
                 ) -> tuple[int | None, dict, list[int]]:
  """(step to resume from, {corrupt step: error}, steps to set aside); reads only."""
  steps = ckpt.all_steps()
  bad = {}
  for step in steps:
    try:
      ckpt.verify(step, warn=warn)
    except checkpoint.CorruptCheckpoint as e:
      bad[step] = e
  if not bad:
    return (steps[-1] if steps else None), bad, []
  first = min(bad)
  earlier = [step for step in steps if step < first]
  if not earlier:
    raise config_lib.ConfigError(
        f"{bad[first]}; no intact checkpoint is kept before it: move "
        f"{ckpt.directory} aside and rerun to train from the start, or use a new "
        "--workdir")
  return earlier[-1], bad, [step for step in steps if step >= first]


def check_resumable(config, workdir: Path) -> None:
  """What resuming will read, checked without writing: metrics.jsonl parses and an
  intact checkpoint exists to resume from (when there are any)."""
  MetricsLog(workdir / METRICS_FILE).check()
  if (workdir / "checkpoints").is_dir():
    ckpt = make_checkpointer(config, workdir, read_only=True)
    try:
      _resume_plan(ckpt, warn=False)
    except checkpoint.CheckpointVanished:
      pass  # deleted by a run that just ended: checked again under the lock
    finally:
      ckpt.close()

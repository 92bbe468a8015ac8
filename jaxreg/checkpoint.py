"""Checkpoints that keep both the latest step (to resume) and the best step.

A thin wrapper over ``orbax.checkpoint.CheckpointManager`` (checked on
orbax-checkpoint 0.12.8). Each step directory holds::

    <directory>/<step>/state     the train state pytree (StandardSave, OCDBT)
    <directory>/<step>/meta      a JSON dict (epoch, early stopping, seeds ...)
    <directory>/<step>/metrics   the metrics passed to ``save`` (JSON)

Retention: ``preservation_policy=AnyPreservationPolicy([LatestN(1),
BestN(n=1)])``, so at most two steps survive: the newest and the best by
``best_metric``. Do NOT use ``CheckpointManagerOptions(max_to_keep=2,
best_fn=...)``: that keeps the best two and deletes the newest (steps 0-4 with
accuracies .5/.9/.7/.6/.65 keep [1, 2]), so a resumed run silently repeats
epochs.

Facts about orbax 0.12.8 this module relies on (read from its source and
checked by ``tests/test_checkpoint.py``):

* ``BestN`` sorts the checkpoints that have metrics with
  ``sorted(key=get_metric_fn, reverse=reverse)`` and keeps the LAST ``n`` of
  that list. ``reverse`` is the sort order, not "higher is better":
  ``reverse=False`` keeps the largest values (mode 'max'), ``reverse=True``
  keeps the smallest (mode 'min'). Checkpoints saved without metrics are kept
  forever unless ``keep_checkpoints_without_metrics=False`` (set here, so a
  metric-less save is kept only while it is the newest).
* The manager writes the ``metrics`` item to disk only when
  ``CheckpointManagerOptions.best_fn`` is set. With a ``preservation_policy``
  alone the metrics live in memory only: a restarted process then sees every
  old step as metric-less and both the retention and ``best_step()`` go wrong.
  So ``best_fn``/``best_mode`` are set as well (they are not mutually exclusive
  with ``preservation_policy``; the policy alone decides what is deleted, and
  ``best_fn`` feeds ``best_step()``).
* Ties keep the later step (Python's sort is stable for both orders).
* An unfinished save lives in ``<step>.orbax-checkpoint-tmp`` and is renamed to
  ``<step>`` only when complete; step discovery ignores such directories.
  ``cleanup_tmp_directories=True`` removes them in the background when a
  Checkpointer is opened (awaited before its first save); re-saving the same
  step also replaces a stale one.
* ``CheckpointManager.save`` returns ``False`` without saving when ``step`` is
  not greater than the latest step; ``Checkpointer.save`` raises instead.
* Async saves copy device arrays to host before ``save`` returns, so the
  state's buffers may be donated to the next train step right away.

PRNG keys: orbax 0.12.8 saves and restores typed keys (``jax.random.key``)
directly, implementation included (threefry and rbg checked; restored with a
``ShapeDtypeStruct`` target from ``abstract_like`` or with no target). Raw
``jax.random.key_data(key)`` (uint32) works too and is the portable choice if
the checkpoint must be read by code that does not know the key
implementation; wrap it back with ``jax.random.wrap_key_data``.

Integrity (orbax's default OCDBT format checksums its manifest and tree nodes but
not the array data: one flipped bit restores silently with other parameters):

* Every step carries ``jaxreg_checksums.json``, the sha256 of each of its files. It
  is written by orbax's ``post_finalization_callback``, in the step's temporary
  directory, after every item is written and finalized and before orbax renames the
  directory to ``<step>`` (its commit). So the rename publishes the data and their
  checksums together: a step that orbax lists as committed always has them, and a
  kill at any earlier instant leaves only ``<step>.orbax-checkpoint-tmp``, which
  orbax does not list and the next writer removes. (Not covered: orbax's
  ``_CHECKPOINT_METADATA`` and ``commit_success.txt``, rewritten after the callback;
  a damaged one makes orbax's restore fail, which is reported the same way.)
* "Committed but no checksums" therefore means a step written by jaxreg before
  checksums existed (or by orbax alone): it is restored unverified, with a one-line
  warning.
* ``restore`` and ``verify`` raise ``CorruptCheckpoint`` (one line naming the step
  directory and the first bad file) when a file is missing, changed or unreadable.
  ``set_aside(step)`` moves a step to ``<directory>.set-aside/`` (orbax refuses to
  save a step <= its latest, so a bad step left in place would make a replay skip
  its saves). The trainer's policy is in ``train.resume_step``.
* ``read_only=True`` (``jaxreg.evaluate``, the report) opens orbax with
  ``CheckpointManagerOptions(read_only=True)``: no directory creation, no removal of
  temporary directories (an in-flight save of a running trainer), no save or
  delete. A step deleted by the trainer while it is read raises
  ``CheckpointVanished``.

Typical loop::

    ckpt = Checkpointer(workdir / "checkpoints", best_metric="accuracy")
    if (step := ckpt.latest_step()) is not None:
        state, meta = ckpt.restore(step, abstract_like(state))
    ...
    ckpt.save(epoch, state, meta={"epoch": epoch, ...}, metrics=eval_metrics)
    ...
    ckpt.close()   # flushes the last asynchronous save
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import numbers
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import (
    AnyPreservationPolicy,
    BestN,
    LatestN,
)

from jaxreg import io
from jaxreg.config import ConfigError

__all__ = ["Checkpointer", "CheckpointVanished", "CorruptCheckpoint", "abstract_like"]

_MODES = ("max", "min")
CHECKSUM_FILE = "jaxreg_checksums.json"
SET_ASIDE_SUFFIX = ".set-aside"
# orbax names a step being written <step> + this (atomicity_types.TMP_DIR_SUFFIX) and
# renames it to <step> on commit; with commit-file atomicity (GCS) it writes in place.
_ORBAX_TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Written by orbax after the post-finalization callback: not in the checksums.
_UNSUMMED = ("_CHECKPOINT_METADATA", "commit_success.txt", CHECKSUM_FILE)


class CorruptCheckpoint(Exception):
  """A checkpoint step whose files do not match their checksums (or cannot be read)."""

  def __init__(self, step: int, path: str, reason: str):
    super().__init__(f"checkpoint step {step} ({path}) is corrupt: {reason}")
    self.step, self.path, self.reason = step, path, reason


class CheckpointVanished(FileNotFoundError):
  """A step deleted (by the trainer that owns the directory) while it was read."""


def _one_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  return f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]


def _digest(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(step_dir: str | os.PathLike) -> None:
  """step_dir/jaxreg_checksums.json: the sha256 of every file below it."""
  step_dir = Path(step_dir)
  files = {}
  for path in sorted(step_dir.rglob("*")):
    rel = path.relative_to(step_dir).as_posix()
    if path.is_file() and rel not in _UNSUMMED:
      files[rel] = _digest(path)
  io.atomic_write_json(step_dir / CHECKSUM_FILE, {"sha256": files})


def verify_checksums(step_dir: str | os.PathLike) -> str | None:
  """None when every file matches; 'unverified' without a checksum file; else the
  first problem, in words."""
  step_dir = Path(step_dir)
  try:
    sums = json.loads((step_dir / CHECKSUM_FILE).read_text())["sha256"]
  except FileNotFoundError:
    return "unverified"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"{CHECKSUM_FILE} is unreadable ({_one_line(e)})"
  for rel, expected in sums.items():
    path = step_dir / rel
    try:
      actual = _digest(path)
    except FileNotFoundError:
      return f"{rel} is missing"
    except OSError as e:
      return f"{rel} cannot be read ({_one_line(e)})"
    if actual != expected:
      return f"{rel} does not match its checksum"
  return None


@contextlib.contextmanager
def _read_only_notices_to_log():
  """orbax warns 'Given directory is read only' at WARNING for an intended read-only
  manager; pass it on at INFO (shown with -v 0 and above), not on the console."""

  class Demote(logging.Filter):
    def filter(self, record):
      if record.levelno == logging.WARNING and "read only" in record.getMessage():
        logging.getLogger("absl").info("%s", record.getMessage())
        return False
      return True

  logger, demote = logging.getLogger("absl"), Demote()
  logger.addFilter(demote)
  try:
    yield
  finally:
    logger.removeFilter(demote)


def abstract_like(state: Any) -> Any:
  """Returns a restore target for ``state``: arrays become ShapeDtypeStructs.

  * ``jax.Array`` (typed PRNG keys included) -> ``jax.ShapeDtypeStruct`` with
    the same shape, dtype and sharding, so the restored array is placed with
    that sharding.
  * ``jax.ShapeDtypeStruct`` -> unchanged.
  * ``np.ndarray`` / numpy scalar -> ``ShapeDtypeStruct`` without sharding
    (orbax restores it as a numpy array).
  * Python scalars (e.g. flax ``TrainState.step`` before the first update)
    are kept as they are, so orbax restores them as Python scalars.
  """

  def leaf(x):
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if isinstance(x, (np.ndarray, np.generic)):
      return jax.ShapeDtypeStruct(np.shape(x), x.dtype)
    return x

  return jax.tree.map(leaf, state)


def _to_json_value(x: Any) -> Any:
  """Converts jax/numpy scalars and arrays in ``metrics`` to JSON values."""
  if isinstance(x, dict):
    return {str(k): _to_json_value(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_json_value(v) for v in x]
  if isinstance(x, (bool, str, type(None))):
    return x
  if isinstance(x, numbers.Number) and not isinstance(x, np.generic):
    return x
  arr = np.asarray(x)
  return arr.item() if arr.ndim == 0 else arr.tolist()


class Checkpointer:
  """Keeps the latest checkpoint and the best one by ``best_metric``.

  Args:
    directory: where the step directories go (absolute or relative; created).
    best_metric: the key of ``metrics`` that ranks checkpoints.
    best_mode: 'max' (accuracy, F1) or 'min' (loss).
  """

  def __init__(
      self,
      directory: str | os.PathLike,
      *,
      best_metric: str = "accuracy",
      best_mode: str = "max",
      read_only: bool = False,
  ):
    if best_mode not in _MODES:
      raise ValueError(
          f"best_mode={best_mode!r} is not one of {list(_MODES)}"
      )
    self._directory = os.path.abspath(os.fspath(directory))
    self.read_only = read_only
    if not read_only:
      os.makedirs(self._directory, exist_ok=True)
    self.best_metric = best_metric
    self.best_mode = best_mode
    self._saving: int | None = None  # the step of the save in flight
    self._unverified_warned: set[int] = set()

    worst = -math.inf if best_mode == "max" else math.inf

    def metric_fn(metrics) -> float:
      # NaN/inf-free ranking: a diverged evaluation (NaN) is never "best".
      value = float(metrics[best_metric])
      return worst if math.isnan(value) else value

    self._metric_fn = metric_fn
    options = ocp.CheckpointManagerOptions(
        preservation_policy=AnyPreservationPolicy([
            LatestN(n=1),
            # BestN keeps the last n after sorted(..., reverse=reverse):
            # ascending (reverse=False) keeps the largest values.
            BestN(
                get_metric_fn=metric_fn,
                reverse=(best_mode == "min"),
                n=1,
                keep_checkpoints_without_metrics=False,
            ),
        ]),
        # Needed so that metrics are written to disk (and read back by a
        # restarted process) and for CheckpointManager.best_step().
        best_fn=metric_fn,
        best_mode=best_mode,
        keep_checkpoints_without_metrics=False,
        # A writer removes what a killed writer left half-saved; a reader must not
        # (it would delete a running trainer's save in flight).
        cleanup_tmp_directories=not read_only,
        create=not read_only,
        read_only=read_only,
        save_interval_steps=0 if read_only else 1,
        async_options=None if read_only else ocp.AsyncOptions(
            post_finalization_callback=self._write_checksums_before_commit),
    )
    with _read_only_notices_to_log():
      self._mngr = ocp.CheckpointManager(self._directory, options=options)

  # ---------------------------------------------------------------- queries

  @property
  def directory(self) -> str:
    return self._directory

  def latest_step(self) -> int | None:
    """The newest step (including one whose async save is still running)."""
    return self._mngr.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the best ``best_metric``; None if none has it."""
    return self._mngr.best_step()

  def all_steps(self) -> list[int]:
    """The kept steps, ascending."""
    return sorted(int(s) for s in self._mngr.all_steps())

  def named_step(self, name: str) -> int:
    """The step `--checkpoint=NAME` means: 'best', 'latest' or a kept step number.
    FileNotFoundError without checkpoints; ConfigError (one line) for another name."""
    steps = self.all_steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self._directory}")
    if name == "best":
      return self.best_step()
    if name == "latest":
      return self.latest_step()
    if name.isdigit() and int(name) in steps:
      return int(name)
    raise ConfigError(f"--checkpoint={name!r} is not one of: best, latest, "
                      f"{', '.join(map(str, steps))}")

  def step_dir(self, step: int) -> str:
    return os.path.join(self._directory, str(int(step)))

  def metrics(self, step: int) -> dict | None:
    """The metrics saved with ``step`` (None if it was saved without)."""
    self.wait()
    return self._mngr.metrics(step)

  # ------------------------------------------------------------ save/restore

  def save(
      self,
      step: int,
      state: Any,
      meta: dict,
      metrics: dict | None = None,
  ) -> None:
    """Starts saving ``state`` and ``meta`` as ``step`` (asynchronous).

    Waits for the previous save first, so it is safe to call every epoch.
    The arrays are copied to host before this returns: the caller may donate
    or delete them afterwards. ``metrics`` must contain ``best_metric`` to be
    ranked; without metrics the step is kept only while it is the newest.
    """
    step = int(step)
    latest = self.latest_step()
    if latest is not None and step <= latest:
      raise ValueError(
          f"step={step} is not after the latest saved step {latest} in "
          f"{self._directory}; orbax would silently skip this save"
      )
    if not isinstance(meta, dict):
      raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    if metrics is not None:
      metrics = _to_json_value(dict(metrics))
      if self.best_metric not in metrics:
        raise KeyError(
            f"metrics has no {self.best_metric!r} (best_metric); keys: "
            f"{sorted(metrics)}"
        )
      self._metric_fn(metrics)  # fail here, not in orbax, if not a number
    self.wait()  # the previous save's checksums are written; one save in flight
    self._saving = step
    saved = self._mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(meta),
        ),
        metrics=metrics,
    )
    if not saved:
      raise RuntimeError(f"orbax declined to save step {step}")

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores ``(state, meta)`` of ``step``.

    ``abstract_state``: a pytree of ``jax.ShapeDtypeStruct`` (see
    ``abstract_like``) or of concrete arrays, with the structure of the saved
    state; restored arrays get the target's dtype and sharding. ``None``
    restores the tree as saved (dicts instead of dataclasses).
    """
    self.wait()
    step = int(step)
    if step not in self.all_steps():
      raise FileNotFoundError(
          f"no checkpoint for step {step} in {self._directory}; "
          f"kept steps: {self.all_steps()}"
      )
    verified = self.verify(step)
    if abstract_state is None:
      state_args = ocp.args.StandardRestore()
    else:
      state_args = ocp.args.StandardRestore(abstract_like(abstract_state))
    restored = self._restore_items(step, verified, state=state_args,
                                   meta=ocp.args.JsonRestore())
    return restored["state"], restored["meta"]

  def meta(self, step: int) -> dict:
    """The meta dict of ``step`` alone (no arrays are read)."""
    step = int(step)
    return self._restore_items(step, True, meta=ocp.args.JsonRestore())["meta"]

  def _restore_items(self, step: int, verified: bool, **items):
    try:
      return self._mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
      if not os.path.isdir(self.step_dir(step)):
        raise CheckpointVanished(self._vanished(step)) from None
      if verified:  # the bytes are as written: not corruption but a mismatch
        raise
      raise CorruptCheckpoint(step, self.step_dir(step),
                              f"orbax cannot read it ({_one_line(e)})") from e

  def _vanished(self, step: int) -> str:
    return (f"checkpoint step {step} ({self.step_dir(step)}) was deleted while it was "
            "read (a trainer running in this workdir keeps only the latest and the "
            "best step); run again")

  def verify(self, step: int, warn: bool = True) -> bool:
    """Checks ``step``'s files against its checksums: True when they match, False
    for a step without checksums (written before they existed; warned once unless
    ``warn`` is False); raises CorruptCheckpoint otherwise."""
    step = int(step)
    if not os.path.isdir(self.step_dir(step)):
      raise CheckpointVanished(self._vanished(step))
    problem = verify_checksums(self.step_dir(step))
    if problem is None:
      return True
    if problem == "unverified":
      if warn and step not in self._unverified_warned and _is_main():
        self._unverified_warned.add(step)
        print(f"warning: checkpoint step {step} ({self.step_dir(step)}) has no "
              f"{CHECKSUM_FILE} (written before jaxreg checked checkpoints): read "
              "unverified", file=sys.stderr, flush=True)
      return False
    if not os.path.isdir(self.step_dir(step)):
      raise CheckpointVanished(self._vanished(step))
    raise CorruptCheckpoint(step, self.step_dir(step), problem)

  def set_aside(self, step: int, why: str) -> str:
    """Moves ``step`` out of orbax's sight, to ``<directory>.set-aside/<step>-<why>``
    (process 0 moves it; every process then re-lists the steps). Returns the path."""
    step = int(step)
    if self.read_only:
      raise RuntimeError("a read-only Checkpointer does not move checkpoints")
    self.wait()
    aside = self._directory + SET_ASIDE_SUFFIX
    target = os.path.join(aside, f"{step}-{why}")
    n = 1
    while os.path.exists(target):
      n += 1
      target = os.path.join(aside, f"{step}-{why}.{n}")
    if _is_main():
      os.makedirs(aside, exist_ok=True)
      shutil.move(self.step_dir(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"jaxreg set aside {step}")
    self._mngr.reload()
    return target

  def _write_checksums_before_commit(self) -> None:
    """orbax's post-finalization callback (process 0, background thread): every item
    of the step is written and finalized, the directory not yet renamed."""
    step = self._saving
    tmp = os.path.join(self._directory, f"{step}{_ORBAX_TMP_SUFFIX}")
    write_checksums(tmp if os.path.isdir(tmp) else self.step_dir(step))

  # ---------------------------------------------------------------- lifetime

  def wait(self) -> None:
    """Blocks until the pending asynchronous save is on disk."""
    self._mngr.wait_until_finished()
    self._mngr.check_for_errors()

  def close(self) -> None:
    """Flushes the pending save and releases orbax's threads."""
    self._mngr.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __repr__(self) -> str:
    return (
        f"Checkpointer({self._directory!r}, best_metric="
        f"{self.best_metric!r}, best_mode={self.best_mode!r})"
    )


def _is_main() -> bool:
  return jax.process_index() == 0

"""Tests for jaxreg.checkpoint (latest + best retention over orbax)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax.training import train_state
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxreg.checkpoint import Checkpointer, abstract_like

REPO = pathlib.Path(__file__).resolve().parents[1]
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax 0.12.8 atomicity_types.TMP_DIR_SUFFIX


def _state(step: int) -> dict:
  """A small pytree whose values depend on `step`."""
  return {
      "params": {"w": jnp.arange(6.0).reshape(2, 3) + step,
                 "b": jnp.full((3,), step, jnp.float32)},
      "count": jnp.asarray(step, jnp.int32),
      "batch_stats": {"mean": jnp.linspace(0.0, 1.0, 4) * step},
  }


def _assert_tree_equal(a, b):
  # Compare key paths, not treedefs: a TrainState's treedef also holds its
  # static fields (apply_fn, tx), which differ between two instances.
  pa, la = zip(*jax.tree_util.tree_flatten_with_path(a)[0])
  pb, lb = zip(*jax.tree_util.tree_flatten_with_path(b)[0])
  assert pa == pb
  for x, y in zip(la, lb):
    if jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key):
      assert jnp.asarray(y).dtype == jnp.asarray(x).dtype
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x, y)


def _on_disk_steps(directory) -> list[int]:
  return sorted(int(p.name) for p in pathlib.Path(directory).iterdir()
                if p.name.isdigit())


def _save_sequence(ckpt, values, key):
  for step, value in enumerate(values):
    ckpt.save(step, _state(step), {"epoch": step, "patience": 3 - step},
              {key: value, "other": 1.0 - value})


@pytest.mark.parametrize(
    "mode,key,values,kept,best",
    [
        # The ARCHITECTURE scenario: a plain max_to_keep=2 keeps [1, 2].
        ("max", "accuracy", [.5, .9, .7, .6, .65], [1, 4], 1),
        # With the BestN sort order wrong ("reverse" read as "higher is
        # better"), min mode would keep step 0 (the largest loss).
        ("min", "loss", [.9, .3, .5, .6, .4], [1, 4], 1),
        # The newest is also the best: one checkpoint suffices.
        ("max", "accuracy", [.5, .6, .7], [2], 2),
        ("min", "loss", [.5, .6, .7], [0, 2], 0),
        # Ties: the later of two equal bests is kept, in both modes.
        ("max", "accuracy", [.5, .9, .9, .1], [2, 3], 2),
        ("min", "loss", [.5, .2, .2, .9], [2, 3], 2),
    ],
)
def test_keeps_latest_and_best(tmp_path, mode, key, values, kept, best):
  ckpt = Checkpointer(tmp_path / "ckpt", best_metric=key, best_mode=mode)
  _save_sequence(ckpt, values, key)
  ckpt.wait()
  assert ckpt.all_steps() == kept
  assert _on_disk_steps(tmp_path / "ckpt") == kept
  assert ckpt.latest_step() == len(values) - 1
  assert ckpt.best_step() == best
  for step in kept:
    state, meta = ckpt.restore(step, abstract_like(_state(100)))
    _assert_tree_equal(state, _state(step))
    assert meta == {"epoch": step, "patience": 3 - step}
    assert ckpt.metrics(step)[key] == values[step]
  ckpt.close()


def test_orbax_max_to_keep_with_best_fn_drops_newest(tmp_path):
  """Canary for the pitfall this module avoids (orbax 0.12.8 behaviour)."""
  mngr = ocp.CheckpointManager(
      tmp_path, options=ocp.CheckpointManagerOptions(
          max_to_keep=2, best_fn=lambda m: m["accuracy"], best_mode="max"))
  for step, acc in enumerate([.5, .9, .7, .6, .65]):
    mngr.save(step, args=ocp.args.StandardSave({"x": jnp.ones(2)}),
              metrics={"accuracy": acc})
  mngr.close()
  assert list(mngr.all_steps()) == [1, 2]  # the newest step 4 is gone


def _train_state(seed: int, updates: int):
  model = nn.Dense(3)
  params = model.init(jax.random.key(seed), jnp.ones((1, 4)))
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=params, tx=optax.adam(1e-3))
  for i in range(updates):
    grads = jax.tree.map(lambda p, i=i: jnp.full_like(p, i + 1.0), params)
    state = state.apply_gradients(grads=grads)
  return state


def test_train_state_and_optimizer_round_trip(tmp_path):
  ts = _train_state(seed=0, updates=2)
  assert int(ts.step) == 2
  adam = ts.opt_state[0]
  assert float(jnp.abs(adam.mu["params"]["kernel"]).sum()) > 0
  pytree = {
      "train_state": ts,
      "optax_state": optax.adam(1e-3).init(ts.params),
      "rng": jax.random.key_data(jax.random.key(7)),
      "typed_rng": jax.random.split(jax.random.key(11), 2),
      "batch_stats": {"bn": {"mean": jnp.arange(3.0), "var": jnp.ones(3)}},
      "host_perm": np.random.default_rng(0).permutation(10),  # numpy leaf
  }
  meta = {"epoch": 2, "early_stopping": {"best": 0.75, "bad_epochs": 1,
                                         "stopped": False},
          "data_seed": 123, "history": [0.5, 0.75], "note": None}
  ckpt = Checkpointer(tmp_path)
  ckpt.save(2, pytree, meta, {"accuracy": jnp.float32(0.75)})
  ckpt.close()

  # A target with other values (a fresh process builds its state from seed).
  other = dict(pytree, train_state=_train_state(seed=1, updates=0),
               host_perm=np.zeros(10, np.int64),
               rng=jax.random.key_data(jax.random.key(0)),
               typed_rng=jax.random.split(jax.random.key(0), 2))
  for target in (abstract_like(other), other):
    restored, restored_meta = Checkpointer(tmp_path).restore(2, target)
    assert isinstance(restored["train_state"], train_state.TrainState)
    assert int(restored["train_state"].step) == 2
    assert restored["train_state"].tx is other["train_state"].tx
    _assert_tree_equal(restored, pytree)
    assert isinstance(restored["host_perm"], np.ndarray)
    assert restored_meta == meta
    # The restored typed key keeps its implementation and keeps working.
    assert jax.random.key_impl(restored["typed_rng"]) == jax.random.key_impl(
        pytree["typed_rng"])
    np.testing.assert_array_equal(
        jax.random.uniform(restored["typed_rng"][0], (3,)),
        jax.random.uniform(pytree["typed_rng"][0], (3,)))


def test_fresh_train_state_python_int_step(tmp_path):
  ts = _train_state(seed=0, updates=0)  # TrainState.create: step is int 0
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, ts, {"epoch": 0}, {"accuracy": 0.1})
  restored, _ = ckpt.restore(0, abstract_like(_train_state(seed=3, updates=0)))
  ckpt.close()
  assert type(restored.step) is int and restored.step == 0
  _assert_tree_equal(restored.params, ts.params)
  _assert_tree_equal(restored.opt_state, ts.opt_state)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_typed_prng_key_round_trip(tmp_path, impl):
  key = jax.random.key(42, impl=impl)
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, {"key": key}, {}, {"accuracy": 1.0})
  restored, _ = ckpt.restore(0, abstract_like({"key": jax.random.key(0, impl=impl)}))
  as_saved, _ = ckpt.restore(0, None)
  ckpt.close()
  for r in (restored["key"], as_saved["key"]):
    assert jax.random.key_impl(r) == jax.random.key_impl(key)
    np.testing.assert_array_equal(jax.random.key_data(r), jax.random.key_data(key))


def test_restarted_process_sees_same_steps(tmp_path):
  values = [.5, .9, .7, .6, .65]
  ckpt = Checkpointer(tmp_path)
  _save_sequence(ckpt, values, "accuracy")
  ckpt.close()

  again = Checkpointer(str(tmp_path))
  assert again.all_steps() == [1, 4]
  assert again.latest_step() == 4
  assert again.best_step() == 1
  state, meta = again.restore(again.latest_step(), abstract_like(_state(0)))
  _assert_tree_equal(state, _state(4))
  assert meta["epoch"] == 4
  # Metrics were persisted: a worse new step keeps the old best (1) and
  # drops the old latest (4). Without metrics on disk step 1 would be dropped.
  again.save(5, _state(5), {"epoch": 5}, {"accuracy": 0.1, "other": 0.9})
  again.wait()
  assert again.all_steps() == [1, 5]
  assert again.best_step() == 1
  # A better one replaces both.
  again.save(6, _state(6), {"epoch": 6}, {"accuracy": 0.95, "other": 0.05})
  again.close()
  assert _on_disk_steps(tmp_path) == [6]
  assert Checkpointer(tmp_path).best_step() == 6


def test_relative_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  ckpt = Checkpointer("runs/a/checkpoints")
  assert os.path.isabs(ckpt.directory)
  ckpt.save(0, _state(0), {"epoch": 0}, {"accuracy": 0.5})
  ckpt.close()
  assert _on_disk_steps(tmp_path / "runs/a/checkpoints") == [0]


def test_restore_into_replicated_sharding(tmp_path):
  n = len(jax.devices())
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _state(3), {"epoch": 0}, {"accuracy": 0.5})
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      _state(0))
  restored, _ = ckpt.restore(0, target)
  concrete, _ = ckpt.restore(0, jax.device_put(_state(0), replicated))
  ckpt.close()
  for tree in (restored, concrete):
    _assert_tree_equal(tree, _state(3))
    for leaf in jax.tree.leaves(tree):
      assert isinstance(leaf.sharding, NamedSharding)
      assert leaf.sharding == replicated, leaf.sharding


def _run_child(code: str, *args, devices: int | None = None):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  if devices:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}")
  return subprocess.run(
      [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
      env=env, capture_output=True, text=True, timeout=120)


def test_restore_across_shardings_on_four_devices(tmp_path):
  """Saved sharded over 'data', restored replicated, and the other way."""
  code = """
  import sys, jax, jax.numpy as jnp, numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P
  from jaxreg.checkpoint import Checkpointer, abstract_like
  assert len(jax.devices()) == 4, jax.devices()
  mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  rep, dat = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  x = jnp.arange(32.0).reshape(8, 4)
  ckpt = Checkpointer(sys.argv[1])
  ckpt.save(0, {'x': jax.device_put(x, dat), 'y': jax.device_put(x + 1, rep)},
            {}, {'accuracy': 0.5})
  target = {'x': jax.device_put(jnp.zeros_like(x), rep),
            'y': jax.device_put(jnp.zeros_like(x), dat)}
  r, _ = ckpt.restore(0, abstract_like(target))
  ckpt.close()
  assert r['x'].sharding == rep, r['x'].sharding
  assert r['y'].sharding == dat, r['y'].sharding
  assert len(r['x'].addressable_shards) == 4
  assert r['x'].addressable_shards[0].data.shape == (8, 4)
  assert r['y'].addressable_shards[0].data.shape == (2, 4)
  np.testing.assert_array_equal(np.asarray(r['x']), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(r['y']), np.asarray(x + 1))
  print('OK')
  """
  res = _run_child(code, tmp_path, devices=4)
  assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


def test_killed_save_leaves_previous_steps_usable(tmp_path):
  """A process SIGKILLed while committing step 2 (data written, not renamed)."""
  code = """
  import os, signal, sys
  import jax.numpy as jnp
  from orbax.checkpoint._src.path import atomicity
  from jaxreg.checkpoint import Checkpointer
  ckpt = Checkpointer(sys.argv[1])
  ckpt.save(0, {'w': jnp.zeros(3)}, {'epoch': 0}, {'accuracy': 0.9})
  ckpt.save(1, {'w': jnp.ones(3)}, {'epoch': 1}, {'accuracy': 0.6})
  ckpt.wait()
  print('saved 0 1', flush=True)

  async def die(self):  # the atomic rename <step>.orbax-checkpoint-tmp -> <step>
    os.kill(os.getpid(), signal.SIGKILL)

  atomicity.AtomicRenameTemporaryPath.finalize = die
  # Step 2 would make orbax delete step 1 (LatestN moves on) once committed.
  ckpt.save(2, {'w': jnp.full(3, 2.0)}, {'epoch': 2}, {'accuracy': 0.1})
  ckpt.wait()
  print('not killed', flush=True)
  """
  res = _run_child(code, tmp_path)
  assert "saved 0 1" in res.stdout, res.stderr[-3000:]
  assert res.returncode == -9, (res.returncode, res.stdout, res.stderr[-3000:])
  tmp_dir = tmp_path / f"2{TMP_SUFFIX}"
  assert tmp_dir.is_dir()  # the interrupted save is really on disk ...
  # Items are written to "<item>.orbax-checkpoint-tmp" inside it, arrays included.
  assert list(tmp_dir.glob(f"state{TMP_SUFFIX}/**/manifest.ocdbt"))
  assert _on_disk_steps(tmp_path) == [0, 1]

  ckpt = Checkpointer(tmp_path)  # ... and a restarted process ignores it
  assert ckpt.all_steps() == [0, 1]
  assert ckpt.latest_step() == 1
  assert ckpt.best_step() == 0
  state, meta = ckpt.restore(1, {"w": jnp.zeros(3)})
  np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(3))
  assert meta == {"epoch": 1}
  # Resuming re-saves step 2; the stale tmp dir is cleaned up.
  ckpt.save(2, {"w": jnp.full(3, 2.0)}, {"epoch": 2}, {"accuracy": 0.1})
  ckpt.close()
  assert not tmp_dir.exists()
  assert _on_disk_steps(tmp_path) == [0, 2]
  state, _ = Checkpointer(tmp_path).restore(2, {"w": jnp.zeros(3)})
  np.testing.assert_array_equal(np.asarray(state["w"]), np.full(3, 2.0))


def test_save_copies_arrays_so_they_can_be_donated(tmp_path):
  state = {"w": jnp.arange(200_000, dtype=jnp.float32), "b": jnp.ones(3)}
  expected = jax.tree.map(np.array, state)
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, state, {}, {"accuracy": 0.5})
  for leaf in jax.tree.leaves(state):  # what donate_argnums does to buffers
    leaf.delete()
  ckpt.wait()
  restored, _ = ckpt.restore(0, None)
  ckpt.close()
  _assert_tree_equal(restored, expected)


def test_save_every_epoch_without_wait(tmp_path):
  ckpt = Checkpointer(tmp_path, best_metric="loss", best_mode="min")
  losses = [3.0, 2.0, 2.5, 1.0, 1.5, 1.2]
  for step, loss in enumerate(losses):
    ckpt.save(step, _state(step), {"epoch": step}, {"loss": loss})
  ckpt.close()  # close alone must flush the last save
  assert _on_disk_steps(tmp_path) == [3, 5]
  reopened = Checkpointer(tmp_path, best_metric="loss", best_mode="min")
  _assert_tree_equal(reopened.restore(5, _state(0))[0], _state(5))


def test_nan_metric_is_never_best(tmp_path):
  for mode in ("max", "min"):
    ckpt = Checkpointer(tmp_path / mode, best_metric="m", best_mode=mode)
    ckpt.save(0, _state(0), {}, {"m": 0.5})
    ckpt.save(1, _state(1), {}, {"m": float("nan")})
    ckpt.save(2, _state(2), {}, {"m": float("nan")})
    ckpt.close()
    assert ckpt.all_steps() == [0, 2]
    assert ckpt.best_step() == 0


def test_metricless_save_is_kept_only_while_newest(tmp_path):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _state(0), {"epoch": 0})
  ckpt.save(1, _state(1), {"epoch": 1}, {"accuracy": 0.5})
  ckpt.save(2, _state(2), {"epoch": 2})
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2]
  assert ckpt.best_step() == 1
  ckpt.save(3, _state(3), {"epoch": 3}, {"accuracy": 0.7})
  ckpt.close()
  assert _on_disk_steps(tmp_path) == [3]


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="best_mode"):
    Checkpointer(tmp_path, best_mode="maximum")
  ckpt = Checkpointer(tmp_path)
  assert ckpt.latest_step() is None and ckpt.best_step() is None
  assert ckpt.all_steps() == []
  ckpt.save(3, _state(3), {}, {"accuracy": 0.5})
  with pytest.raises(ValueError, match="not after the latest"):
    ckpt.save(3, _state(3), {}, {"accuracy": 0.5})
  with pytest.raises(ValueError, match="not after the latest"):
    ckpt.save(2, _state(2), {}, {"accuracy": 0.5})
  with pytest.raises(KeyError, match="accuracy"):
    ckpt.save(4, _state(4), {}, {"loss": 0.5})
  with pytest.raises(FileNotFoundError, match="kept steps: \\[3\\]"):
    ckpt.restore(1, _state(0))
  ckpt.close()
  assert _on_disk_steps(tmp_path) == [3]


# ------------------------------------------------------------------ integrity

from jaxreg.checkpoint import (CHECKSUM_FILE, CheckpointVanished,  # noqa: E402
                               CorruptCheckpoint)

_MARKER = np.arange(1000, dtype=np.float32) * 0.001 + 0.5


def _marked_state():
  return {"w": jnp.asarray(_MARKER), "b": jnp.ones(3)}


def _array_file(step_dir: pathlib.Path) -> pathlib.Path:
  """The largest data file of the state (OCDBT, zstd-compressed array chunks)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def test_every_committed_step_carries_the_checksums_of_its_files(tmp_path):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _state(0), {"epoch": 0}, {"accuracy": 0.5})
  ckpt.save(1, _state(1), {"epoch": 1}, {"accuracy": 0.6})
  ckpt.close()
  import json
  for step in ckpt.all_steps():
    step_dir = tmp_path / str(step)
    sums = json.loads((step_dir / CHECKSUM_FILE).read_text())["sha256"]
    files = {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*")
             if p.is_file()}
    # everything but orbax's own bookkeeping, rewritten after the data are final
    assert set(sums) == files - {CHECKSUM_FILE, "_CHECKPOINT_METADATA",
                                 "commit_success.txt"}
    assert any(name.startswith("state/") for name in sums)
    assert ckpt.verify(step) is True


def test_a_flipped_low_bit_in_array_data_is_caught(tmp_path):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _marked_state(), {"epoch": 0}, {"accuracy": 0.5})
  ckpt.close()
  path = _array_file(tmp_path / "0")
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 1
  path.write_bytes(bytes(data))
  # orbax alone restores it without a word, with other values (what was checked)
  raw = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(
      read_only=True, save_interval_steps=0, create=False))
  restored = raw.restore(0, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(_marked_state())))["state"]
  assert not np.array_equal(np.asarray(restored["w"]), _MARKER)
  with pytest.raises(CorruptCheckpoint) as info:
    Checkpointer(tmp_path, read_only=True).restore(0, _marked_state())
  assert str(info.value) == (f"checkpoint step 0 ({tmp_path / '0'}) is corrupt: "
                             f"{path.relative_to(tmp_path / '0').as_posix()} does not "
                             "match its checksum")


def test_truncated_array_data_is_one_line(tmp_path):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _marked_state(), {"epoch": 0}, {"accuracy": 0.5})
  ckpt.close()
  path = _array_file(tmp_path / "0")
  path.write_bytes(path.read_bytes()[:100])
  with pytest.raises(CorruptCheckpoint, match="does not match its checksum") as info:
    Checkpointer(tmp_path).restore(0, _marked_state())
  assert "\n" not in str(info.value)


def test_a_step_without_checksums_is_read_unverified_with_one_warning(tmp_path, capsys):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _state(0), {"epoch": 0}, {"accuracy": 0.5})
  ckpt.close()
  (tmp_path / "0" / CHECKSUM_FILE).unlink()  # as written before checksums existed
  reader = Checkpointer(tmp_path, read_only=True)
  capsys.readouterr()
  for _ in range(2):
    _assert_tree_equal(reader.restore(0, _state(0))[0], _state(0))
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith("warning: checkpoint step 0 (")
  assert "read unverified" in err[0]


def test_set_aside_hides_a_step_from_orbax_so_it_can_be_saved_again(tmp_path):
  ckpt = Checkpointer(tmp_path / "c")
  ckpt.save(1, _state(1), {"epoch": 1}, {"accuracy": 0.9})
  ckpt.save(2, _state(2), {"epoch": 2}, {"accuracy": 0.5})
  moved = ckpt.set_aside(2, "corrupt")
  assert moved == str(tmp_path / "c.set-aside" / "2-corrupt")
  assert ckpt.all_steps() == [1] and ckpt.latest_step() == 1
  ckpt.save(2, _state(2), {"epoch": 2}, {"accuracy": 0.5})  # the replay's save
  ckpt.close()
  assert _on_disk_steps(tmp_path / "c") == [1, 2]


def test_a_reader_leaves_a_save_in_flight_and_cannot_write(tmp_path, caplog):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(0, _state(0), {"epoch": 0}, {"accuracy": 0.5})
  ckpt.close()
  in_flight = tmp_path / f"1{TMP_SUFFIX}" / "state"
  in_flight.mkdir(parents=True)  # a running trainer's save
  import logging
  with caplog.at_level(logging.INFO, logger="absl"):
    reader = Checkpointer(tmp_path, read_only=True)
  assert reader.all_steps() == [0]
  reader.close()
  assert in_flight.is_dir()
  # orbax's notice that the directory is read only is logged at INFO, not WARNING
  notices = [r for r in caplog.records if "read only" in r.getMessage()]
  assert notices and all(r.levelno == logging.INFO for r in notices)
  with pytest.raises(RuntimeError, match="read-only"):
    reader.set_aside(0, "corrupt")
  with pytest.raises(CheckpointVanished):
    Checkpointer(tmp_path, read_only=True).verify(7)

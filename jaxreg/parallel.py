"""Data parallelism: a 1-D device mesh, replicated state, batches split along 'data'.

jit over a mesh (not pmap, which JAX calls the old way): the same program runs on one
CPU or N GPUs. Auto axis types, because the Explicit default breaks nn.Embed and the
matmul-based confusion matrix (ShardingTypeError).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  devices = list(devices) if devices is not None else jax.devices()
  return jax.sharding.Mesh(
      np.array(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(key: str, batch_size: int, mesh) -> None:
  n = mesh.size
  if batch_size % n:
    raise ValueError(
        f"{key}={batch_size} is not divisible by the {n} devices of the mesh; "
        f"use a multiple of {n}")


def put_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Host batch -> global arrays split along the batch axis across the mesh.

  Several processes (jax.distributed): each builds the same global batch on its host
  (the order depends on seed and epoch only) and transfers only the rows of its own
  devices, so the global array is assembled without any process sending another's
  shard.
  """
  sharding = data_sharded(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
          for k, v in batch.items()}


def put_replicated(tree, mesh):
  if jax.process_count() > 1:
    # A global replicated array from host values that are equal on every process
    # (device arrays of one process cannot be placed on another's devices).
    tree = jax.device_get(tree)
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                               lambda index, x=x: np.asarray(x)[index]),
        tree)
  return jax.device_put(tree, replicated(mesh))

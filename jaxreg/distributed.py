"""Multi-process runs: `jax.distributed.initialize()` when launched as several processes.

One process per host (or per GPU) runs the same program; after `initialize`, the mesh
of `jaxreg.parallel` spans every process's devices and jit runs one SPMD program over
them. Launchers:

* SLURM `srun` (SLURM_STEP_NUM_TASKS > 1) and Open MPI `mpirun`
  (OMPI_COMM_WORLD_SIZE > 1): detected; jax's own cluster detection then finds the
  coordinator (first node of the step), process count and id.
* anything else: `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`
  on every process (jaxreg.main flags), the same values jax.distributed takes.

A single process (including a SLURM batch script or array task with one task) is never
initialized: nothing changes for it. On CPU, cross-process collectives need gloo
(`jax_cpu_collectives_implementation`), set before initialize.
"""

from __future__ import annotations

import os

import jax

_initialized = False


def launched_processes() -> tuple[str, int] | None:
  """(launcher, process count) when this process is one of several, else None."""
  slurm = os.environ.get("SLURM_STEP_NUM_TASKS")
  if slurm and int(slurm) > 1 and "SLURM_PROCID" in os.environ:
    return "slurm", int(slurm)
  ompi = os.environ.get("OMPI_COMM_WORLD_SIZE")
  if ompi and int(ompi) > 1:
    return "ompi", int(ompi)
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Joins the other processes if there are any; returns whether it did.

  Call before any JAX computation. Explicit arguments win over detection; with
  `num_processes` of 1 (or nothing given nor detected) it does nothing.
  """
  global _initialized
  if _initialized:
    return True
  explicit = coordinator_address is not None or num_processes is not None
  if explicit:
    if num_processes is None or process_id is None or coordinator_address is None:
      raise ValueError("--coordinator_address, --num_processes and --process_id go "
                       "together (all three, on every process)")
    if num_processes <= 1:
      return False
    kwargs = dict(coordinator_address=coordinator_address,
                  num_processes=num_processes, process_id=process_id,
                  cluster_detection_method="deactivate")
  else:
    found = launched_processes()
    if found is None:
      return False
    kwargs = dict(cluster_detection_method=found[0])  # jax's ClusterEnv.name
  # Only CPU clients read this; GPUs use NCCL whatever it says.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  _initialized = True
  return True


def process_index() -> int:
  return jax.process_index()


def is_main() -> bool:
  """Process 0 writes JSON, TensorBoard, plots and console output; the others only
  compute (and take part in every checkpoint save and restore, which are
  collective)."""
  return process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here for the others (a no-op for one process). Reads of a
  shared workdir go before one, writes after it, so no process reads what another
  just wrote (orbax's managers, opened on what a process sees, sync collectively)."""
  import jax
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)

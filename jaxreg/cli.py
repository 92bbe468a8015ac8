"""Command-line plumbing shared by main, evaluate: one-line errors with exit code 2.

ml_collections raises an AttributeError with a traceback for an unknown
`--config.KEY`, and defers a missing config file's error to first access; a user
should instead see one line naming the key and what is allowed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging as std_logging
import os
import sys
from pathlib import Path

from absl import flags, logging

from jaxreg import config as config_lib, configs, io  # light: ml_collections only

USAGE_ERROR = 2
DIVERGED = 1


def quiet_libraries() -> None:
  """Library logs (orbax, jax, absl) and Python warnings stay off the console
  unless -v is given (-v 0: warnings and info, -v 1: debugging); jaxreg's own
  warnings (absl records from jaxreg/) still show. orbax alone logs every save at
  INFO, and warnings such as 'Requested tracked_metric' on a preemption save."""
  if not any(a.startswith(("-v", "--verbosity")) for a in sys.argv[1:]):
    logging.set_verbosity(logging.WARNING)
    std_logging.captureWarnings(True)  # warnings.warn -> the 'py.warnings' logger
    logging.use_absl_handler()  # on the root logger (app.run does it; argparse CLIs not)
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _JaxregOnly) for f in handler.filters):
      handler.addFilter(_JaxregOnly())
    std_logging.getLogger("py.warnings").addFilter(_JaxregOnly())
    # Exceptions Python cannot raise (in callbacks, finalizers): orbax's asyncio
    # callbacks after a failed save raise 'Event loop is closed' there.
    sys.unraisablehook = _unraisable_to_log
  enable_compilation_cache()


def _unraisable_to_log(unraisable) -> None:
  logging.info("ignored in %r: %s: %s", unraisable.object,
               getattr(unraisable.exc_type, "__name__", unraisable.exc_type),
               unraisable.exc_value)


class _JaxregOnly:
  """A logging filter that passes records logged from jaxreg's own files."""
  _root = __file__.rsplit("/", 1)[0] + "/"

  def filter(self, record) -> bool:
    return record.pathname.startswith(self._root)


def enable_compilation_cache() -> None:
  """Reuse compiled steps across runs (resumes, sweeps, tests): JAX's own disk cache.

  JAXREG_COMPILATION_CACHE=DIR moves it; =off disables it.
  """
  import jax  # here: `--help` and flag errors need no jax
  where = os.environ.get("JAXREG_COMPILATION_CACHE",
                         os.path.expanduser("~/.cache/jaxreg/xla"))
  if where.lower() in ("off", "0", ""):
    return
  jax.config.update("jax_compilation_cache_dir", where)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def fail(message: str, code: int = USAGE_ERROR):
  """Prints `error: MESSAGE` (one line) on stderr and exits with `code`."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(code)


def _unknown_key(argv, config) -> str | None:
  """Names the first --config.KEY override that is not a key of `config`."""
  for arg in argv[1:]:
    if not arg.startswith("--config.") or "=" not in arg:
      continue
    message = config_lib.unknown_key(config, arg[len("--config."):].split("=", 1)[0])
    if message:
      return message
  return None


def _config_root_on_path(argv) -> None:
  """configs/*.py import their siblings (`from configs import datasets`): put the
  folder that holds configs/ on sys.path, wherever the command runs from."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      path = Path(arg.split("=", 1)[1].partition(":")[0]).resolve()
      if path.parent.name == "configs" and str(path.parents[1]) not in sys.path:
        sys.path.insert(0, str(path.parents[1]))


def _packaged_configs(argv) -> list[str]:
  """argv with `--config=lstm[:VARIANT]` (a config shipped in jaxreg/configs, named
  without a path) given as that file's path, which config_flags loads."""
  return [f"--config={configs.resolve(a.split('=', 1)[1])}"
          if a.startswith("--config=") else a for a in argv]


def parse_flags(argv):
  argv = _packaged_configs(argv)
  _config_root_on_path(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if "Traceback" in message:  # an exception inside get_config: keep its last line
      message = message.strip().splitlines()[-1]
    fail(message)
  except SyntaxError as e:  # a config file that does not compile
    fail(f"--config: {e.filename} line {e.lineno} does not compile: "
         f"{type(e).__name__}: {e.msg}")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    config = _try_load_config(argv)
    fail(_unknown_key(argv, config) if config is not None else str(e))


def _try_load_config(argv):
  """The config file named by --config, loaded without overrides (for messages)."""
  for arg in argv[1:]:
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
      path, _, variant = spec.partition(":")
      try:
        # As ml_collections' config_flags loads it: the file as a module.
        module_spec = importlib.util.spec_from_file_location("config_probe", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.get_config(variant) if variant else module.get_config()
      except Exception:  # the original error is reported instead
        return None
  return None


def no_stray_arguments(argv) -> None:
  """One line and exit 2 when anything but flags was given."""
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")


def config_and_workdir(argv, flag_values):
  """The common start of main(): no stray arguments, a loaded --config, a --workdir."""
  quiet_libraries()
  no_stray_arguments(argv)
  config = loaded_config(flag_values, "config")
  if not flag_values.workdir:
    fail("--workdir is required")
  return config, flag_values.workdir


def run_workdir(argv, flag_values) -> str:
  """The common start of a main() that reads a finished run (evaluate, predict): no
  stray arguments, a --workdir."""
  quiet_libraries()
  no_stray_arguments(argv)
  if not flag_values.workdir:
    fail("--workdir is required")
  return flag_values.workdir


def loaded_config(flag_values, name: str):
  """The config flag's value, or a one-line error if its file failed to load."""
  if flag_values[name].value is None and not _flag_given(name):
    fail(f"--{name} is required, e.g. --{name}=configs/lstm.py")
  try:
    config = flag_values[name].value
    config.keys()  # the value is a lazy proxy: a failed load raises on first use
    return config
  except OSError as e:
    first = next((l.strip() for l in str(e).splitlines() if "Errno" in l), str(e))
    path = next((a.split("=", 1)[1].partition(":")[0] for a in sys.argv[1:]
                 if a.startswith(f"--{name}=")), "")
    fail(f"--{name}: cannot load the config file: {first}"
         f"{config_lib.missing_file_hint(path) if path else ''}")


def _flag_given(name: str) -> bool:
  return any(a.startswith(f"--{name}=") for a in sys.argv[1:])


def define_distributed_flags() -> None:
  """jax.distributed settings for launchers that jax does not detect (not srun or
  mpirun): the same three values on every process, the process id differing."""
  flags.DEFINE_string("coordinator_address", None,
                      "HOST:PORT of process 0 (multi-process runs without srun/mpirun).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (with "
                       "--coordinator_address).")
  flags.DEFINE_integer("process_id", None, "This process's id, 0..num_processes-1.")


def start_processes(flag_values) -> None:
  """jax.distributed.initialize when launched as several processes; preemption
  signals (SIGTERM, SIGUSR1) become a checkpoint at the next step boundary."""
  from jaxreg import distributed, preemption  # here: after flag parsing (they load jax)
  try:
    distributed.initialize(flag_values.coordinator_address,
                           flag_values.num_processes, flag_values.process_id)
  except ValueError as e:
    fail(str(e))
  preemption.install()


@contextlib.contextmanager
def user_errors(workdir=None):
  """Bad values and missing files -> one line, code 2; divergence -> code 1; a write
  the filesystem refuses (full disk, permissions) -> one line, io.WRITE_REFUSED;
  preemption -> requeue under SLURM (exit 0), else exit PREEMPTED_EXIT; SIGINT ->
  exit 130 (see docs/workdir.md, "Exit codes"). `workdir`: named for a refused write that
  carries no file name (a library's flush)."""
  # Here: the trainer loads jax, flax and orbax, which flag errors need not.
  from jaxreg import checkpoint, preemption, train
  try:
    yield
  except (config_lib.ConfigError, FileNotFoundError, checkpoint.CorruptCheckpoint) as e:
    fail(str(e))
  except train.TrainingDiverged as e:
    fail(str(e), code=DIVERGED)
  except preemption.Preempted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(preemption.exit_code(e))
  except KeyboardInterrupt:  # a command without the SIGINT handler (evaluate, report)
    fail("interrupted (SIGINT)", code=preemption.INTERRUPTED_EXIT)
  except Exception as e:  # noqa: BLE001 - refused writes surface as many types
    message = io.refused_write(e, workdir)
    if message is None:
      raise
    # At once: libraries whose writes failed (orbax's async saver, tensorboardX's
    # writer thread) would print tracebacks at interpreter exit. What is on disk
    # stays valid (atomic files, whole lines, committed checkpoints).
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(io.WRITE_REFUSED)

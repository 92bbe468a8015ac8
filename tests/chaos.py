"""Chaos campaign: SIGKILL a training run at random points, rerun, and check that every
rerun ends exactly like the uninterrupted run (summary.json and metrics.jsonl).

  python -m tests.chaos --kills=50 [--seed=S] [--dir=DIR] [--epochs=3]

Each kill lands on a chain of attempts on one workdir (so kills also hit resumes): a
`jaxreg.main` process is started on it and SIGKILLed at a point drawn from the seeded
generator, of one of three kinds:

* `save`: while a checkpoint is being written (its `<step>.orbax-checkpoint-tmp`
  directory exists), at a random one of the saves still to come;
* `final`: in the final evaluation (after the last epoch's `val` line, a random delay
  that lands among the test evaluation, predictions, plots and summary.json);
* `time`: a random delay after the run locked its workdir (about half a run long).

After each kill the workdir is copied aside; at the end every copy (and each chain's
end) is rerun to completion and compared with the uninterrupted run. A kill that comes
too late (the run already ended) is not counted and the chain starts over. The seed is
printed first: `--seed` replays a campaign. tests/test_chaos.py runs 5 kills.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jaxreg import lock  # noqa: E402 - light (no jax): reads the holder's pid
KINDS = ("save", "final", "time")


def _command(workdir: Path, epochs: int) -> list[str]:
  return [sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
          f"--workdir={workdir}", f"--config.train.epochs={epochs}",
          "--config.train.log_every_steps=5"]


def _env() -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  for key in ("SLURM_JOB_ID", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
    env.pop(key, None)
  return env


def run_to_end(workdir: Path, epochs: int) -> subprocess.CompletedProcess:
  return subprocess.run(_command(workdir, epochs), cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=900)


def result(workdir: Path) -> dict:
  """What must not depend on interruptions: the summary bar timings, every line."""
  summary = json.loads((workdir / "summary.json").read_text())
  keep = ("best_step", "evaluated_step", "evaluated_epoch", "epochs_completed",
          "stopped_early", "val", "test")
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {"summary": {k: summary[k] for k in keep}, "metrics": lines}


def _last_val_written(workdir: Path, total_steps: int) -> bool:
  try:
    text = (workdir / "metrics.jsonl").read_text()
  except OSError:
    return False
  return f'"split": "val", "step": {total_steps},' in text


def _saving(workdir: Path) -> bool:
  try:
    return any(p.name.endswith(".orbax-checkpoint-tmp")
               for p in (workdir / "checkpoints").iterdir())
  except OSError:
    return False


def _kill_at(workdir: Path, epochs: int, kind: str, rng: random.Random,
             duration: float, steps_per_epoch: int) -> tuple[bool, str]:
  """Starts a run on `workdir` and SIGKILLs it at a `kind` point. Returns (killed,
  where): killed is False when the run ended first."""
  proc = subprocess.Popen(_command(workdir, epochs), cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  total = steps_per_epoch * epochs
  start = time.time()
  try:
    if kind == "time":
      # from when the run holds its workdir (validated, about to write), so that the
      # kill lands among its writes rather than in the imports
      delay = rng.uniform(0.0, duration / 2)
      where = f"{delay:.2f} s after it locked its workdir"
      while not lock.holder(workdir).startswith(f"pid {proc.pid} ") \
          and proc.poll() is None and time.time() - start < duration:
        time.sleep(0.005)
      t0 = time.time()
      while time.time() - t0 < delay and proc.poll() is None:
        time.sleep(0.005)
    elif kind == "save":
      skip = rng.randrange(epochs)  # let this many saves pass first
      where = f"during a save (after {skip} skipped)"
      seen = False
      while proc.poll() is None and time.time() - start < 600:
        now = _saving(workdir)
        if now and not seen:
          if skip == 0:
            break
          skip -= 1
        seen = now
        time.sleep(0.002)
    else:  # final
      delay = rng.uniform(0.0, 1.0)
      where = f"{delay:.2f} s into the final evaluation"
      while not _last_val_written(workdir, total) and proc.poll() is None \
          and time.time() - start < 600:
        time.sleep(0.005)
      t0 = time.time()
      while time.time() - t0 < delay and proc.poll() is None:
        time.sleep(0.005)
    if proc.poll() is not None:
      return False, where
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True, where
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def campaign(kills: int, seed: int, base: Path, epochs: int = 3, reference: Path | None = None,
             out=sys.stdout) -> list[str]:
  """Runs the campaign in `base`; returns the problems found ([] when every rerun
  matched). `reference`: an uninterrupted workdir of the same command, if at hand."""
  rng = random.Random(seed)
  print(f"chaos: seed {seed} ({kills} kills; replay with --seed={seed})", file=out,
        flush=True)
  base.mkdir(parents=True, exist_ok=True)
  t0 = time.time()
  if reference is None:
    reference = base / "uninterrupted"
    done = run_to_end(reference, epochs)
    if done.returncode != 0:
      return [f"the uninterrupted run failed: {done.stderr[-2000:]}"]
  duration = time.time() - t0 if reference == base / "uninterrupted" else 10.0
  expected = result(reference)
  steps_per_epoch = max(r["step"] for r in expected["metrics"]
                        if r["split"] == "val") // epochs
  # at least one kill of each kind, the rest drawn; in a seeded order
  kinds = list(KINDS[:min(kills, len(KINDS))]) + [rng.choice(KINDS)
                                                   for _ in range(kills - len(KINDS))]
  rng.shuffle(kinds)
  copies, chain, n_chain, problems = [], None, 0, []
  for i, kind in enumerate(kinds):
    while True:
      if chain is None:
        n_chain += 1
        chain = base / f"chain{n_chain}"
      killed, where = _kill_at(chain, epochs, kind, rng, duration, steps_per_epoch)
      if killed:
        break
      print(f"  kill {i + 1} ({kind}) came too late: the run ended; new chain",
            file=out, flush=True)
      copies.append((chain, "a chain's end"))  # it ended on its own: check it too
      chain = None
    copy = base / f"kill{i + 1}_{kind}"
    shutil.copytree(chain, copy, symlinks=True)
    copies.append((copy, f"kill {i + 1}: {where}"))
    print(f"  kill {i + 1}: {where} ({chain.name})", file=out, flush=True)
  if chain is not None:
    copies.append((chain, "a chain's end"))
  for workdir, what in copies:
    rerun = run_to_end(workdir, epochs)
    if rerun.returncode != 0:
      problems.append(f"{what}: the rerun of {workdir} exited {rerun.returncode}: "
                      f"{rerun.stderr[-1500:]}")
      continue
    got = result(workdir)
    if got != expected:
      which = [k for k in expected if got[k] != expected[k]]
      problems.append(f"{what}: {workdir} ends with other {' and '.join(which)}")
  print(f"chaos: seed {seed}: {len(copies)} reruns, "
        f"{'all identical to the uninterrupted run' if not problems else 'PROBLEMS:'}",
        file=out, flush=True)
  for p in problems:
    print(f"  {p}", file=out, flush=True)
  return problems


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--dir", default=None, help="where the workdirs go (kept); "
                      "default: a temporary directory, removed when all went well")
  args = parser.parse_args(argv)
  seed = args.seed if args.seed is not None else int(time.time() * 1000) % 2**31
  base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="jaxreg_chaos_"))
  problems = campaign(args.kills, seed, base, args.epochs)
  if not problems and not args.dir:
    shutil.rmtree(base, ignore_errors=True)
  elif problems:
    print(f"workdirs kept in {base}", flush=True)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())

"""Integration tests against a real single-node SLURM (tests/slurm_cluster.py).

Skipped with the reason when slurm-wlm/munge are missing, except under
JAXREG_REQUIRE_SLURM=1 (set by .ci/run), where a missing SLURM fails the suite.
"""

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import slurm_cluster
from tests.conftest import ROOT, python_env, tiny_config

# 4 runs by default; JAXREG_SLURM_SWEEP_SEEDS=0,1,2,3 makes it an 8-run check (seeds 0-3
# x two L2 values; docs/cluster.md, "How it is tested").
SEEDS = os.environ.get("JAXREG_SLURM_SWEEP_SEEDS", "0,1")
SWEEP_AXES = [f"--axis=seed={SEEDS}", "--axis=reg.l2=0,0.001"]
NUM_RUNS = 2 * len(SEEDS.split(","))
EPOCHS = 3  # long enough that the preemption signal lands during training


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  why = slurm_cluster.missing()
  if why:
    if os.environ.get("JAXREG_REQUIRE_SLURM") == "1":
      pytest.fail(f"JAXREG_REQUIRE_SLURM=1 but {why}")
    pytest.skip(why)
  c = slurm_cluster.LocalSlurm(tmp_path_factory.mktemp("slurm"))
  c.start()
  yield c
  c.stop()


def test_missing_slurm_is_named(monkeypatch):
  monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
  why = slurm_cluster.missing()
  assert why and "slurm-wlm munge" in why and "munged" in why


def test_array_script_execs_python_with_requeue_signal_and_resources(tmp_path):
  from jaxreg.sweep import slurm
  script = slurm.array_script(tmp_path, slurm.Options(
      partition="gpu", time="1:00:00", cpus_per_task=4, mem="8G", gpus_per_task=1,
      signal_seconds=300, extra=("--account=abc",), python="/opt/py"))
  lines = script.splitlines()
  for want in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@300",
               "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00",
               "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G",
               "#SBATCH --gpus-per-task=1", "#SBATCH --account=abc",
               f"#SBATCH --output={tmp_path}/slurm/logs/%A_%a.out"):
    assert want in lines, want
  assert lines[-1].startswith("exec /opt/py -m jaxreg.slurm task ")  # exec: signals
  assert '--index="$SLURM_ARRAY_TASK_ID"' in lines[-1]


def test_without_sbatch_the_slurm_launcher_is_a_one_line_error(tmp_path):
  env = python_env(PATH=os.path.dirname(sys.executable))
  p = subprocess.run(_sweep_cmd(tmp_path / "s", "--launcher=slurm"), cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [
      "error: --launcher=slurm: sbatch is not on PATH (run this on a SLURM login node)"]
  assert not (tmp_path / "s").exists()  # nothing planned or written


def _env(cluster):
  env = python_env(**{"SLURM_CONF": str(cluster.conf)})
  env.pop("XLA_FLAGS", None)
  return env


def _sweep_cmd(workdir, *extra):
  return [sys.executable, "-m", "jaxreg.sweep", "--config=configs/lstm.py:tiny",
          f"--workdir={workdir}", f"--config.train.epochs={EPOCHS}", *SWEEP_AXES,
          *extra]


def _wait_for(predicate, timeout, what, cluster):
  deadline = time.time() + timeout
  while not predicate():
    if time.time() > deadline:
      raise AssertionError(f"timed out waiting for {what}; queue {cluster.jobs()}\n"
                           f"{cluster.logs()}")
    time.sleep(0.05)


def _signal_batch(cluster, job, sig, task_log, timeout=120):
  """scancel --signal --batch, stopped once the task log says it was preempted.

  SLURM 22.05 can answer 'try again later' for a job in transition even though the
  signal was delivered, and scancel then retries for a while by itself: a retry that
  lands after the requeue would preempt the restarted run a second time. So scancel is
  ended (our own child, by pid) as soon as the preemption shows in the log.
  """
  proc = subprocess.Popen(["scancel", f"--signal={sig}", "--batch", job],
                          env=cluster.env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  try:
    while "preempted by" not in task_log.read_text():
      assert time.time() < deadline, f"the run was not preempted:\n{task_log.read_text()}"
      time.sleep(0.05)
  finally:
    if proc.poll() is None:
      proc.terminate()
    proc.wait()


def _read_csv(path):
  with open(path, newline="") as f:
    return {r["run"]: r for r in csv.DictReader(f)}


def assert_runs_csv_match(a: Path, b: Path, rtol=1e-6):
  """Same runs, statuses and columns; numbers within rtol (timings excepted)."""
  ra, rb = _read_csv(a), _read_csv(b)
  assert ra.keys() == rb.keys()
  for run in ra:
    x, y = ra[run], rb[run]
    assert x.keys() == y.keys()
    for col in x:
      if col == "train_seconds":
        continue
      try:
        fx, fy = float(x[col]), float(y[col])
      except ValueError:
        assert x[col] == y[col], (run, col)
        continue
      assert math.isclose(fx, fy, rel_tol=rtol, abs_tol=1e-9), (run, col, fx, fy)


@pytest.mark.slow
def test_sweep_array_with_a_preempted_run_matches_the_local_launcher(cluster, tmp_path):
  env, workdir = _env(cluster), tmp_path / "slurm_sweep"
  sub = subprocess.run(_sweep_cmd(workdir, "--launcher=slurm"), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
  assert sub.returncode == 0, sub.stderr[-2000:]
  array = re.search(r"array job (\d+)", sub.stdout).group(1)
  meta = json.loads((workdir / "sweep.json").read_text())
  assert len(meta["runs"]) == NUM_RUNS
  script = (workdir / "slurm" / "array.sbatch").read_text()
  assert "#SBATCH --requeue" in script and "#SBATCH --signal=B:USR1@120" in script
  assert "exec " in script

  # Preempt run 0 once it trains: USR1 to its batch step (Python, thanks to exec).
  log0 = workdir / meta["runs"][0]["name"] / "metrics.jsonl"
  _wait_for(lambda: log0.exists() and '"train_step"' in log0.read_text(), 300,
            "run 0 to train", cluster)
  task_log = workdir / "slurm" / "logs" / f"{array}_0.out"
  job = re.search(r"\(job (\d+)", task_log.read_text()).group(1)  # the task's own id
  _signal_batch(cluster, job, "USR1", task_log)
  cluster.wait_idle(600)

  task_log = task_log.read_text()
  assert "preempted by SIGUSR1" in task_log, task_log
  assert "requeued SLURM job" in task_log and "restart 1" in task_log, task_log
  assert task_log.count("preempted by") == 1, task_log
  assert "resumed from step" in task_log, task_log
  for i in range(NUM_RUNS):  # a log per task
    assert (workdir / "slurm" / "logs" / f"{array}_{i}.out").exists()
  rows = _read_csv(workdir / "runs.csv")  # written by the collect job
  assert len(rows) == NUM_RUNS and {r["status"] for r in rows.values()} == {"done"}
  statuses = [r["status"] for r in json.loads((workdir / "sweep.json").read_text())["runs"]]
  assert statuses == ["done"] * NUM_RUNS

  # The same sweep with the local launcher, in this process.
  from jaxreg.sweep import local, parse_axes
  here = tmp_path / "local_sweep"
  config = tiny_config(**{"train.epochs": EPOCHS})
  axes = parse_axes([a[len("--axis="):] for a in SWEEP_AXES], config)
  local.run_sweep(config, here, axes, executor=local.SequentialExecutor(),
                  out=open(os.devnull, "w"))
  assert_runs_csv_match(workdir / "runs.csv", here / "runs.csv")

  # Resubmission skips finished runs: nothing is submitted.
  again = subprocess.run(_sweep_cmd(workdir, "--launcher=slurm"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "nothing to submit" in again.stdout
  assert not cluster.jobs()


@pytest.mark.slow
def test_srun_two_processes_join_one_mesh(cluster, tmp_path):
  workdir = tmp_path / "run"
  cmd = ["srun", "--ntasks=2", "--cpus-per-task=1", "--kill-on-bad-exit=1",
         sys.executable, "-m", "jaxreg.main", "--config=configs/lstm.py:tiny",
         f"--workdir={workdir}", "--config.train.epochs=1",
         "--config.data.synthetic.train_size=200", "--config.data.buckets="]
  p = subprocess.run(cmd, cwd=ROOT, env=_env(cluster), capture_output=True, text=True,
                     timeout=600)
  assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
  assert p.stdout.count("test accuracy") == 1  # console output from process 0 only
  summary = json.loads((workdir / "summary.json").read_text())
  assert len(summary["provenance"]["devices"]) == 2  # one mesh over both processes
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  keys = [(r["split"], r["step"]) for r in lines]
  assert len(keys) == len(set(keys))  # one writer

"""A real single-node SLURM cluster in a temporary directory, for integration tests.

munged, slurmctld and slurmd (Debian's `munge` and `slurm-wlm` packages) run in the
foreground as children of the test process, with their own munge key and socket, state,
spool and log directories and free TCP ports, so nothing under /etc or /var is touched
and two clusters never share anything. Client commands find the cluster through the
SLURM_CONF variable in `env`. Needs root (SlurmUser=root) and the binaries on PATH;
`missing()` says what is absent.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo",
            "scontrol", "scancel")


def missing() -> str | None:
  """Why no cluster can start here, or None."""
  absent = [b for b in BINARIES if shutil.which(b) is None]
  if absent:
    return (f"SLURM is not installed ({', '.join(absent)} not on PATH): "
            "apt-get install -y slurm-wlm munge")
  if os.geteuid() != 0:
    return "the test SLURM cluster runs its daemons as root (SlurmUser=root)"
  return None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class LocalSlurm:
  """Start with `start()`, stop with `stop()` (or use as a context manager)."""

  def __init__(self, root: Path, cpus: int | None = None):
    self.root = Path(root)
    self.host = socket.gethostname().split(".")[0]
    self.cpus = cpus or os.cpu_count() or 1
    self.procs: list[subprocess.Popen] = []
    self.conf = self.root / "slurm.conf"
    self.munge_socket = self.root / "munge" / "munge.socket"
    self.env = dict(os.environ, SLURM_CONF=str(self.conf))

  def _write_config(self) -> None:
    # cred_expire=10: a requeued job may start again only after the credential
    # lifetime (default 120 s), which would make the preemption test wait minutes.
    r = self.root
    for d in ("munge", "state", "spool", "log"):
      (r / d).mkdir(parents=True, exist_ok=True)
    os.chmod(r / "munge", 0o700)
    key = r / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    os.chmod(key, 0o600)
    self.conf.write_text(f"""\
ClusterName=jaxregtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire=10
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

  def _spawn(self, name: str, args: list[str]) -> None:
    log = open(self.root / "log" / f"{name}.out", "w")
    self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                       env=self.env, start_new_session=True))

  def start(self, timeout: float = 60.0) -> "LocalSlurm":
    self._write_config()
    r = self.root
    self._spawn("munged", [
        "munged", "-F", "-f", f"--socket={self.munge_socket}",
        f"--key-file={r}/munge/munge.key", f"--pid-file={r}/munge/munged.pid",
        f"--seed-file={r}/munge/munged.seed", f"--log-file={r}/log/munged.log"])
    self._wait(lambda: self.munge_socket.exists(), timeout, "munged's socket")
    self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
    self._wait(lambda: self._run(["scontrol", "ping"]).returncode == 0, timeout,
               "slurmctld to answer scontrol ping")
    self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.host])
    self._wait(self._node_idle, timeout, "the node to become idle")
    return self

  def _run(self, args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=self.env, capture_output=True, text=True, **kw)

  def _node_idle(self) -> bool:
    out = self._run(["sinfo", "-h", "-o", "%T"]).stdout.strip()
    return out.startswith("idle")

  def _wait(self, ready, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
      if ready():
        return
      dead = [p.args[0] for p in self.procs if p.poll() is not None]
      if dead:
        raise RuntimeError(f"{', '.join(dead)} exited; logs: {self.logs()}")
      time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}; logs: {self.logs()}")

  def logs(self, tail: int = 20) -> str:
    out = []
    for f in sorted((self.root / "log").glob("*")):
      lines = f.read_text(errors="replace").splitlines()[-tail:]
      out.append(f"--- {f.name}\n" + "\n".join(lines))
    return "\n".join(out)

  def run(self, *args: str, check: bool = True) -> str:
    """A client command against this cluster; its stdout."""
    p = self._run(list(args))
    if check and p.returncode:
      raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p.stdout

  def jobs(self) -> list[str]:
    """squeue lines 'JOBID STATE' of jobs not yet finished."""
    return [l for l in self.run("squeue", "-h", "-o", "%i %T").splitlines() if l.strip()]

  def wait_idle(self, timeout: float) -> None:
    """Until no job is pending or running."""
    deadline = time.time() + timeout
    while self.jobs():
      if time.time() > deadline:
        raise TimeoutError(f"jobs still queued after {timeout} s: {self.jobs()}")
      time.sleep(0.5)

  def stop(self) -> None:
    if self.procs and all(p.poll() is None for p in self.procs):
      self._run(["scancel", "--full", f"--user={os.getuid()}"])  # this cluster's jobs
      try:
        self.wait_idle(30)
      except (TimeoutError, RuntimeError):
        pass
    # Our own children only, by pid: slurmd first (it ends its job steps), then the
    # controller, then munged.
    for p in reversed(self.procs):
      if p.poll() is None:
        p.terminate()
        try:
          p.wait(timeout=15)
        except subprocess.TimeoutExpired:
          p.kill()
          p.wait()
    self.procs.clear()

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

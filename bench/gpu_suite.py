"""Every GPU comparison of issue 18 in one command, one JSON: jaxreg time / PyTorch time.

  bash bench/gpu_suite.sh                 # on the GPU machine (installs the carried wheels)
  python bench/gpu_suite.py --dry_run     # anywhere: tiny shapes, CPU, in the tests

Each comparison runs in a process of its own (jaxreg and PyTorch side by side in it,
warmed up, alternating timed rounds, medians: the bench/ scripts), in this order:

| part | script and shape | PyTorch side |
| --- | --- | --- |
| lstm_trec, lstm_imdb | rnn_vs_torch.py --hoist: B=32 TREC lengths (E=300, H=200, V=8700); B=64 T=256 (V=20000); float32, model.hoist_input=True | nn.LSTM on packed sequences (cuDNN), Adam, eager |
| vmap16 | vmap_sweep.py --ks=16: one vmapped group of 16 TREC-sized LSTMs | none: 16 sequential jaxreg runs |
| resnet50 | resnet_vs_torch.py: ResNet-50, CIFAR stem, 32x32, batch 256, model.dtype=bfloat16 | channels-last, torch.autocast(bfloat16), SGD momentum, eager |
| bert_base | bert_vs_torch.py --model=base: random BERT-base, seq 128, batch 64, bfloat16 | BertForSequenceClassification, torch.autocast(bfloat16), AdamW, eager |

PyTorch settings in every part: benchlib.fix_torch_settings (TF32 allowed for float32
matmuls and convolutions, as JAX's default precision on a GPU; cudnn.benchmark on;
seed 0), recorded under each part's env.torch. JAX and PyTorch share the GPU in one
process: XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 leaves PyTorch the rest.

Every ratio is a time ratio, jaxreg / reference (< 1: jaxreg is faster), next to the
issue's target: LSTM <= 1.0 (cuDNN), group <= 0.1 (>= 10x sequential), ResNet-50 and
BERT <= 1/1.2 (>= 1.2x PyTorch's throughput). The whole suite keeps to --budget seconds
(default 285, <= 5 minutes with the wheel install): each part gets at most its own cap
and what is left of the budget; a part that fails or runs out of time is recorded as
such and the suite goes on. A preflight (imports, devices) runs first: on the GPU
machine it stops the suite in seconds if JAX or PyTorch sees no GPU.

--dry_run: the same parts at tiny sizes (each script's --quick; ResNet and BERT still in
bfloat16) on whatever device there is; without torch installed each PyTorch half is skipped and the JSON says so.
Output: gpu_suite.json and gpu_suite.log (every part's output) in --out (default: $OUT
when set, else runs/gpu_suite); the table is printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

HERE = Path(__file__).resolve().parent
ONE_OVER_1_2 = round(1 / 1.2, 3)


@dataclasses.dataclass(frozen=True)
class Part:
  name: str
  script: str
  gpu_args: tuple[str, ...]
  dry_args: tuple[str, ...]
  # At most this long on the GPU (x3 in a dry run). The caps add up to more than the
  # budget: a part that compiles slowly (XLA autotunes ResNet-50's convolutions) may
  # use what an earlier part left; the last part pays if all are slow (rerun it alone
  # with --parts=NAME: the compilation cache makes a rerun on the same machine faster).
  cap_s: int


PARTS = (
    Part("lstm", "rnn_vs_torch.py", ("--shape=all", "--rounds=5", "--hoist"),
         ("--quick", "--hoist"), 100),
    Part("vmap16", "vmap_sweep.py", ("--ks=16", "--steps=20", "--rounds=5"),
         ("--quick", "--ks=4"), 75),
    Part("resnet50", "resnet_vs_torch.py",
         ("--batch=256", "--dtype=bfloat16", "--steps=15", "--rounds=3", "--warmup=3"),
         ("--quick", "--dtype=bfloat16"), 150),
    Part("bert_base", "bert_vs_torch.py",
         ("--model=base", "--batch=64", "--length=128", "--dtype=bfloat16", "--steps=15",
          "--rounds=3"), ("--quick", "--dtype=bfloat16"), 120),
)
# name -> (target time ratio, what it means)
TARGETS = {
    "lstm_trec": (1.0, "<= 1.0x cuDNN's time"),
    "lstm_imdb": (1.0, "<= 1.0x cuDNN's time"),
    "vmap16": (0.1, ">= 10x the throughput of 16 sequential runs"),
    "resnet50": (ONE_OVER_1_2, ">= 1.2x PyTorch's images/s"),
    "bert_base": (ONE_OVER_1_2, ">= 1.2x PyTorch's sequences/s"),
}

PREFLIGHT = r"""
import json, sys
out = {}
import jax
out["jax_backend"] = jax.default_backend()
out["jax_devices"] = [str(d) for d in jax.devices()]
import ml_collections, tensorboardX, flax, optax, orbax.checkpoint, chex  # noqa
import jaxreg.train, jaxreg.models.resnet, jaxreg.models.rnn  # noqa
from transformers import FlaxBertForSequenceClassification  # noqa: needs transformers<5
import transformers
out["transformers"] = transformers.__version__
# Where they come from: on the GPU machine, the carried wheels' folder first.
out["from"] = {m.__name__: m.__file__ for m in (transformers, ml_collections, flax)}
out["flax"] = flax.__version__
try:
  import torch
  out["torch"] = torch.__version__
  out["torch_cuda"] = torch.cuda.is_available()
except ImportError:
  out["torch"] = None
print("PREFLIGHT " + json.dumps(out))
"""


def run_child(cmd: list[str], timeout: float, env: dict, log) -> tuple[int | str, str,
                                                                       float]:
  """-> (exit code or 'timeout', output, seconds). The child's whole process group is
  killed at the timeout."""
  t0 = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=benchlib.ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
  try:
    output, _ = proc.communicate(timeout=max(timeout, 1))
    code: int | str = proc.returncode
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    output, _ = proc.communicate()
    code = "timeout"
  seconds = time.perf_counter() - t0
  log.write(f"$ {' '.join(cmd)}\n{output}\n[exit {code} after {seconds:.1f} s]\n\n")
  log.flush()
  return code, output, seconds


def ratios_of(name: str, result: dict) -> dict:
  """A part's JSON -> {ratio name: time ratio jaxreg / reference or None}."""
  if name == "lstm":
    return {f"lstm_{r['shape']}": r["time_ratio_jaxreg_over_torch"]
            for r in result["results"]}
  if name == "vmap16":
    return {"vmap16": round(result["results"][-1]["time_ratio_group_over_sequential"], 4)}
  return {name: result["result"]["time_ratio_jaxreg_over_torch"]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dry_run", action="store_true",
                      help="tiny sizes on any device (each script's --quick)")
  parser.add_argument("--budget", type=float, default=None,
                      help="seconds for the preflight and all parts together (default "
                           "285; with --dry_run 900, each part's cap x3: a CPU shared "
                           "with other jobs compiles slowly)")
  parser.add_argument("--parts", default=",".join(p.name for p in PARTS),
                      help="comma-separated subset of: " +
                           ", ".join(p.name for p in PARTS))
  parser.add_argument("--out", type=Path, default=None,
                      help="output folder (default: $OUT, else runs/gpu_suite)")
  args = parser.parse_args(argv)
  known = {p.name: p for p in PARTS}
  wanted = [s for s in args.parts.split(",") if s]
  bad = [s for s in wanted if s not in known]
  if bad or not wanted:
    print(f"error: --parts={args.parts!r}: use a comma-separated subset of "
          f"{', '.join(known)}", file=sys.stderr)
    return 2
  if args.budget is None:
    args.budget = 900 if args.dry_run else 285
  cap_factor = 3 if args.dry_run else 1
  out_dir = args.out or Path(os.environ.get("OUT") or benchlib.ROOT / "runs" / "gpu_suite")
  out_dir.mkdir(parents=True, exist_ok=True)
  deadline = time.monotonic() + args.budget
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"),
                                                     str(benchlib.ROOT)]))
  env.setdefault("PYTHONUNBUFFERED", "1")
  env.setdefault("HF_HUB_OFFLINE", "1")
  if not args.dry_run:
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
  report = {
      "suite": "gpu_suite", "mode": "dry_run" if args.dry_run else "gpu",
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
      "source": benchlib.source(), "versions": benchlib.versions(),
      "gpu": benchlib.gpu_info(),
      "load_average_before": benchlib.load_average(),
      "xla_mem_fraction": env.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
      "ratio": "time ratio jaxreg / reference, < 1: jaxreg is faster",
      "parts": {}, "ratios": {}, "targets": {}, "notes": []}
  json_path = out_dir / "gpu_suite.json"

  def save():
    report["wall_s"] = round(args.budget - (deadline - time.monotonic()), 1)
    json_path.write_text(json.dumps(report, indent=2) + "\n")

  with open(out_dir / "gpu_suite.log", "w") as log:
    code, output, seconds = run_child([sys.executable, "-c", PREFLIGHT],
                                      min(90, deadline - time.monotonic()), env, log)
    line = next((l for l in output.splitlines() if l.startswith("PREFLIGHT ")), None)
    pre = json.loads(line[len("PREFLIGHT "):]) if line else None
    report["preflight"] = {"exit": code, "seconds": round(seconds, 1), **(pre or {}),
                           "output_tail": None if pre else output[-3000:]}
    problem = None
    if pre is None:
      problem = f"preflight failed (exit {code}): {output.strip()[-400:]}"
    elif not args.dry_run and pre["jax_backend"] != "gpu":
      problem = f"JAX sees no GPU (backend {pre['jax_backend']}): use --dry_run on a CPU"
    elif not args.dry_run and not pre.get("torch_cuda"):
      problem = "PyTorch sees no GPU (or is not installed): the comparisons need it"
    if problem:
      report["notes"].append(problem)
      save()
      print(f"error: {problem}", file=sys.stderr)
      return 1
    print(f"preflight ({seconds:.0f} s): {json.dumps(pre)}", flush=True)
    if pre.get("torch") is None:
      report["notes"].append(benchlib.TORCH_SKIPPED + " (every part)")
      print(benchlib.TORCH_SKIPPED + ": the ratios against it are left empty", flush=True)

    for name in wanted:
      part = known[name]
      left = deadline - time.monotonic()
      if left < 10:
        report["parts"][name] = {"status": "not run: the suite's budget is spent"}
        save()
        continue
      result_path = out_dir / f".{name}.json"
      result_path.unlink(missing_ok=True)
      cmd = [sys.executable, str(HERE / part.script),
             *(part.dry_args if args.dry_run else part.gpu_args), f"--json={result_path}"]
      code, output, seconds = run_child(cmd, min(cap_factor * part.cap_s, left), env, log)
      entry = {"command": " ".join(["python", f"bench/{part.script}", *cmd[2:-1]]),
               "exit": code, "seconds": round(seconds, 1)}
      if code == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
        result_path.unlink()
        entry.update(status="ok", **{k: result[k] for k in result if k != "bench"})
        report["ratios"].update(ratios_of(name, result))
      else:
        entry.update(status="timeout" if code == "timeout" else "failed",
                     output_tail=output[-3000:])
      report["parts"][name] = entry
      print(f"{name}: {entry['status']} in {seconds:.0f} s", flush=True)
      save()

  for key, (target, meaning) in TARGETS.items():
    value = report["ratios"].get(key)
    report["targets"][key] = {"time_ratio_at_most": target, "meaning": meaning,
                              "measured": value,
                              "met": None if value is None else value <= target}
  report["load_average_after"] = benchlib.load_average()
  save()
  if not args.dry_run:  # for bench/resnet50_cifar_93.py --epochs=auto
    benchlib.LAST_SUITE.parent.mkdir(parents=True, exist_ok=True)
    benchlib.LAST_SUITE.write_text(json_path.read_text())
  print(f"\n{'comparison':<11} {'time ratio':>10} {'target':>7}  met   (jaxreg / "
        f"reference, < 1: jaxreg faster; {report['mode']})")
  for key, t in report["targets"].items():
    value = "-" if t["measured"] is None else f"{t['measured']:.3f}"
    met = {None: "-", True: "yes", False: "no"}[t["met"]]
    print(f"{key:<11} {value:>10} {t['time_ratio_at_most']:>7.3f}  {met}")
  failed = [n for n, p in report["parts"].items() if p.get("status") != "ok"]
  print(f"wrote {json_path} ({report['wall_s']:.0f} s)"
        + (f"; not ok: {', '.join(failed)}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())

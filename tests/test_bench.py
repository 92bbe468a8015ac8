"""Every script in bench/ runs end to end on the current APIs in a quick mode: they call
jaxreg's train, group and model code, so a refactor there broke two of them unnoticed.

bench/gpu_suite.sh --dry_run runs rnn_vs_torch, vmap_sweep, resnet_vs_torch and
bert_vs_torch in their quick modes; resnet50_cifar_93 and gpu_carry have their own
tests. The GPU scripts run here as on the GPU machine: without tensorflow and
tensorflow-datasets (blocked below), and without torch where it is not installed (CI),
when each PyTorch half is skipped and must say so.
"""

import importlib.util
import json
import re
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT, python_env

sys.path.insert(0, str(ROOT / "bench"))
import benchlib  # noqa: E402
import gpu_carry  # noqa: E402
import resnet50_cifar_93  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
# The GPU image has neither: a module-level import of them anywhere on the path the GPU
# scripts take fails these tests.
NO_TENSORFLOW = ('import sys\nfor _name in ("tensorflow", "tensorflow_datasets"):\n'
                 '  sys.modules.setdefault(_name, None)\n')


@pytest.fixture
def gpu_like_env(tmp_path):
  """python_env() with tensorflow and tensorflow_datasets unimportable (sitecustomize)."""
  site = tmp_path / "no_tensorflow"
  site.mkdir()
  (site / "sitecustomize.py").write_text(NO_TENSORFLOW)
  env = python_env(PYTHON=sys.executable)
  env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
  return env


def git_head() -> str:
  return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True, check=True).stdout.strip()


@pytest.mark.slow
def test_gpu_suite_dry_run_runs_every_comparison(tmp_path, gpu_like_env):
  proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), "--dry_run",
                         f"--out={tmp_path / 'out'}"], capture_output=True, text=True,
                        env=gpu_like_env, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  report = json.loads((tmp_path / "out" / "gpu_suite.json").read_text())
  assert report["mode"] == "dry_run"
  assert report["source"]["commit"] == git_head()
  parts = report["parts"]
  assert list(parts) == ["lstm", "vmap16", "resnet50", "bert_base"]
  assert all(p["status"] == "ok" for p in parts.values()), parts
  # Every jaxreg half timed something, on every shape.
  assert [r["shape"] for r in parts["lstm"]["results"]] == ["trec", "imdb"]
  assert all(r["jaxreg_ms_per_step"] > 0 for r in parts["lstm"]["results"])
  # jaxreg with its input projection hoisted, as cuDNN (model.hoist_input)
  assert all(r["hoist_input"] is True for r in parts["lstm"]["results"])
  assert parts["resnet50"]["result"]["jaxreg_images_per_s"] > 0
  assert parts["bert_base"]["result"]["jaxreg_seq_per_s"] > 0
  assert 0 < report["ratios"]["vmap16"] < 100
  log = (tmp_path / "out" / "gpu_suite.log").read_text()  # every part's own output
  vmap_rows = re.findall(r"^\s+(\d+)(?:\s+[\d.]+){4}\s+([\d.]+)\s*$", log, re.M)
  assert [k for k, _ in vmap_rows] == ["4"] and float(vmap_rows[0][1]) > 0, log
  assert set(report["targets"]) == {"lstm_trec", "lstm_imdb", "vmap16", "resnet50",
                                    "bert_base"}
  torch_ratios = [report["ratios"][k] for k in ("lstm_trec", "lstm_imdb", "resnet50",
                                                "bert_base")]
  if HAS_TORCH:
    assert all(r > 0 for r in torch_ratios), report["ratios"]
    assert parts["resnet50"]["env"]["torch"]["cuda_matmul_allow_tf32"] is True
  else:  # skipped, and said so: on the console, in the report and in each part
    assert torch_ratios == [None] * 4
    assert benchlib.TORCH_SKIPPED in proc.stdout
    assert all(parts[n]["torch_skipped"] == benchlib.TORCH_SKIPPED
               for n in ("lstm", "resnet50", "bert_base"))
    assert all(report["targets"][k]["met"] is None
               for k in ("lstm_trec", "lstm_imdb", "resnet50", "bert_base"))
  # The table is the last thing printed (the device tool returns the output's end).
  assert re.search(r"^vmap16\s+[\d.]+\s+0\.100\s+(yes|no)$", proc.stdout, re.M), proc.stdout
  assert proc.stdout.rstrip().splitlines()[-1].startswith("wrote ")


def test_gpu_suite_refuses_an_unknown_part(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"),
                         "--dry_run", "--parts=lstm,gpt", f"--out={tmp_path}"],
                        capture_output=True, text=True, env=python_env(), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: --parts='lstm,gpt': use a comma-separated subset of lstm, vmap16, "
      "resnet50, bert_base"]
  assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_resnet50_cifar_93_dry_run_reports_accuracy_and_time(tmp_path, gpu_like_env):
  proc = subprocess.run(["bash", str(ROOT / "bench" / "resnet50_cifar_93.sh"),
                         "--dry_run", f"--out={tmp_path / 'out'}",
                         f"--work={tmp_path / 'work'}"],
                        capture_output=True, text=True, env=gpu_like_env, timeout=700)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  r = json.loads((tmp_path / "out" / "resnet50_cifar_93.json").read_text())
  assert r["status"] == "finished" and r["stopped"] is None
  assert [v["epoch"] for v in r["val"]] == [1]
  assert 0 < r["val"][0]["wall_s"] <= r["wall_s"] <= r["cap_s"]
  assert r["best_val_accuracy"] == r["val"][0]["accuracy"]
  # The tiny colour classes: the one epoch of ResNet-10 may or may not reach 0.93; the
  # time to it is reported exactly when it did.
  assert (r["wall_to_target_s"] is not None) == (r["best_val_accuracy"] >= 0.93)
  assert 0 <= r["test_accuracy"] <= 1
  assert set(r["test_per_class"]) == {"blue", "green", "red"}
  assert r["target_met"] is None  # a dry run says nothing about the target
  assert r["source"]["commit"] == git_head()
  assert "--config=configs/resnet.py:cifar10_folder" in r["command"]
  assert proc.stdout.rstrip().splitlines()[-1].startswith("wrote ")


def test_resnet50_cifar_93_cap_is_hard(tmp_path):
  """A run past its cap is stopped (SIGTERM, then SIGKILL) and the script reports it."""
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "resnet50_cifar_93.py"),
                         "--dry_run", "--cap=3", "--grace=2", f"--out={tmp_path / 'out'}",
                         f"--work={tmp_path / 'work'}"],
                        capture_output=True, text=True, env=python_env(), timeout=120)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  r = json.loads((tmp_path / "out" / "resnet50_cifar_93.json").read_text())
  assert r["status"] == "capped" and r["stopped"].startswith("SIG")
  assert 3 <= r["wall_s"] <= 3 + 2 + 5
  assert r["test_accuracy"] is None and r["log_tail"] is not None


def test_resnet50_cifar_93_sizes_its_epochs_from_the_last_suite(tmp_path):
  suite = tmp_path / "suite.json"
  auto = lambda cap: resnet50_cifar_93.auto_epochs(cap, suite)[0]
  assert auto(360) == 20  # no suite result: the default
  suite.write_text(json.dumps({"parts": {"resnet50": {"status": "timeout"}}}))
  assert auto(360) == 20
  ips = lambda x: json.dumps({"parts": {"resnet50": {"result": {
      "jaxreg_images_per_s": x}}}})
  suite.write_text(ips(10_000))
  # 45,000 images at 8,000/s (80%) + 2.5 s: 8.125 s an epoch; 210 s left after 150.
  assert auto(360) == 25 and auto(600) == 40 and auto(150) == 8
  suite.write_text(ips(1_000))
  assert auto(360) == 8  # slower than the cap allows: the floor, and the cap cuts it


@pytest.mark.parametrize("arg, message", [
    ("--epochs=ten", "error: --epochs='ten' must be a positive integer or auto"),
    ("--epochs=0", "error: --epochs='0' must be a positive integer or auto"),
    ("--cap=-5", "error: --cap=-5 must be a number of seconds > 0"),
])
def test_resnet50_cifar_93_refuses_bad_arguments(tmp_path, arg, message):
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "resnet50_cifar_93.py"),
                         arg, f"--out={tmp_path / 'out'}", f"--work={tmp_path / 'w'}"],
                        capture_output=True, text=True, env=python_env(), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip() == message
  assert not list(tmp_path.iterdir())  # nothing written


def test_gpu_carry_check_accounts_for_every_dependency():
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_carry.py"), "--check"],
                        capture_output=True, text=True, env=python_env(), timeout=60)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "carried: transformers==4.57.6," in proc.stdout
  assert 'run(command="bash bench/gpu_suite.sh", carry=[".gpu_carry"]' in proc.stdout
  assert 'run(command="bash bench/resnet50_cifar_93.sh' in proc.stdout
  size = float(re.search(r"= ([\d.]+) MiB \(limit 64.0 MiB\)", proc.stdout).group(1))
  assert size < 64


def test_gpu_carry_places_every_dependency_once():
  deps = gpu_carry.pyproject_dependencies()
  assert gpu_carry.unaccounted(deps) == []
  assert gpu_carry.unaccounted(deps + ["new-dependency"]) == ["new-dependency"]  # placed
  # Carried packages are pinned by constraints.txt (the versions the tests run).
  assert set(gpu_carry.CARRIED) <= set(gpu_carry.pins())
  # What the GPU runs skip is really not in the GPU image (else: use it, or say why not).
  assert not set(gpu_carry.NOT_NEEDED) & gpu_carry.IMAGE
  # jaxreg, as the GPU runs use it, imports none of them.
  assert {"tensorflow-datasets", "tensorflow-cpu"} <= set(gpu_carry.NOT_NEEDED)


def test_gpu_carry_reads_a_wheels_requirements_for_the_gpu_machine(tmp_path):
  wheel = tmp_path / "demo-1.0-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as z:
    z.writestr("demo-1.0.dist-info/METADATA", "\n".join([
        "Metadata-Version: 2.1", "Name: demo", "Version: 1.0",
        "Requires-Dist: Hugging_Face.Hub<1.0,>=0.34",
        'Requires-Dist: hf-xet<2; platform_machine == "x86_64"',
        'Requires-Dist: appnope; sys_platform == "darwin"',
        'Requires-Dist: pytest; extra == "testing"',
        'Requires-Dist: tomli; python_version < "3.11"', ""]))
  assert gpu_carry.wheel_requirements(wheel) == ["hugging-face-hub", "hf-xet"]


@pytest.mark.slow
def test_stream_vs_resident_quick_times_both_paths(tmp_path):
  out = tmp_path / "stream.json"
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "stream_vs_resident.py"),
                         "--quick", f"--json={out}"], capture_output=True, text=True,
                        env=python_env(), timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  r = json.loads(out.read_text())
  assert r["quick"] and r["rounds"] == 3
  assert all(len(r["seconds"][p]) == 3 and r["images_per_s"][p] > 0
             for p in ("resident", "streamed"))
  assert r["ratio_streamed_over_resident"] > 0 and r["load_average_before"]
  assert r["env"]["source"]["commit"] == git_head()


@pytest.mark.slow
def test_group_probe_quick_compares_probe_and_training(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "group_probe.py"),
                         "--quick", "--json"], capture_output=True, text=True,
                        env=python_env(), timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  rows = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
  assert [r["scenario"] for r in rows] == ["seeds"] and rows[0]["k"] == 2
  r = rows[0]
  assert r["probe_ratio"] > 0 and r["measured_ratio"] > 0 and r["alone_wall_s"] > 0
  assert r["agree"] == ((r["probe_ratio"] > 1) == (r["measured_ratio"] > 1))

"""The `jaxreg` console command (jaxreg/commands.py) and the configs shipped inside the
package (jaxreg/configs): issue 16 item 4."""

import ast
import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from jaxreg import commands, configs
from tests.conftest import ROOT, python_env


def _run(args, cwd, **kw):
  return subprocess.run([sys.executable, *args], cwd=cwd, env=python_env(),
                        capture_output=True, text=True, timeout=120, **kw)


def test_packaged_configs_import_no_configs_folder():
  # `from configs import text` only worked with the clone's root on sys.path: an
  # installed jaxreg has no configs/ folder.
  for path in configs.FOLDER.glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom):
        assert (node.module or "").split(".")[0] != "configs", path
      if isinstance(node, ast.Import):
        assert all(a.name.split(".")[0] != "configs" for a in node.names), path
  assert {"lstm", "bert", "resnet", "gru", "rnn", "bilstm", "lstm_2layer"} <= \
      set(configs.names())


def test_a_bare_config_name_loads_the_packaged_config_from_any_directory(tmp_path):
  by_name = _run(["-m", "jaxreg.config", "--config=lstm:tiny"], cwd=tmp_path)
  by_path = _run(["-m", "jaxreg.config", f"--config={ROOT}/configs/lstm.py:tiny"],
                 cwd=tmp_path)
  assert by_name.returncode == 0, by_name.stderr[-2000:]
  assert by_name.stdout == by_path.stdout and "model.cell = 'lstm'" in by_name.stdout
  typo = _run(["-m", "jaxreg.config", "--config=lsmt"], cwd=tmp_path)
  assert typo.returncode == 2
  assert typo.stderr.strip().splitlines()[-1].endswith("(did you mean lstm?)")


def test_console_command_errors_are_one_line_with_exit_code_2(tmp_path):
  proc = _run(["-m", "jaxreg.commands", "trian"], cwd=tmp_path)
  assert proc.returncode == 2
  assert proc.stderr.strip() == ("error: unknown command 'trian': one of train, "
                                 "evaluate, predict, export, sweep, report, config")
  usage = _run(["-m", "jaxreg.commands"], cwd=tmp_path)
  assert usage.returncode == 2 and usage.stderr.startswith("usage: jaxreg {train,")


def test_a_command_whose_module_is_missing_says_so(monkeypatch, capsys):
  monkeypatch.setitem(commands.COMMANDS, "predict", "jaxreg.no_such_module")
  with pytest.raises(SystemExit) as e:
    commands.main(["jaxreg", "predict", "--workdir=x"])
  assert e.value.code == 2
  assert capsys.readouterr().err.strip() == (
      "error: 'jaxreg predict' is not available in this jaxreg "
      "(no module jaxreg.no_such_module)")


def test_console_command_runs_the_python_m_module(tmp_path):
  # `jaxreg config ...` prints what `python -m jaxreg.config ...` prints.
  args = ["--config=lstm:tiny", "--config.reg.l2=0.001", "--changed"]
  via_command = _run(["-m", "jaxreg.commands", "config", *args], cwd=tmp_path)
  via_module = _run(["-m", "jaxreg.config", *args], cwd=tmp_path)
  assert via_command.returncode == 0, via_command.stderr[-2000:]
  assert via_command.stdout == via_module.stdout and "reg.l2 = 0.001" in \
      via_command.stdout


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_outside_the_clone(tmp_path):
  # The "done when": a wheel installed into a fresh virtualenv, outside the
  # clone, runs the quick start. The venv reaches the installed dependencies through
  # a .pth (no 2.8 GB reinstall); jaxreg itself comes from the wheel only.
  src = tmp_path / "src"  # built from a copy: nothing is written into the clone
  shutil.copytree(ROOT / "jaxreg", src / "jaxreg",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                  "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                 check=True, env=env, capture_output=True, timeout=120)
  wheel, = (tmp_path / "dist").glob("jaxreg-*.whl")
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                 env=env, timeout=120)
  py = venv / "bin" / "python"
  site = subprocess.run([str(py), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True, env=env).stdout
  Path(site.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  # --ignore-installed: never touch the jaxreg installed where the deps live
  subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--ignore-installed",
                  "-q", str(wheel)], check=True, env=env, capture_output=True,
                 timeout=120)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = subprocess.run([str(py), "-c", "import jaxreg; print(jaxreg.__file__)"],
                         cwd=elsewhere, env=env, capture_output=True, text=True)
  assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
  # The tracker runs are written offline where the trackers extra is installed (make
  # test installs it); TensorBoard only otherwise.
  trackers = "tensorboard" + "".join(f",{m}" for m in ("wandb", "mlflow")
                                     if importlib.util.find_spec(m) is not None)
  proc = subprocess.run([str(venv / "bin" / "jaxreg"), "train", "--config=lstm:tiny",
                         "--workdir=run", f"--config.log.trackers={trackers}"],
                        cwd=elsewhere, env={**env, "WANDB_MODE": "offline"},
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "test accuracy" in proc.stdout
  summary = json.loads((elsewhere / "run" / "summary.json").read_text())
  assert summary["epochs_completed"] >= 1
  if "wandb" in trackers:
    assert list((elsewhere / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
  if "mlflow" in trackers:
    assert (elsewhere / "run" / "mlflow.db").exists()
  # The workdir moved elsewhere still predicts new sentences with the wheel's command.
  moved = tmp_path / "moved"
  shutil.move(str(elsewhere / "run"), moved)
  proc = subprocess.run([str(venv / "bin" / "jaxreg"), "predict", f"--workdir={moved}",
                         "--text=a sentence it has never seen", "--text=and another",
                         "--output=-"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = list(csv.DictReader(io.StringIO(proc.stdout)))
  assert [r["input"] for r in rows] == ["a sentence it has never seen", "and another"]
  assert all(r["prediction"] in summary["test"]["class_names"] for r in rows)

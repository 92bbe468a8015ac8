"""The lean install (docs/install.md): without the `tfds` extra (TensorFlow and
tensorflow-datasets unimportable, as after `pip install jaxreg`), a run trains and writes
its TensorBoard events, and a `tfds:` source stops with one line naming the extra
before anything is written; `make test` still installs and tests everything."""

import re
import subprocess
import sys
import tomllib

import pytest

from jaxreg import extras
from jaxreg.data import sources
from tests.conftest import ROOT, python_env, tiny_config

MESSAGE = "error: data.source='tfds:trec' needs TensorFlow: pip install 'jaxreg[tfds]'"
# As a lean install: importing either fails, and importlib.util.find_spec says None.
NOT_INSTALLED = ('import sys\nfor _name in ("tensorflow", "tensorflow_datasets"):\n'
                 '  sys.modules.setdefault(_name, None)\n')


@pytest.fixture
def lean_env(tmp_path):
  site = tmp_path / "lean_site"
  site.mkdir()
  (site / "sitecustomize.py").write_text(NOT_INSTALLED)
  env = python_env()
  env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
  return env


def _jaxreg(env, *args, cwd):
  # The console command's own entry point (pyproject's [project.scripts]).
  code = "import sys; from jaxreg import commands; commands.main(['jaxreg', *sys.argv[1:]])"
  return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd,
                        capture_output=True, text=True, timeout=600)


def test_full_install_has_the_extra():
  assert extras.missing("tfds") == []


@pytest.mark.parametrize("absent", [("tensorflow",), ("tensorflow_datasets",),
                                    ("tensorflow", "tensorflow_datasets")])
def test_missing_extra_is_one_line_before_the_source_is_read(monkeypatch, absent):
  for name in absent:
    monkeypatch.setitem(sys.modules, name, None)
  monkeypatch.delitem(sys.modules, "jaxreg.data.tfds_source", raising=False)
  config = tiny_config(**{"data.source": "tfds:trec", "data.trec_files": ""})
  with pytest.raises(extras.MissingExtra) as e:
    sources.read(config.data)
  assert str(e.value) == MESSAGE[len("error: "):]
  assert "jaxreg.data.tfds_source" not in sys.modules


def test_make_test_installs_the_extra_and_the_core_does_not_need_it():
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  core = " ".join(project["dependencies"])
  assert "tensorflow" not in core
  tfds = " ".join(project["optional-dependencies"]["tfds"])
  assert "tensorflow-cpu" in tfds and "tensorflow-datasets" in tfds
  # `make run` and `make test` (the README's two commands, CI's .ci/run) install it.
  installed = re.search(r"-e '\.\[([^\]]*)\]'", (ROOT / "Makefile").read_text())
  assert installed and {"test", "tfds"} <= set(installed.group(1).split(","))


def test_lean_tfds_run_exits_2_with_one_line_and_writes_nothing(lean_env, tmp_path):
  workdir = tmp_path / "trec"
  proc = _jaxreg(lean_env, "train", "--config=lstm:trec", f"--workdir={workdir}",
                 cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == MESSAGE, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  assert not workdir.exists() or not any(workdir.iterdir())


@pytest.mark.slow
def test_lean_install_trains_and_writes_tensorboard(lean_env, tmp_path):
  workdir = tmp_path / "tiny"
  proc = _jaxreg(lean_env, "train", "--config=lstm:tiny", f"--workdir={workdir}",
                 cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (workdir / "summary.json").exists()
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(workdir / "tensorboard"))
  events.Reload()
  tags = events.Tags()["scalars"]
  assert {"val/accuracy", "train/loss"} <= set(tags), tags
  assert len(events.Scalars("val/accuracy")) == 2  # one per epoch of lstm:tiny


def test_install_size_counts_tensorflow_in_the_extra_only():
  # bench/install_size.py, whose numbers docs/install.md quotes.
  sys.path.insert(0, str(ROOT / "bench"))
  import install_size
  result = install_size.measure(["tfds"])
  added = {d["name"] for d in result["extras_add"]}
  assert {"tensorflow-cpu", "tensorflow-datasets", "keras", "pyarrow"} <= added
  assert result["full"]["mib"] - result["lean"]["mib"] > 1000  # TensorFlow's ~1.3 GB
  assert not {d["name"] for d in result["largest_lean"]} & added


def test_tfds_prepare_command_names_the_extra_on_a_lean_install(lean_env, tmp_path):
  proc = subprocess.run([sys.executable, "-m", "jaxreg.data.tfds_prepare", "prepare",
                         "--dataset=trec", f"--files={tmp_path}"], env=lean_env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert proc.stderr.strip() == ("error: python -m jaxreg.data.tfds_prepare needs "
                                 "TensorFlow: pip install 'jaxreg[tfds]'")

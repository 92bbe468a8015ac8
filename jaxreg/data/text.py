"""Text pipeline: RawData (strings, or text files) -> TextData (padded token-id arrays).

Steps, in order (all settings are `config.data.*` keys):

1. **Validation hold-out.** A source's own validation split (`val_file` of the
   csv/tsv/jsonl sources) is used as given; otherwise `val_fraction` of each class of
   the training texts is held out by `split_seed` alone (`dataset.validation_split`, the same rule as every
   source), so runs that differ in `seed` see the same validation examples; with
   `folds` >= 2 the `fold`-th of `folds` stratified folds is held out instead.
2. **Tokenizer** (`tokenize`): word level. `lowercase` (default true) lowercases first.
   `punctuation` decides what happens to punctuation:

   - `split` (default): every punctuation character is a token of its own. Tokens are the
     matches of ``\\w+(?:['’]\\w+)*|[^\\w\\s]``: a run of letters/digits/underscores, with
     inner apostrophes kept (``don't``, ``o'clock`` are one token), or one character that
     is neither a word character nor whitespace. "Great, isn't it?!" -> great , isn't it ? !
   - `strip`: the same word pattern, punctuation dropped. -> great isn't it
   - `keep`: split on whitespace only; punctuation stays attached. -> great, isn't it?!

   ``\\w`` is Unicode-aware (Python `re`), so accented and non-Latin letters are words.
3. **Vocabulary** from the training texts that are left after the validation hold-out
   (never from val or test, so neither leaks into the model): id 0 `<pad>`, id 1 `<unk>`,
   then words seen at least `min_freq` times, most frequent first, ties broken by the
   word's code points (so the vocabulary is the same on every machine). `max_vocab` is
   the size of the whole table, `<pad>` and `<unk>` included (0: unlimited). A literal
   `<pad>` or `<unk>` in the text maps to `<unk>`.
4. **Ids and truncation**: out-of-vocabulary words -> 1; the first `max_length` tokens are
   kept. A text with no tokens at all becomes the single token `<unk>` (length 1), so that
   every example has a last step and a non-empty mean.
5. **Cache**: the result is stored in the prepared-data cache (cache.py) in `cache_dir`
   (default `~/.cache/jaxreg/data`; empty string: no cache). The key is a sha256 over
   the source's `description` (which identifies the source content, see raw.py), the
   tokenizer settings, the vocabulary settings, `max_length`, `split_seed` and
   `val_fraction`, and CACHE_VERSION. A second run with the same settings loads the
   arrays without tokenizing; changing any of them gives another key, so a stale cache
   is never used.

Batches are padded per batch to a fixed list of lengths (`data.buckets`), see
`dataset.batches` and `dataset.parse_buckets`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import html
import logging
import re
from collections.abc import Iterable, Sequence

import numpy as np

from jaxreg.data import cache, hf_tokenizer
from jaxreg.data.dataset import PAD_ID, TextData, TextSplit, validation_split
from jaxreg.data.raw import RawData, RawSplit

UNK_ID = 1
PAD, UNK = "<pad>", "<unk>"
PUNCTUATION_MODES = ("split", "strip", "keep")
# Bump when the tokenizer, the vocabulary rule or the cache layout changes.
CACHE_VERSION = 1

_WORD = r"\w+(?:['’]\w+)*"
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,40}>")  # e.g. IMDB's <br /> line breaks
# A character reference whose `&` was lost (AG News: "it#39;s", "#36;5", "quot;Hi
# there!quot;"): `#` and 2 to 5 digits, `quot`, or amp/lt/gt not after a word character
# ("salt;" stays), then `;`; never after `&` (html.unescape decodes those).
_BARE_ENTITY = re.compile(r"(?<!&)(#\d{2,5}|quot|(?<!\w)(?:amp|lt|gt));")
_PATTERNS = {
    "split": re.compile(rf"{_WORD}|[^\w\s]"),
    "strip": re.compile(_WORD),
}

log = logging.getLogger(__name__)


def remove_html(text: str) -> str:
  """data.strip_html: HTML entities decoded (`&amp;` -> &, `&#39;` -> ', and the bare
  numeric `#39;` that some news sets hold after losing their `&`), then every HTML tag
  becomes a space, not the tokens '<', 'br', '/', '>' (both tokenizers: the word level
  and Hugging Face's). Entities first, so an escaped `&lt;br&gt;` is removed too."""
  return _HTML_TAG.sub(" ", html.unescape(_BARE_ENTITY.sub(r"&\1;", text)))


def tokenize(text: str, lowercase: bool = True, punctuation: str = "split",
             strip_html: bool = False) -> list[str]:
  """Word-level tokens of `text` (see the module docstring for the rules)."""
  if strip_html:
    text = remove_html(text)
  if lowercase:
    text = text.lower()
  if punctuation == "keep":
    return text.split()
  try:
    return _PATTERNS[punctuation].findall(text)
  except KeyError:
    raise ValueError(f"data.punctuation={punctuation!r} is not one of: "
                     f"{', '.join(PUNCTUATION_MODES)}") from None


def build_vocab(token_lists: Iterable[Sequence[str]], min_freq: int = 1,
                max_vocab: int = 0) -> list[str]:
  """[<pad>, <unk>, words by (-count, word)] with count >= min_freq, max_vocab in all."""
  counts = collections.Counter()
  for tokens in token_lists:
    counts.update(tokens)
  for special in (PAD, UNK):
    counts.pop(special, None)
  words = sorted((w for w, n in counts.items() if n >= min_freq),
                 key=lambda w: (-counts[w], w))
  if max_vocab:
    words = words[:max(max_vocab - 2, 0)]
  return [PAD, UNK] + words


def encode(tokens: Sequence[str], word_ids: dict[str, int], max_length: int) -> list[int]:
  ids = [word_ids.get(w, UNK_ID) for w in tokens[:max_length]]
  return ids or [UNK_ID]


def settings(data_cfg, vocab: Sequence[str] | None = None) -> dict:
  """Every setting the prepared arrays depend on, besides the source content
  (`vocab`: a given vocabulary, see `prepare`)."""
  tokenizer = str(data_cfg.get("tokenizer", "word"))
  # A Hugging Face tokenizer: its name and content hash (word-level keys unchanged);
  # subword_pipeline 2: data.strip_html applies (entries from before ignored it).
  extra = {} if tokenizer == "word" else {
      "tokenizer": tokenizer, "tokenizer_sha256": hf_tokenizer.identity(tokenizer),
      "subword_pipeline": 2}
  return {**extra,
      "lowercase": bool(data_cfg.lowercase),
      "punctuation": str(data_cfg.punctuation),
      "strip_html": bool(data_cfg.strip_html),
      # strip_html also decodes HTML entities since issue 16 (entries from before kept
      # `&amp;`, `#39;` as text): only in the key when it applies
      **({"html_entities": 1} if data_cfg.strip_html else {}),
      "min_freq": int(data_cfg.min_freq),
      "max_vocab": int(data_cfg.max_vocab),
      "max_length": int(data_cfg.max_length),
      "split_seed": int(data_cfg.split_seed),
      "val_fraction": float(data_cfg.val_fraction),
      # only with k-fold, so cache entries written before these keys stay valid
      **({"folds": int(data_cfg.folds), "fold": int(data_cfg.fold)}
         if data_cfg.get("folds", 0) else {}),
      **({"vocab_sha256": hashlib.sha256("\n".join(vocab).encode()).hexdigest()}
         if vocab is not None else {}),
  }


def cache_key(description: str, data_cfg, vocab: Sequence[str] | None = None) -> str:
  return cache.key(description, {"version": CACHE_VERSION,
                                 **settings(data_cfg, vocab)})


def prepare(raw: RawData, data_cfg, vocab: Sequence[str] | None = None) -> TextData:
  """Splits off val, tokenizes, builds the vocabulary, encodes; cached on disk.
  `vocab`: a word-level vocabulary to encode with instead of building one from the
  training texts (model.init_from: the upstream run's; its words keep their ids)."""
  if str(data_cfg.get("tokenizer", "word")) != "word":
    vocab = None  # a Hugging Face tokenizer brings its own
  store = cache.Cache(data_cfg.cache_dir)
  key = cache_key(raw.description, data_cfg, vocab)
  hit = store.load(key)
  if hit is not None:
    return dataclasses.replace(_from_arrays(*hit),
                               length_stats=hit[1].get("length_stats"))
  data, stats = _build(raw, data_cfg, vocab)
  store.save(key, _to_arrays(data), {
      "version": CACHE_VERSION, "description": raw.description,
      "settings": settings(data_cfg, vocab), "class_names": data.class_names,
      "vocab": data.vocab, "sizes": {n: len(data.split(n)) for n in _SPLITS},
      "length_stats": stats})
  return dataclasses.replace(data, length_stats=stats)


# Above this share of truncated training texts the log suggests a longer max_length.
TRUNCATION_WARN = 0.05


def length_stats(full_lengths: np.ndarray, max_length: int) -> dict:
  """Tokens per text BEFORE truncation: count, share cut at `max_length`, percentiles
  50/90/95/99 and max (what the log line and the cache entry record)."""
  n = np.asarray(full_lengths, np.int64)
  if not len(n):
    return {"n": 0}
  p50, p90, p95, p99 = (int(np.ceil(v)) for v in np.percentile(n, [50, 90, 95, 99]))
  return {"n": int(len(n)), "cut": float(np.mean(n > max_length)), "p50": p50,
          "p90": p90, "p95": p95, "p99": p99, "max": int(n.max())}


def describe_lengths(split: str, st: dict, max_length: int) -> str:
  """One log line: 'train: 4907 texts, 12.0% cut at data.max_length=40 (tokens per
  text p50 9, p90 18, p99 31, max 37); data.max_length=48 would keep 95% whole'."""
  if not st.get("n"):
    return f"{split}: no texts"
  line = (f"{split}: {st['n']} texts, {100 * st['cut']:.1f}% cut at data.max_length="
          f"{max_length} (tokens per text before truncation: p50 {st['p50']}, p90 "
          f"{st['p90']}, p99 {st['p99']}, max {st['max']})")
  if split == "train" and st["cut"] > TRUNCATION_WARN:
    line += (f"; --config.data.max_length={-(-st['p95'] // 8) * 8} would keep 95% "
             "of the texts whole")
  return line


def data_lines(data, max_length: int) -> list[str]:
  """What a run prints about its prepared text before training: the vocabulary size,
  then one line per split (`describe_lengths`); [] without length statistics (the
  built-in set, images, a cache entry from before issue 16)."""
  stats = getattr(data, "length_stats", None)
  if not stats:
    return []
  return [f"data: vocabulary {len(data.vocab)} entries"] + [
      f"data: {describe_lengths(split, stats[split], max_length)}"
      for split in _SPLITS if split in stats]


def texts(split: RawSplit) -> list[str]:
  """The split's strings; text files are read as UTF-8, undecodable bytes replaced."""
  if split.files is not None:
    return [p.read_bytes().decode("utf-8", errors="replace") for p in split.files]
  return list(split.texts)


def _build(raw: RawData, data_cfg, given_vocab: Sequence[str] | None = None
           ) -> TextData:
  s = settings(data_cfg)
  labels = raw.train.labels
  train_texts, test_texts = texts(raw.train), texts(raw.test)
  if raw.val is None:
    keep, held = validation_split(labels, data_cfg)
  else:  # data.val_file: appended to train, then taken back out as the val split
    n, m = len(labels), len(raw.val)
    keep, held = np.arange(n), np.arange(n, n + m)
    labels = np.concatenate([labels, raw.val.labels])
    train_texts = train_texts + texts(raw.val)

  def toks(texts):
    return [tokenize(t, s["lowercase"], s["punctuation"], s["strip_html"])
            for t in texts]

  if "tokenizer" in s:  # the model's own subword tokenizer and vocabulary
    vocab = hf_tokenizer.vocab(s["tokenizer"])

    def clean(texts):  # lowercase/punctuation are the tokenizer's own business
      return [remove_html(t) for t in texts] if s["strip_html"] else texts

    train_seqs, train_full = hf_tokenizer.encode_with_lengths(
        s["tokenizer"], clean(train_texts), s["max_length"])
    test_seqs, test_full = hf_tokenizer.encode_with_lengths(
        s["tokenizer"], clean(test_texts), s["max_length"])
  else:
    train_tokens = toks(train_texts)
    test_tokens = toks(test_texts)
    vocab = list(given_vocab) if given_vocab is not None else \
        build_vocab((train_tokens[i] for i in keep), s["min_freq"], s["max_vocab"])
    word_ids = {w: i for i, w in enumerate(vocab) if i != PAD_ID}
    train_seqs = [encode(t, word_ids, s["max_length"]) for t in train_tokens]
    test_seqs = [encode(t, word_ids, s["max_length"]) for t in test_tokens]
    # no token at all still becomes one <unk> (encode): count it as 1
    train_full = np.asarray([max(len(t), 1) for t in train_tokens])
    test_full = np.asarray([max(len(t), 1) for t in test_tokens])
  stats = {name: length_stats(full, s["max_length"]) for name, full in
           (("train", train_full[keep]), ("val", train_full[held]), ("test", test_full))}

  def split(seqs, split_labels):
    return TextSplit.from_sequences(seqs, np.asarray(split_labels, np.int32),
                                    s["max_length"])

  train_all = split(train_seqs, labels)
  data = TextData(train=train_all.take(keep), val=train_all.take(held),
                  test=split(test_seqs, raw.test.labels),
                  class_names=list(raw.class_names), vocab=vocab)
  if "tokenizer" in s:
    return data, stats
  unk = sum(int((sp.tokens == UNK_ID).sum()) for sp in (data.val, data.test))
  total = sum(int(sp.lengths.sum()) for sp in (data.val, data.test))
  log.info("vocabulary: %d entries from %d training texts; %.1f%% of val+test tokens "
           "are <unk>", len(vocab), len(keep), 100.0 * unk / max(total, 1))
  return data, stats


_SPLITS = ("train", "val", "test")


def _to_arrays(data: TextData) -> dict[str, np.ndarray]:
  arrays = {}
  for name in _SPLITS:
    sp = data.split(name)
    arrays[f"{name}_ids"] = _flatten(sp)
    arrays[f"{name}_lengths"] = sp.lengths
    arrays[f"{name}_labels"] = sp.labels
  return arrays


def _from_arrays(arrays: dict[str, np.ndarray], meta: dict) -> TextData:
  splits = {name: _unflatten(arrays[f"{name}_ids"], arrays[f"{name}_lengths"],
                             arrays[f"{name}_labels"]) for name in _SPLITS}
  return TextData(**splits, class_names=meta["class_names"], vocab=meta["vocab"])


def _flatten(split: TextSplit) -> np.ndarray:
  """The real (unpadded) token ids, row after row."""
  mask = np.arange(split.tokens.shape[1])[None, :] < split.lengths[:, None]
  return split.tokens[mask].astype(np.int32)


def _unflatten(ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> TextSplit:
  width = max(int(lengths.max(initial=1)), 1)
  tokens = np.full((len(lengths), width), PAD_ID, np.int32)
  tokens[np.arange(width)[None, :] < lengths[:, None]] = ids
  return TextSplit(tokens, lengths.astype(np.int32), labels.astype(np.int32))

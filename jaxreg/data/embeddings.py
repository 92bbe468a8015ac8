"""Pretrained word vectors -> the rows of the (vocab, embed_size) embedding table.

Formats (`model.embeddings_format`; `auto` looks at the file):

- `word2vec_bin`: the original word2vec binary format (GoogleNews-vectors-negative300.bin):
  a text header line "N D", then N records `word<space>` + D float32 little-endian bytes,
  each optionally followed by a newline.
- `word2vec_text`: the same header line "N D", then N lines "word v1 ... vD" (word2vec
  `-binary 0`, fastText .vec files).
- `glove`: lines "word v1 ... vD" with no header (GloVe .txt files). A GloVe word may hold
  spaces (glove.840B has a few): the last D fields are the vector.

`auto`: a first line of two integers is a word2vec header; the next record is then text if
it decodes as a line of D numbers, binary otherwise; without a header the file is GloVe.
An explicit format that contradicts the file (a header for glove, none for word2vec, text
for word2vec_bin) is an error. Files ending in .gz (or starting with gzip's magic bytes)
are read through gzip. Words are decoded as UTF-8 (invalid bytes replaced).

Lookup, for every vocabulary word except `<pad>` and `<unk>`: the vector of the exact word
if the file has it; otherwise (lowercase fallback) the first vector in the file whose word
lowercases to the vocabulary word's lowercase form, so a lowercased vocabulary finds
'Paris' and a cased vocabulary word finds 'paris'. Word-vector files are sorted by
frequency, so "first" is the most frequent casing. The first occurrence of a duplicated
word wins. Only the vectors of vocabulary words are kept in memory, so multi-GB files
need no more memory than the table.

Words not found keep the model's random initialization (flax nn.Embed's default init: a
normal with std 1 per entry, larger than most pretrained vectors' scale; that is the
usual practice and is left as it is). The vector dimension must equal model.embed_size.
The run logs (absl, WARNING) how many vocabulary words were found and the first 20
missing ones, and writes every missing word, one per line in vocabulary order, to
<workdir>/embeddings_missing.txt.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from absl import logging

from jaxreg import io

FORMATS = ("auto", "word2vec_bin", "word2vec_text", "glove")
SPECIALS = ("<pad>", "<unk>")
MISSING_FILE = "embeddings_missing.txt"
EMBED_PATH = ("embed", "embedding")  # params['embed']['embedding'] of models/rnn.py
FROZEN_REGEX = "^embed/embedding$"    # optim.build_optimizer(frozen=...) for that table
_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class EmbeddingsReport:
  path: str
  format: str                 # the format read (auto resolved)
  dim: int
  vocab_words: int            # vocabulary entries looked up (specials excluded)
  found: int                  # of those, with a pretrained vector
  found_lowercase: int        # of `found`, through the lowercase fallback
  missing: list[str]          # vocabulary words left random, in vocabulary order

  def summary(self, show: int = 20) -> str:
    pct = 100.0 * self.found / max(self.vocab_words, 1)
    # repr: vocabulary words include punctuation such as ',' and "'"
    head = " ".join(map(repr, self.missing[:show])) + (
        " ..." if len(self.missing) > show else "")
    return (f"pretrained embeddings {self.path} ({self.format}, dim {self.dim}): "
            f"{self.found} of {self.vocab_words} vocabulary words found ({pct:.1f}%, "
            f"{self.found_lowercase} by lowercase); {len(self.missing)} left random"
            + (f", first: {head}" if self.missing else ""))


class _Reader:
  """Buffered binary reader: lines and exact byte counts without per-byte calls."""

  def __init__(self, f: BinaryIO):
    self._f, self._buf, self._pos = f, b"", 0

  def _fill(self) -> bool:
    more = self._f.read(_CHUNK)
    if not more:
      return False
    self._buf = self._buf[self._pos:] + more
    self._pos = 0
    return True

  def until(self, sep: bytes) -> bytes | None:
    """Bytes up to (not including) sep, consumed with it; the rest at EOF; None if none."""
    while True:
      i = self._buf.find(sep, self._pos)
      if i >= 0:
        out = self._buf[self._pos:i]
        self._pos = i + len(sep)
        return out
      if not self._fill():
        if self._pos >= len(self._buf):
          return None
        out = self._buf[self._pos:]
        self._pos = len(self._buf)
        return out

  def exactly(self, n: int) -> bytes | None:
    while len(self._buf) - self._pos < n:
      if not self._fill():
        return None
    out = self._buf[self._pos:self._pos + n]
    self._pos += n
    return out

  def peek(self, n: int) -> bytes:
    while len(self._buf) - self._pos < n and self._fill():
      pass
    return self._buf[self._pos:self._pos + n]


def _open(path: Path) -> BinaryIO:
  f = open(path, "rb")
  if path.suffix == ".gz" or f.read(2) == b"\x1f\x8b":
    f.close()
    return gzip.open(path, "rb")
  f.seek(0)
  return f


def _floats(fields: Sequence[bytes]) -> np.ndarray | None:
  try:
    return np.array([float(x) for x in fields], np.float32)
  except ValueError:
    return None


def _key(path: Path) -> str:
  return f"model.embeddings_file={str(path)!r}"


def _sniff(path: Path) -> tuple[str, int, int | None]:
  """(format, dim, header count or None) from the first two records of the file."""
  with _open(path) as f:
    r = _Reader(f)
    first = r.until(b"\n")
    if first is None or not first.strip():
      raise ValueError(f"{_key(path)} is empty")
    m = _HEADER.match(first)
    if not m:
      fields = first.rstrip().split(b" ")
      if len(fields) < 2 or _floats(fields[1:]) is None:
        raise ValueError(f"{_key(path)}: the first line is neither a word2vec header "
                         "'N D' nor a GloVe line 'word v1 ... vD'")
      return "glove", len(fields) - 1, None
    count, dim = int(m.group(1)), int(m.group(2))
    if dim < 1:
      raise ValueError(f"{_key(path)}: header {first.decode(errors='replace')!r} "
                       "gives dimension 0")
    # A text record is one line of at most ~dim * 32 bytes that parses as D numbers.
    line = r.peek(dim * 32 + 1024).split(b"\n", 1)[0]
    fields = line.rstrip().split(b" ")
    try:
      line.decode("utf-8")
      text = len(fields) >= dim + 1 and _floats(fields[-dim:]) is not None
    except UnicodeDecodeError:
      text = False
    return ("word2vec_text" if text else "word2vec_bin"), dim, count


def detect_format(path: str | os.PathLike) -> str:
  return _sniff(Path(path))[0]


def _resolve(path: Path, fmt: str) -> tuple[str, int]:
  if fmt not in FORMATS:
    raise ValueError(f"model.embeddings_format={fmt!r} is not one of: {', '.join(FORMATS)}")
  if not path.is_file():
    raise FileNotFoundError(f"{_key(path)} does not exist")
  found, dim, _ = _sniff(path)
  if fmt != "auto" and fmt != found:
    what = {"glove": "no 'N D' header (GloVe)",
            "word2vec_text": "a 'N D' header and text vectors (word2vec text)",
            "word2vec_bin": "a 'N D' header and binary vectors (word2vec binary)"}[found]
    raise ValueError(f"model.embeddings_format={fmt!r} but {path} has {what}; set "
                     f"model.embeddings_format={found} or auto")
  return found, dim


def iter_vectors(path: str | os.PathLike, fmt: str = "auto",
                 wanted=None) -> Iterator[tuple[str, np.ndarray | None]]:
  """(word, vector) for every record of the file, in file order.

  wanted: optional predicate on the word; the vector of an unwanted word is not parsed
  (None is yielded in its place), which makes scanning a large file fast.
  """
  path = Path(path)
  fmt, dim = _resolve(path, fmt)
  want = wanted or (lambda w: True)
  with _open(path) as f:
    r = _Reader(f)
    if fmt == "word2vec_bin":
      count = int(_HEADER.match(r.until(b"\n")).group(1))
      nbytes = dim * 4
      for i in range(count):
        raw = r.until(b" ")
        vec = r.exactly(nbytes) if raw is not None else None
        if vec is None:
          raise ValueError(f"{_key(path)} ends after {i} of the {count} vectors its "
                           "header announces")
        word = raw.lstrip(b"\n\r").decode("utf-8", "replace")
        yield word, (np.frombuffer(vec, "<f4").astype(np.float32) if want(word) else None)
      return
    if fmt == "word2vec_text":
      r.until(b"\n")
    lineno = 1 if fmt == "word2vec_text" else 0
    while (line := r.until(b"\n")) is not None:
      lineno += 1
      line = line.rstrip()
      if not line:
        continue
      spaces = line.count(b" ")  # C speed; the vector is split only for wanted words
      if spaces == dim:
        head, _, rest = line.partition(b" ")
        word, fields = head.decode("utf-8", "replace"), None
      elif spaces > dim:  # a word holding spaces (GloVe 840B): the last D fields
        parts = line.split(b" ")
        word, fields = b" ".join(parts[:-dim]).decode("utf-8", "replace"), parts[-dim:]
      else:
        raise ValueError(f"{_key(path)} line {lineno} has {spaces} values, not {dim}")
      if not want(word):
        yield word, None
        continue
      vec = _floats(fields if fields is not None else rest.split(b" "))
      if vec is None:
        raise ValueError(f"{_key(path)} line {lineno}: values are not numbers")
      yield word, vec


def lookup(path: str | os.PathLike, vocab: Sequence[str], fmt: str = "auto",
           dim: int | None = None, specials: Sequence[str] = SPECIALS
           ) -> tuple[np.ndarray, np.ndarray, EmbeddingsReport]:
  """(vectors float32 [V, D], found bool [V], report) for the vocabulary.

  Rows of words not found are zero and found[i] is False. dim: the model's embed_size;
  a different file dimension raises one line naming both.
  """
  path = Path(os.path.expanduser(str(path)))
  fmt, file_dim = _resolve(path, fmt)
  if dim is not None and file_dim != dim:
    raise ValueError(f"{_key(path)} holds {file_dim}-dimensional vectors but "
                     f"model.embed_size={dim}; set model.embed_size={file_dim}")
  special = set(specials)
  words = [w for w in vocab if w not in special]
  exact_wanted = set(words)
  lower_wanted = {w.lower() for w in words}
  exact: dict[str, np.ndarray] = {}
  lower: dict[str, np.ndarray] = {}

  def wanted(word: str) -> bool:
    return (word in exact_wanted and word not in exact) or (
        word.lower() in lower_wanted and word.lower() not in lower)

  for word, vec in iter_vectors(path, fmt, wanted):
    if vec is None:
      continue
    if word in exact_wanted and word not in exact:
      exact[word] = vec
    lw = word.lower()
    if lw in lower_wanted and lw not in lower:
      lower[lw] = vec

  vectors = np.zeros((len(vocab), file_dim), np.float32)
  found = np.zeros(len(vocab), bool)
  by_lower, missing = 0, []
  for i, w in enumerate(vocab):
    if w in special:
      continue
    vec = exact.get(w)
    if vec is None:
      vec = lower.get(w.lower())
      by_lower += vec is not None
    if vec is None:
      missing.append(w)
      continue
    vectors[i], found[i] = vec, True
  report = EmbeddingsReport(path=str(path), format=fmt, dim=file_dim,
                            vocab_words=len(words), found=int(found.sum()),
                            found_lowercase=by_lower, missing=missing)
  return vectors, found, report


def init_table(table: Any, vocab: Sequence[str], path: str | os.PathLike,
               fmt: str = "auto") -> tuple[np.ndarray, EmbeddingsReport]:
  """The table (vocab, dim) with the rows of found words replaced by their vectors."""
  table = np.array(table, copy=True)
  if table.shape[0] != len(vocab):
    raise ValueError(f"embedding table has {table.shape[0]} rows for a vocabulary of "
                     f"{len(vocab)} words")
  vectors, found, report = lookup(path, vocab, fmt, dim=table.shape[1])
  table[found] = vectors[found].astype(table.dtype)
  return table, report


def write_missing(report: EmbeddingsReport, workdir: str | os.PathLike) -> Path:
  path = Path(workdir) / MISSING_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  return io.atomic_write(path, "".join(w + "\n" for w in report.missing))


def has_checkpoint(workdir: str | os.PathLike) -> bool:
  """A finished checkpoint step exists (checkpoint.py layout: checkpoints/<step>/)."""
  ckpt = Path(workdir) / "checkpoints"
  return ckpt.is_dir() and any(p.is_dir() and p.name.isdigit() for p in ckpt.iterdir())


def load_into_params(params: Any, vocab: Sequence[str], model_cfg, workdir=None,
                     write_report: bool = True) -> tuple[Any, EmbeddingsReport | None]:
  """params with params['embed']['embedding'] initialized from model.embeddings_file.

  Logs the report (absl, WARNING) and writes workdir/embeddings_missing.txt. Returns
  (params, None) without reading the file when model.embeddings_file is empty, or when
  workdir already holds a checkpoint: a resumed run and `jaxreg.evaluate` restore the
  table from it, so the vectors file is not needed (nor re-read) then.
  """
  path = model_cfg.get("embeddings_file", "") if hasattr(model_cfg, "get") else ""
  if not path:
    return params, None
  if workdir is not None and has_checkpoint(workdir):
    return params, None
  node = params
  for k in EMBED_PATH:
    if k not in node:
      raise ValueError("model.embeddings_file is set but the model has no "
                       f"{'/'.join(EMBED_PATH)} parameter")
    node = node[k]
  table, report = init_table(node, vocab, path, model_cfg.get("embeddings_format", "auto"))
  logging.warning("%s", report.summary())
  if workdir is not None and write_report:  # else the caller writes it (write_missing)
    logging.warning("words left random: %s", write_missing(report, workdir))
  new = dict(params)
  new[EMBED_PATH[0]] = dict(params[EMBED_PATH[0]])
  new[EMBED_PATH[0]][EMBED_PATH[1]] = np.asarray(table)
  return _like(params, new), report


def _like(original: Any, new: dict) -> Any:
  """Keeps the params' container type (a dict, or e.g. flax's FrozenDict)."""
  return new if isinstance(original, dict) else type(original)(new)

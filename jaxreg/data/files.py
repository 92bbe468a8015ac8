"""Local text classification files -> RawData (texts).

`data.source` picks the reader:

- `csv`: comma-separated, RFC 4180 quoting (Python's `csv` module defaults: fields may be
  quoted with `"`, may contain commas and newlines, `""` is a literal quote).
- `tsv`: tab-separated with NO quoting (the GLUE/SST convention: a `"` is an ordinary
  character and a field cannot contain a tab or a newline).
- `jsonl`: one JSON object per line (or a JSON array, addressed by 0-based index); blank
  lines are skipped.

(A folder of text files, `data.source=folder`, is read by folders.py, with images.)

Files (`data.train_file`, `data.test_file`, and `data.val_file`: a validation file read
with the same settings, used instead of holding `data.val_fraction` of the training file
out; its labels must occur in training, as a test file's): `data.text_fields` names one or several
columns/keys (comma-separated; column names when `data.header` is true, or 0-based
indices), joined with one space; `data.label_field` names the label column/key. Without a
test file, `data.test_fraction` of each class of the training file is held out as test,
drawn from `data.split_seed` (a stream distinct from the validation hold-out's: the rule
of every source without a test split, raw.hold_out_test).

Labels and class order (stable, documented):

- names (`data.label_ids` false): `data.class_names` if given (comma-separated, fixes the
  order), otherwise the distinct training labels sorted by code point.
- ids (`data.label_ids` true): integers, `data.label_offset` subtracted (1 for 1-based
  ids); class i is `data.class_names[i]` if given, else `class_<i>`.

Every class must occur in training, and a test label that does not occur in training is
an error. Errors are one line naming the file (and line): a malformed row (wrong column
count, bad JSON, missing field, bad label), an empty split, a missing file.
Files are UTF-8 (a BOM is ignored); undecodable bytes are replaced. A gzip-compressed
file (`train.csv.gz`, recognized by its content, whatever its name) is read as its
decompressed text; other binary input (zip, bzip2, xz, or NUL bytes) is a one-line error.

The RawData `description` holds the paths, the sha256 of their contents and every
parsing option, so the tokenized cache misses when a file or an option changes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from jaxreg.data.catalog import FILE_SOURCES
from jaxreg.data.raw import RawData, RawSplit, hold_out_test, names

# A row: (text, raw label, where) with `where` = "path:line" for error messages.
Row = tuple[str, object, str]


def _path(value: str, key: str) -> Path:
  path = Path(os.path.expanduser(value)).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file ({key})")
  return path


# Other containers we do not open (gzip is read through): magic bytes -> name.
_REFUSED = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
            b"(\xb5/\xfd": "zstd"}


def read_text(path: Path, data: bytes | None = None) -> str:
  """The text of a csv/tsv/jsonl/text file: gzip decompressed (by its magic bytes),
  UTF-8 with a BOM ignored and undecodable bytes replaced; ValueError naming the file
  for other binary content (rather than a misleading column-count error later)."""
  data = path.read_bytes() if data is None else data
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise ValueError(f"{path}: a damaged gzip file ({e})") from None
  for magic, kind in _REFUSED.items():
    if data.startswith(magic):
      raise ValueError(f"{path}: a {kind} archive, not text; decompress it, or use "
                       "gzip (.gz files are read directly)")
  if b"\x00" in data[:65536]:
    raise ValueError(f"{path}: binary content (NUL bytes), not UTF-8 text; give a "
                     "csv/tsv/jsonl file, plain or gzip-compressed")
  return data.decode("utf-8-sig", errors="replace")


def load(c) -> RawData:
  """config.data (source csv, tsv or jsonl) -> RawData of texts."""
  if c.source not in FILE_SOURCES:
    raise ValueError(f"data.source={c.source!r} is not one of: {', '.join(FILE_SOURCES)}")
  train_path = _path(c.train_file, "data.train_file")
  test_path = _path(c.test_file, "data.test_file") if c.test_file else None
  val_file = str(c.get("val_file", "") or "")
  val_path = _path(val_file, "data.val_file") if val_file else None
  digests = {}
  train_rows = _read_rows(train_path, c, digests)
  test_rows = _read_rows(test_path, c, digests) if test_path else None
  val_rows = _read_rows(val_path, c, digests) if val_path else None
  train_labels, test_labels, class_names = _labels(train_rows, test_rows, c,
                                                   str(train_path))
  val = None
  if val_rows is not None:  # labels as for a test file: known training classes
    val = RawSplit(_labels(train_rows, val_rows, c, str(train_path))[1],
                   texts=[r[0] for r in val_rows])
  train = RawSplit(train_labels, texts=[r[0] for r in train_rows])
  if test_rows is None:
    train, test = hold_out_test(train, class_names, c.test_fraction, c.split_seed,
                                str(train_path))
  else:
    test = RawSplit(test_labels, texts=[r[0] for r in test_rows])
  description = json.dumps({
      "source": c.source,
      "files": {str(p): d for p, d in digests.items()},
      "text_fields": names(c.text_fields), "label_field": str(c.label_field),
      "header": bool(c.header), "label_ids": bool(c.label_ids),
      "label_offset": int(c.label_offset), "class_names": names(c.class_names),
      "test_fraction": float(c.test_fraction) if test_rows is None else 0.0,
      "split_seed": int(c.split_seed) if test_rows is None else None,
      **({"val_file": True} if val_rows is not None else {}),
  }, sort_keys=True)
  return RawData(train, test, class_names, description, val=val)


def _read_rows(path: Path, c, digests: dict) -> list[Row]:
  data = path.read_bytes()
  digests[path] = hashlib.sha256(data).hexdigest()
  text = read_text(path, data)
  fields = names(c.text_fields)
  if not fields:
    raise ValueError(f"data.text_fields={c.text_fields!r} names no column")
  if c.source == "jsonl":
    rows = _read_jsonl(path, text, fields, str(c.label_field))
  else:
    rows = _read_delimited(path, text, fields, str(c.label_field), bool(c.header),
                           tsv=c.source == "tsv")
  if not rows:
    raise ValueError(f"{path}: no examples (empty split)")
  return rows


def read_texts(path, c, source: str) -> list[str]:
  """The texts of a csv, tsv or jsonl file (`source`) read with config.data `c`'s
  text_fields and header, as training read them; no label is needed (jaxreg.predict)."""
  path = _path(str(path), "--input")
  text = read_text(path)
  fields = names(c.text_fields)
  if source == "jsonl":
    rows = _read_jsonl(path, text, fields, None)
  else:
    rows = _read_delimited(path, text, fields, None, bool(c.header), tsv=source == "tsv")
  return [r[0] for r in rows]


def _column(path, line, spec: str, key: str, header: list[str] | None,
            ncols: int) -> int:
  if header is not None and spec in header:
    return header.index(spec)
  if spec.lstrip("-").isdigit() and 0 <= int(spec) < ncols:
    return int(spec)
  if header is not None:
    raise ValueError(f"{path}:{line}: column {spec!r} ({key}) is not in the header "
                     f"({', '.join(header)}) nor an index below {ncols}")
  raise ValueError(f"{path}:{line}: column {spec!r} ({key}) must be a 0-based index "
                   f"below {ncols} (data.header=false: columns have no names)")


def _read_delimited(path, text, fields, label_field, header, tsv) -> list[Row]:
  csv.field_size_limit(2**31 - 1)  # long documents (the default limit is 128 KiB)
  if tsv:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t",
                        quoting=csv.QUOTE_NONE)
  else:
    reader = csv.reader(io.StringIO(text, newline=""))
  rows, ncols, text_idx, label_idx = [], None, None, None
  try:
    for row in reader:
      line = reader.line_num
      if not row:  # a blank line
        continue
      if ncols is None:
        ncols = len(row)
        names_row = [h.strip() for h in row] if header else None
        text_idx = [_column(path, line, f, "data.text_fields", names_row, ncols)
                    for f in fields]
        label_idx = None if label_field is None else _column(
            path, line, label_field, "data.label_field", names_row, ncols)
        if header:
          continue
      if len(row) != ncols:
        raise ValueError(f"{path}:{line}: expected {ncols} columns, got {len(row)}")
      rows.append((" ".join(row[i] for i in text_idx),
                   None if label_idx is None else row[label_idx].strip(),
                   f"{path}:{line}"))
  except csv.Error as e:
    raise ValueError(f"{path}:{reader.line_num}: malformed row ({e})") from None
  return rows


def _read_jsonl(path, text, fields, label_field) -> list[Row]:
  rows = []
  for number, line in enumerate(text.split("\n"), 1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where}: bad JSON ({e.msg}, column {e.colno})") from None
    parts = [_json_field(obj, f, "data.text_fields", where) for f in fields]
    for f, part in zip(fields, parts):
      if not isinstance(part, (str, int, float)) or isinstance(part, bool):
        raise ValueError(f"{where}: field {f!r} (data.text_fields) is "
                         f"{type(part).__name__}, expected a string")
    label = (None if label_field is None else
             _json_field(obj, label_field, "data.label_field", where))
    rows.append((" ".join(str(p) for p in parts), label, where))
  return rows


def _json_field(obj, name: str, key: str, where: str):
  if isinstance(obj, dict):
    if name not in obj:
      raise ValueError(f"{where}: missing field {name!r} ({key})")
    return obj[name]
  if isinstance(obj, list):
    if name.isdigit() and int(name) < len(obj):
      return obj[int(name)]
    raise ValueError(f"{where}: no item {name!r} ({key}) in a JSON array of "
                     f"{len(obj)}")
  raise ValueError(f"{where}: expected a JSON object or array, got "
                   f"{type(obj).__name__}")


# -------------------------------------------------------------------------- labels


def _label_id(value, offset: int, where: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, str)):
    raise ValueError(f"{where}: label {value!r} is not an integer id "
                     "(data.label_ids=true)")
  try:
    i = int(value)
  except ValueError:
    raise ValueError(f"{where}: label {value!r} is not an integer id "
                     "(data.label_ids=true)") from None
  if i - offset < 0:
    raise ValueError(f"{where}: label id {i} minus data.label_offset={offset} is < 0")
  return i - offset


def _labels(train_rows: list[Row], test_rows: list[Row] | None, c, train_name: str):
  """(train ids, test ids or None, class names), checked as the module docstring says."""
  listed = names(c.class_names)  # none twice (config schema)
  if c.label_ids:
    offset = int(c.label_offset)

    def to_id(row):
      i = _label_id(row[1], offset, row[2])
      if listed and i >= len(listed):
        raise ValueError(f"{row[2]}: label id {i} (after data.label_offset={offset}) "
                         f"has no name in data.class_names ({len(listed)} classes)")
      return i

    train = np.array([to_id(r) for r in train_rows], np.int32)
    class_names = listed or [f"class_{i}" for i in range(int(train.max()) + 1)]
    test = None if test_rows is None else [(to_id(r), r) for r in test_rows]
  else:
    def name(row):
      label = "" if row[1] is None else str(row[1]).strip()
      if not label:
        raise ValueError(f"{row[2]}: empty label ({c.label_field!r})")
      return label

    train_names = [name(r) for r in train_rows]
    class_names = listed or sorted(set(train_names))
    index = {n: i for i, n in enumerate(class_names)}
    for label, row in zip(train_names, train_rows):
      if label not in index:
        raise ValueError(f"{row[2]}: label {label!r} is not in data.class_names "
                         f"({', '.join(listed)})")
    train = np.array([index[n] for n in train_names], np.int32)
    test = None if test_rows is None else [
        (index.get(name(r), -1), r) for r in test_rows]
  seen = set(train.tolist())
  missing = [n for i, n in enumerate(class_names) if i not in seen]
  if missing:
    raise ValueError(f"{train_name}: class {missing[0]!r} has no training example "
                     f"({len(missing)} of {len(class_names)} classes have none)")
  if test is None:
    return train, None, class_names
  for i, row in test:
    if i not in seen:
      raise ValueError(f"{row[2]}: test label {row[1]!r} does not occur in training "
                       f"({train_name})")
  return train, np.array([i for i, _ in test], np.int32), class_names

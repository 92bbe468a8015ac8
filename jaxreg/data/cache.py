"""The one cache of prepared data: named arrays under a key, in `data.cache_dir`.

An entry is `<key>.npz` (the arrays) and `<key>.json` (what they are: the key, the source
description, the settings, names). Each file is written whole (`io.atomic_write`), the
json last, so an entry is complete or absent. The key is a sha256 over the source's
`description` (which identifies its content, see raw.py) and every setting the arrays
depend on: a changed file or setting gives another key, never a stale entry.

Users: the text pipeline stores token ids (text.py: tokenizer and vocabulary settings),
the image pipeline the decoded pixels of folder sources (images.py: data.image_size),
the streamed path the labels of a `tfds:` image set (tfds_source.read_stored: keyed by
what TFDS records of the prepared files, their sizes and modification times, not their
content, which it does not read) and the channel statistics (stream.histogram).
"""

from __future__ import annotations

import hashlib
import io as bytes_io
import json
import logging
import os
from pathlib import Path

import numpy as np

from jaxreg import io

log = logging.getLogger(__name__)


def key(description: str, settings: dict) -> str:
  """sha256 over the source description and the settings (their names included)."""
  blob = json.dumps({"description": description, **settings}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()


class Cache:
  """`data.cache_dir` ('' or None: no cache; loads miss and saves do nothing)."""

  def __init__(self, directory: str | os.PathLike | None):
    self.directory = Path(os.path.expanduser(directory)) if directory else None

  def paths(self, key: str) -> tuple[Path, Path]:
    """(arrays, metadata) files of an entry."""
    return self.directory / f"{key}.npz", self.directory / f"{key}.json"

  def load(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, metadata) of a complete entry, or None (no entry, or unreadable)."""
    if self.directory is None:
      return None
    arrays_path, meta_path = self.paths(key)
    if not meta_path.exists():  # written last: present means complete
      return None
    try:
      meta = json.loads(meta_path.read_text(encoding="utf-8"))
      if meta.get("key") != key:
        return None
      with np.load(arrays_path) as z:
        arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError) as e:
      log.warning("ignoring unreadable cache entry %s (%s)", arrays_path, e)
      return None
    log.info("prepared data from cache %s", arrays_path)
    return arrays, meta

  def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    if self.directory is None:
      return
    self.directory.mkdir(parents=True, exist_ok=True)
    arrays_path, meta_path = self.paths(key)
    buffer = bytes_io.BytesIO()
    np.savez(buffer, **arrays)
    io.atomic_write(arrays_path, buffer.getbuffer())
    io.atomic_write(meta_path, json.dumps({"key": key, **meta}, ensure_ascii=False))

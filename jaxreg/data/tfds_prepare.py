"""A TFDS set prepared on disk, offline when it must be; and the command that seeds it.

A run with a `tfds:` source calls `ensure_prepared`: nothing when the set is prepared,
else TFDS's own `download_and_prepare(file_format='array_record')`. Without network,
TFDS's downloader spends minutes in retries before it fails; a DNS probe of the
registered hosts first makes the run fail in seconds with a one-line hint instead
(TfdsNotPreparedError, a ValueError: exit code 2).

Offline preparation: TFDS reuses a download already on disk when the file lies in the
download dir under `tfds.core.download.resource.get_dl_fname(url, sha256)` with a
`<name>.INFO` file beside it (see ../shared/data/SOURCES.md). `seed_download_dir` puts
local copies of a dataset's registered files there (their size and sha256 are checked
first). The command:

  python -m jaxreg.data.tfds_prepare prepare --dataset=trec \\
      --files=../shared/data/trec --data_dir=DATA_DIR
  python -m jaxreg.data.tfds_prepare seed --dataset=NAME --files=DIR --download_dir=DIR

(`seed` only copies; `prepare` seeds, then runs download_and_prepare.) A run seeds by
itself only when asked: `data.trec_files=DIR` with `data.source='tfds:trec'`.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import logging
import os
import shutil
import socket
import sys
import threading
import urllib.error
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from jaxreg import extras

if __name__ == "__main__" and extras.missing("tfds"):
  # Run as a command on a lean install: the one line naming the extra, not an
  # ImportError traceback from the imports below.
  sys.exit(f"error: python -m jaxreg.data.tfds_prepare needs "
           f"{extras.EXTRAS['tfds'][0]}: pip install 'jaxreg[tfds]'")

import requests  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from tensorflow_datasets.core.download import checksums, resource  # noqa: E402


class TfdsNotPreparedError(ValueError):
  """The dataset is not prepared and cannot be downloaded (one-line message).

  A ValueError, so that a run reports it like a bad config value: one line, exit code 2.
  """


def one_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return text if len(text) <= 400 else text[:400] + " ..."


class QuietTfds(logging.Filter):
  """`with QuietTfds():` drops the warning tfds.builder gives whenever a dataset is not
  prepared yet ('Variant folder X has no dataset_info.json'; X need not even exist):
  noise before our own one-line message."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Variant folder ")

  def __enter__(self):
    logging.getLogger("absl").addFilter(self)
    return self

  def __exit__(self, *exc_info):
    logging.getLogger("absl").removeFilter(self)


def make_builder(name: str, data_dir: str | None):
  """tfds.builder with a one-line ValueError for an unknown dataset or config."""
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    bare = name.split("/")[0].split(":")[0]
    close = difflib.get_close_matches(bare, tfds.list_builders(with_community_datasets=False),
                                      n=3)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ValueError(f"data.source='tfds:{name}': tensorflow-datasets "
                     f"{tfds.__version__} has no dataset {bare!r}{hint}") from None
  except (ValueError, KeyError, AssertionError) as e:  # e.g. an unknown config
    raise ValueError(f"data.source='tfds:{name}': {one_line(e)}") from None


def default_download_dir(builder) -> Path:
  """Where download_and_prepare puts downloads when data.download_dir is empty."""
  return Path(builder.data_dir_root) / "downloads"


def registered_urls(builder_or_cls) -> dict:
  """{url: UrlInfo} of the files a dataset downloads (its checksums.tsv)."""
  return dict(getattr(builder_or_cls, "url_infos", None) or {})


def cached_path(download_dir: Path, dataset: str, url: str, checksum: str) -> Path | None:
  """The seeded/cached copy of url, in either layout TFDS looks at, or None."""
  fname = resource.get_dl_fname(url, checksum)
  for folder in (download_dir / dataset, download_dir):  # current, then legacy layout
    path = folder / fname
    if resource.is_locally_cached(path):
      return path
  return None


def _url_basename(url: str) -> str:
  return urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)


def _sha256(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def seed_download_dir(name: str, files_dir: str | os.PathLike,
                      download_dir: str | os.PathLike) -> list[Path]:
  """Copies local files of dataset NAME into download_dir where TFDS reuses them.

  For every URL the builder registers (its checksums.tsv) whose last path component names
  a file in files_dir (trec: train_5500.label and TREC_10.label), the
  file's size and sha256 are checked against the registered ones, and it is copied to
  download_dir/<dataset>/get_dl_fname(url, sha256) with an INFO file beside it (written
  by TFDS's own resource.write_info_file). download_and_prepare then runs offline.
  A builder without configs (trec) needs every registered file, so a missing one is an
  error; a builder with configs (glue) registers the files of every config, so only the
  files present are seeded. Returns the seeded paths. Already seeded files are kept.
  """
  try:
    builder_cls = tfds.builder_cls(name.split("/")[0].split(":")[0])
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"seed: tensorflow-datasets has no dataset {name!r}") from None
  dataset = builder_cls.name
  urls = registered_urls(builder_cls)
  if not urls:
    raise ValueError(f"seed: tensorflow-datasets registers no download checksums for "
                     f"{dataset!r}, so a local copy cannot be matched to its URLs")
  files_dir, download_dir = Path(files_dir), Path(download_dir)
  if not files_dir.is_dir():
    raise ValueError(f"seed {dataset}: {files_dir} is not a folder")
  names = {url: _url_basename(url) for url in urls}
  present = {url: files_dir / n for url, n in names.items() if (files_dir / n).is_file()}
  expected = ", ".join(sorted(set(names.values())))
  if not present:
    raise ValueError(f"seed {dataset}: {files_dir} holds none of the files TFDS registers "
                     f"for it: {expected}")
  if not getattr(builder_cls, "BUILDER_CONFIGS", None) and len(present) < len(urls):
    absent = sorted(n for u, n in names.items() if u not in present)
    raise ValueError(f"seed {dataset}: {files_dir} lacks {', '.join(absent)} (TFDS "
                     f"registers: {expected})")
  out = []
  for url, src in sorted(present.items()):
    info, base = urls[url], names[url]
    size, digest = src.stat().st_size, _sha256(src)
    if digest != info.checksum or (info.size is not None and size != int(info.size)):
      raise ValueError(f"seed {dataset}: {src} ({size} bytes, sha256 {digest}) is not the "
                       f"file TFDS registers for {url} ({int(info.size)} bytes, sha256 "
                       f"{info.checksum})")
    cached = cached_path(download_dir, dataset, url, info.checksum)
    if cached is None:
      dst = download_dir / dataset / resource.get_dl_fname(url, info.checksum)
      dst.parent.mkdir(parents=True, exist_ok=True)
      tmp = dst.with_name(dst.name + ".tmp")
      shutil.copyfile(src, tmp)
      os.replace(tmp, dst)
      resource.write_info_file(
          url=url, path=dst, dataset_name=dataset, original_fname=base,
          url_info=checksums.UrlInfo(size=size, checksum=digest, filename=base))
      cached = dst
    out.append(cached)
  return out


def _proxy_configured() -> bool:
  return any(os.environ.get(k) for k in (
      "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"))


def hosts_reachable(hosts: Sequence[str], timeout_s: float = 5.0) -> bool:
  """True when every host name resolves within timeout_s (a DNS probe, no traffic)."""
  result = {}

  def probe():
    try:
      for host in hosts:
        socket.getaddrinfo(host, 443)
      result["ok"] = True
    except OSError:
      result["ok"] = False

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout_s)
  return result.get("ok", False)


def _not_prepared_message(name: str, builder, download_dir: Path, why: str) -> str:
  where = builder.data_dir_root
  if builder.name == "trec":
    how = ("seed the downloads from local copies: python -m jaxreg.data.tfds_prepare "
           f"prepare --dataset=trec --files=DIR --data_dir={where} (DIR holding "
           "train_5500.label and TREC_10.label, e.g. ../shared/data/trec), or set "
           "data.trec_files=DIR")
  else:
    how = (f"prepare it where there is network (tfds.builder({name!r}, "
           f"data_dir=...).download_and_prepare(file_format='array_record')) and copy "
           f"the prepared folder {builder.info.name}/ into {where}, or put copies of its "
           f"registered files into {download_dir} with python -m jaxreg.data.tfds_prepare "
           f"seed --dataset={name} --files=DIR --download_dir={download_dir}")
  return (f"data.source='tfds:{name}' is not prepared in {where} and cannot be "
          f"downloaded ({why}); {how}")


_NETWORK_ERRORS = (urllib.error.URLError, socket.gaierror, socket.timeout, ConnectionError,
                   requests.exceptions.RequestException)


def ensure_prepared(builder, name: str, download_dir: str | None = None,
                    files_dir: str | None = None) -> None:
  """download_and_prepare (array_record) unless prepared: seeded from files_dir when
  given, and failing fast without network (TfdsNotPreparedError)."""
  if builder.is_prepared():
    return
  download_dir = Path(download_dir) if download_dir else default_download_dir(builder)
  if files_dir:
    seed_download_dir(name, files_dir, download_dir)
  urls = registered_urls(builder)
  cached = [u for u, info in urls.items()
            if cached_path(download_dir, builder.name, u, info.checksum) is not None]
  # Nothing seeded: probe the hosts first (offline, TFDS's retries take minutes). With
  # some files seeded (a builder registers every config's files) TFDS decides.
  if urls and not cached and not _proxy_configured():
    hosts = sorted({urllib.parse.urlparse(u).hostname for u in urls} - {None})
    if hosts and not hosts_reachable(hosts):
      raise TfdsNotPreparedError(_not_prepared_message(
          name, builder, download_dir, f"{', '.join(hosts)} cannot be resolved"))
  # Preparing imports TensorFlow (tensorflow-cpu); keep its C++ INFO lines quiet.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  try:
    builder.download_and_prepare(download_dir=str(download_dir),
                                 file_format="array_record")
  except _NETWORK_ERRORS as e:
    raise TfdsNotPreparedError(_not_prepared_message(
        name, builder, download_dir, one_line(e))) from e


def main(argv: Sequence[str] | None = None, prog: str = "python -m jaxreg.data.tfds_prepare"
         ) -> int:
  parser = argparse.ArgumentParser(
      prog=prog,
      description="Seed TFDS's download dir with local copies of a dataset's files "
                  "(checksums checked), so download_and_prepare runs offline.")
  sub = parser.add_subparsers(dest="command", required=True)
  for cmd, help_ in (("seed", "copy the files into the download dir"),
                     ("prepare", "seed, then download_and_prepare (array_record)")):
    p = sub.add_parser(cmd, help=help_)
    p.add_argument("--dataset", required=True, help="TFDS name, e.g. trec")
    p.add_argument("--files", required=True,
                   help="folder holding the files named like the registered URLs")
    p.add_argument("--data_dir", default=None,
                   help="TFDS data dir (default: TFDS's, ~/tensorflow_datasets)")
    p.add_argument("--download_dir", default=None,
                   help="TFDS download dir (default: DATA_DIR/downloads)")
  args = parser.parse_args(argv)
  try:
    with QuietTfds():
      builder = make_builder(args.dataset, args.data_dir)
      download_dir = Path(args.download_dir) if args.download_dir else \
          default_download_dir(builder)
      for path in seed_download_dir(args.dataset, args.files, download_dir):
        print(f"seeded {path}")
      if args.command == "prepare":
        ensure_prepared(builder, args.dataset, str(download_dir))
        splits = ", ".join(f"{k} {v.num_examples}"
                           for k, v in builder.info.splits.items())
        print(f"prepared {builder.info.full_name} in {builder.data_dir} ({splits})")
  except ValueError as e:  # TfdsNotPreparedError included
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

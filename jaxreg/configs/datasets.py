"""Dataset settings shared by the text configs: `apply(config, name)`.

- `synthetic`: the built-in offline set (the base config's default).
- `trec`: TREC-6 through tensorflow-datasets (`tfds:trec`, coarse labels). Offline, TFDS
  prepares it from the two original files in `data.trec_files` (default: the
  `shared/data/trec` folder beside this checkout, when it exists).
- `trec50`: the same questions with TREC's fine labels (`data.trec_fine`): 47 of the 50
  fine classes occur in TFDS's train and test files, many with only a handful of
  test questions (docs/results/trec.md, "TREC-50").
- `imdb`: the aclImdb folder tree (`data.source=folder`), by default extracted to
  ~/.cache/jaxreg/aclImdb:
    mkdir -p ~/.cache/jaxreg && tar xzf ../shared/data/imdb/aclImdb_labelled.tar.gz -C ~/.cache/jaxreg
"""

import os
from pathlib import Path

# <checkout>/jaxreg/configs/datasets.py -> <checkout>/../shared/data (in an installed
# wheel the folder does not exist, and `data.trec_files` stays empty).
_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
DATASETS = ("synthetic", "trec", "trec50", "imdb")


def apply(config, name: str):
  if name == "synthetic":
    return config
  if name in ("trec", "trec50"):
    config.data.source = "tfds:trec"
    trec = _SHARED / "trec"
    config.data.trec_files = str(trec) if trec.is_dir() else ""
    config.data.max_length = 40          # the longest question has 37 tokens
    config.data.val_fraction = 0.1
    config.train.batch_size = 32
    config.data.trec_fine = name == "trec50"
    return config
  if name == "imdb":
    config.data.source = "folder"
    config.data.root = os.path.expanduser("~/.cache/jaxreg/aclImdb")
    config.data.classes = "neg,pos"
    config.data.max_length = 400
    config.data.strip_html = True  # reviews hold <br /> line breaks
    config.data.sort_window = 20   # similar lengths per batch: short reviews run short
    config.data.min_freq = 2
    config.data.max_vocab = 30000
    config.data.val_fraction = 0.1
    config.data.eval_batch_size = 256
    config.train.batch_size = 64
    return config
  raise ValueError(f"dataset {name!r} is not one of: {', '.join(DATASETS)}")

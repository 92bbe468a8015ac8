"""Prepares, here, what the GPU machine lacks for bench/gpu_suite.sh and
bench/resnet50_cifar_93.sh, in the git-ignored folder .gpu_carry/, and prints the device
calls that use it.

  python bench/gpu_carry.py           # download, copy, check, print the calls
  python bench/gpu_carry.py --check   # only the checks and the sizes (no network)

Run it in the checkout the device tool sends (the session's own repository: a helper's
worktree does not travel), from any directory. It

1. checks that every dependency in pyproject.toml is accounted for: in the GPU image
   (IMAGE, its package list as the device docs give it), carried (CARRIED), or not needed
   for the GPU runs (NOT_NEEDED, with the reason). A new dependency fails this check
   until it is placed, here and in tests/test_bench.py;
2. downloads the carried packages as CPython 3.12 manylinux wheels (versions pinned by
   constraints.txt, the versions the tests run) into .gpu_carry/wheels, one version of
   each, and checks that everything those wheels require is carried or in the image;
3. copies the CIFAR-10 JPEG tar (../shared/data/cifar10_jpeg, checked against its
   sha256 in ../shared/data/SOURCES.md) to .gpu_carry/data: `../shared` does not travel;
4. writes .gpu_carry/source.json (commit, dirty or not, date): the copy of the working
   tree that travels has no .git;
5. checks that the working tree that travels (tracked and untracked-not-ignored files)
   plus .gpu_carry stays under the device's 64 MiB, and prints both device calls.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
CARRY = benchlib.CARRY_DIR
LIMIT_BYTES = 64 * 2**20
TAR = ROOT.parent / "shared" / "data" / "cifar10_jpeg" / "cifar10_jpeg.tar.gz"
TAR_SHA256 = "a2168f2bd40dc1602fbb2f9a1f045cce6c01ca097bffb964eeb8962baa0e6477"

# The GPU image's Python packages (nvidia-h200, image 'cuda', as read on 2026-11-17; the
# device docs' KINDS.md). Among them python3 3.12, jax 0.11.2 (CUDA 13), torch 2.11 and
# transformers 5.17, which has no Flax models.
IMAGE = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl
meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp""".split())

# Carried as wheels, whatever the image has (its versions do not fit), with why.
CARRIED = {
    "transformers": "the image's 5.17 has no Flax models; jaxreg's BERT needs 4.57",
    "tokenizers": "transformers 4.57 needs <= 0.23.0; the image has 0.23.2",
    "huggingface-hub": "transformers 4.57 needs < 1.0; the image has 1.33",
    "ml-collections": "not in the image: jaxreg's configs",
    "tensorboardx": "not in the image: every run writes its TensorBoard events",
}
# pyproject dependencies the GPU runs never import (the image lacks them).
NOT_NEEDED = {
    "tensorflow-datasets": "imported only by tfds: data sources (jaxreg/data/"
                           "tfds_source.py, lazily); the GPU runs read an image folder "
                           "and random batches",
    "tensorflow-cpu": "needed only to prepare tfds: datasets",
    "importlib-resources": "tensorflow-datasets' own undeclared need",
    "grain": "imported only by streamed image folders (jaxreg/data/stream.py, lazily); "
             "the GPU runs keep CIFAR-10 resident on the device",
}


def norm(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
  return norm(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1))


def pyproject_dependencies() -> list[str]:
  data = tomllib.loads((ROOT / "pyproject.toml").read_text())
  return [requirement_name(s) for s in data["project"]["dependencies"]]


def unaccounted(deps) -> list[str]:
  return [d for d in deps if d not in CARRIED and d not in NOT_NEEDED and d not in IMAGE]


def pins() -> dict[str, str]:
  """constraints.txt's name==version pins, by normalized name."""
  out = {}
  for line in (ROOT / "constraints.txt").read_text().splitlines():
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
    if m:
      out[norm(m.group(1))] = m.group(2)
  return out


def wheel_requirements(wheel: Path) -> list[str]:
  """Names of what a wheel requires on Linux x86-64 CPython 3.12 (extras left out)."""
  from packaging.requirements import Requirement
  with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = z.read(meta).decode().splitlines()
  env = {"python_version": "3.12", "python_full_version": "3.12.3",
         "platform_machine": "x86_64", "sys_platform": "linux",
         "platform_system": "Linux", "os_name": "posix",
         "implementation_name": "cpython", "platform_python_implementation": "CPython",
         "extra": ""}
  out = []
  for line in lines:
    if line.startswith("Requires-Dist:"):
      req = Requirement(line.split(":", 1)[1].strip())
      if req.marker is None or req.marker.evaluate(env):
        out.append(norm(req.name))
  return out


def download(names: dict[str, str], dest: Path) -> list[Path]:
  dest.mkdir(parents=True, exist_ok=True)
  wanted = {}
  for name, version in names.items():
    stem = f"{name.replace('-', '_')}-{version}-"
    present = [w for w in dest.glob("*.whl") if norm(w.name.split("-")[0]) == name]
    for w in present:
      if not w.name.lower().startswith(stem.lower()):
        w.unlink()  # one version of each: two stop the whole install
    have = [w for w in dest.glob("*.whl") if w.name.lower().startswith(stem.lower())]
    if not have:
      wanted[name] = version
  if wanted:
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                 "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp",
           *[a for p in platforms for a in ("--platform", p)], "-d", str(dest),
           *[f"{n}=={v}" for n, v in wanted.items()]]
    print("$ " + " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)
  return sorted(dest.glob("*.whl"))


def sha256(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def tree_bytes() -> int:
  """Bytes of what the device tool sends besides the carried paths: tracked files and
  untracked files git does not ignore (and a shared/ folder inside the checkout)."""
  out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                       capture_output=True, check=True).stdout
  files = [ROOT / p for p in out.decode().split("\0") if p]
  total = sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())
  shared = ROOT / "shared"
  if shared.is_dir() and not shared.is_symlink():
    total += sum(f.stat().st_size for f in shared.rglob("*") if f.is_file())
  return total


def folder_bytes(path: Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() \
      else 0


def write_source() -> dict:
  src = benchlib.source()
  src.pop("from", None)
  src["prepared"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
  (CARRY / "source.json").write_text(json.dumps(src, indent=2) + "\n")
  return src


def device_calls() -> str:
  carry = json.dumps([CARRY.name])
  return (
      "Device calls (the `run` tool; device time counts from the machine's start, a "
      "minute or more, to its return; it stays warm 30 s between calls):\n"
      f"  1. run(command=\"bash bench/gpu_suite.sh\", carry={carry}, timeout_s=400)\n"
      "     <= 5 minutes; $OUT/gpu_suite.json and gpu_suite.log come back\n"
      f"  2. run(command=\"bash bench/resnet50_cifar_93.sh --cap=360\", carry={carry}, "
      "timeout_s=420)\n"
      "     hard cap 360 s from its start (epochs sized from call 1's ResNet-50 "
      "images/s); $OUT/resnet50_cifar_93.json and .log come back\n"
      "  A failed part can be rerun alone: bash bench/gpu_suite.sh --parts=NAME.\n"
      "  Then record the numbers in docs/results/gpu.md.")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true",
                      help="only check the accounting and the sizes; download nothing")
  args = parser.parse_args(argv)
  deps = pyproject_dependencies()
  missing = unaccounted(deps)
  if missing:
    print(f"error: pyproject.toml dependencies {', '.join(missing)} are neither in the "
          "GPU image nor carried nor marked not needed: place them in bench/gpu_carry.py",
          file=sys.stderr)
    return 1
  versions = pins()
  unpinned = [n for n in CARRIED if n not in versions]
  if unpinned:
    print(f"error: carried packages {', '.join(unpinned)} have no pin in constraints.txt",
          file=sys.stderr)
    return 1
  carried = {n: versions[n] for n in CARRIED}
  print("carried: " + ", ".join(f"{n}=={v}" for n, v in carried.items()))
  print("not needed on the GPU: " + ", ".join(NOT_NEEDED))
  if not args.check:
    wheels = download(carried, CARRY / "wheels")
    needs = {r: w.name for w in wheels for r in wheel_requirements(w)}
    lacking = sorted(r for r in needs if r not in CARRIED and r not in IMAGE)
    if lacking:
      print(f"error: the wheels require {', '.join(lacking)}, neither carried nor in the "
            "GPU image", file=sys.stderr)
      return 1
    if not TAR.exists():
      print(f"error: {TAR}: no such file (the CIFAR-10 JPEG tar of ../shared/data)",
            file=sys.stderr)
      return 1
    data = CARRY / "data" / TAR.name
    data.parent.mkdir(parents=True, exist_ok=True)
    if not data.exists() or data.stat().st_size != TAR.stat().st_size:
      shutil.copyfile(TAR, data)
    if sha256(data) != TAR_SHA256:
      data.unlink()
      print(f"error: {TAR}: sha256 differs from SOURCES.md's {TAR_SHA256}",
            file=sys.stderr)
      return 1
    src = write_source()
    print(f"source: {src['commit']}{' (dirty)' if src.get('dirty') else ''}")
  tree, carry = tree_bytes(), folder_bytes(CARRY)
  mib = lambda b: f"{b / 2**20:.1f} MiB"
  print(f"travels: working tree {mib(tree)} + {CARRY.name}/ {mib(carry)} = "
        f"{mib(tree + carry)} (limit {mib(LIMIT_BYTES)})")
  if tree + carry >= LIMIT_BYTES:
    print("error: over the device's 64 MiB: ignore or remove large untracked files",
          file=sys.stderr)
    return 1
  print(device_calls())
  return 0


if __name__ == "__main__":
  sys.exit(main())

# Sourced by bench/gpu_suite.sh and bench/resnet50_cifar_93.sh: the Python environment
# of a run on the GPU machine (or here). On that machine python3 holds jax 0.11.2 (CUDA
# 13), torch 2.11 and transformers 5.17 without Flax, and no ml_collections: the wheels
# that bench/gpu_carry.py put in .gpu_carry/wheels (transformers 4.57, its tokenizers and
# huggingface-hub, ml_collections, tensorboardX) are installed into /tmp/site, which goes
# first on PYTHONPATH, as the device README says. Where there are no carried wheels
# (a development machine) nothing is installed.
#
# PYTHON: the interpreter (default python3); JAXREG_SITE: where the wheels go (default
# /tmp/site); JAXREG_SKIP_WHEELS=1: install nothing (the dry runs' default). Sets
# JAXREG_ROOT, PYTHONPATH, HF_HUB_OFFLINE and PYTHONUNBUFFERED. (Compiled programs go to
# jaxreg's disk cache, ~/.cache/jaxreg/xla: a rerun on a warm machine compiles less.)
JAXREG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
gpu_env_wheels=("$JAXREG_ROOT"/.gpu_carry/wheels/*.whl)
if [ -e "${gpu_env_wheels[0]}" ] && [ "${JAXREG_SKIP_WHEELS:-0}" != 1 ]; then
  JAXREG_SITE="${JAXREG_SITE:-/tmp/site}"
  echo "installing ${#gpu_env_wheels[@]} carried wheels into $JAXREG_SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$JAXREG_SITE" "${gpu_env_wheels[@]}" || return 1
  export PYTHONPATH="$JAXREG_SITE:$JAXREG_ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$JAXREG_ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

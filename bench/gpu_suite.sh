#!/usr/bin/env bash
# Every GPU comparison of issue 18 in one command (bench/gpu_suite.py says what each
# measures): <= 5 minutes on one H200, one JSON ($OUT/gpu_suite.json on the device
# machine, else runs/gpu_suite/). Prepare the carried files first, here:
#   python bench/gpu_carry.py          # prints the exact device call
# then, in one device call:  bash bench/gpu_suite.sh   (carry: .gpu_carry)
# Anywhere, tiny and on the CPU:  bash bench/gpu_suite.sh --dry_run
set -uo pipefail
# The dry run uses this machine's own packages: the carried wheels are for the GPU image.
case " $* " in *" --dry_run "*) export JAXREG_SKIP_WHEELS="${JAXREG_SKIP_WHEELS:-1}" ;; esac
source "$(dirname "$0")/gpu_env.sh" || { echo "error: the carried wheels did not install" >&2; exit 1; }
exec "$PYTHON" "$JAXREG_ROOT/bench/gpu_suite.py" "$@"

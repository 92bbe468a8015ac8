#!/usr/bin/env bash
# ResNet-50 toward 93% on the CIFAR-10 JPEG copy under a hard time cap (issue 18):
# bench/resnet50_cifar_93.py says what runs and what is reported. Prepare the carried
# files first, here:  python bench/gpu_carry.py   (wheels and the CIFAR tar; it prints
# the exact device call), then in one device call:
#   bash bench/resnet50_cifar_93.sh [--cap=SECONDS] [--epochs=N|auto]   (carry: .gpu_carry)
# Anywhere, tiny and on the CPU:  bash bench/resnet50_cifar_93.sh --dry_run
set -uo pipefail
case " $* " in *" --dry_run "*) export JAXREG_SKIP_WHEELS="${JAXREG_SKIP_WHEELS:-1}" ;; esac
source "$(dirname "$0")/gpu_env.sh" || { echo "error: the carried wheels did not install" >&2; exit 1; }
exec "$PYTHON" "$JAXREG_ROOT/bench/resnet50_cifar_93.py" "$@"

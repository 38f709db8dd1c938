#!/usr/bin/env bash
# Unattended GPU check for issue 20 (under 10 minutes on one recent GPU; nothing to answer):
#   1. DenseNet-121 (224 px, 7 x 7 cells of 32 px) CE maps per second: dense fp32, dense bf16 (each with windows and
#      by full passes) and adaptive fp32 / bf16;
#   2. `cemap run` throughput on synthcxr at 224 px (512 images, one-channel DenseNet-121) and the projected time
#      for all 112,120 ChestX-ray14 images;
#   3. `cemap bench --device cuda --quick --no-quality`: the same anchors (Captum, torchattacks, the latent loop) on the GPU;
#   4. the CUDA tests (tests/test_cuda.py).
# Usage: scripts/gpu_check.sh [OUT_DIR]    (default: gpu_check_out/; JSON and a log land there)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export CEMAP_QUIET=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
timeout 540 "$PY" scripts/gpu_check.py --device cuda --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
timeout 60 "$PY" -m pytest -q tests/test_cuda.py -rs 2>&1 | tail -15 | tee -a "$OUT/gpu_check.log"
exit "$status"

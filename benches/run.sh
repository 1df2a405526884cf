#!/usr/bin/env bash
# Peer benchmark, one command: builds the benches' own venv from PyPI (once; again when the pins
# below or benches/constraints.txt change), then runs benches/peers.py with it.
#
#   benches/run.sh [peers.py options]          # e.g. --runs 30 --write-results --json /tmp/p.json
#   benches/run.sh --setup                     # only (re)build the venv
# (benches/real_models.sh: the same venv, tfjsc vs ONNX Runtime on published TF.js models.)
#
# Environment:
#   BENCH_VENV    the venv (default /work/bench-venv)
#   BENCH_PYTHON  interpreter the venv is made from (default python3.11, else python3)
#   TFJSC         the tfjsc binary (default: target/release/tfjsc of this checkout, built with
#                 `cargo build --release -p tfjsc` if missing, and the kernel_peak example beside
#                 it); --tfjsc BIN overrides it
#   KERNEL_PEAK   the kernel_peak example (default: examples/kernel_peak beside the tfjsc binary)
#
# The models come from `tests/make_fixtures.py --full /work/models` (its own TensorFlow +
# tensorflowjs venv, see that script's docstring); --models-dir DIR points elsewhere.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
VENV="${BENCH_VENV:-/work/bench-venv}"
PY="${BENCH_PYTHON:-$(command -v python3.11 || command -v python3)}"
CONSTRAINTS="$HERE/constraints.txt"

# Top-level pins. How they were found: tensorflow-cpu alone first (installing it together with
# everything else lets pip backtrack through TF's many pins for a long time), then the rest
# against the versions it brought (numpy 2.4.6, protobuf 7.36.2). With these releases nothing
# needed --no-deps: tf2onnx 1.17.0 asks only numpy>=1.23.5, onnx>=1.14, protobuf>=3.20 (older
# tf2onnx releases pinned protobuf~=3.20 and numpy<2, which would need `--no-deps tf2onnx` plus
# onnx, requests, flatbuffers by hand), ai-edge-litert 2.3.0 and openvino 2026.4.1 accept
# numpy 2.4. `pip check` after the install must stay clean. The full resolution is frozen in
# constraints.txt, passed with -c to both steps, so a rebuild takes the same wheels.
TF_PINS=(tensorflow-cpu==2.21.0)
PEER_PINS=(onnxruntime==1.32.0 tf2onnx==1.17.0 ai-edge-litert==2.3.0 openvino==2026.4.1
           matplotlib==3.11.2 numpy==2.4.6)

stamp() {
    { echo "${TF_PINS[@]} ${PEER_PINS[@]}"; cat "$CONSTRAINTS"; "$PY" --version; } | sha256sum | cut -c1-16
}

setup() {
    local want; want="$(stamp)"
    if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.benches-stamp" 2>/dev/null)" == "$want" ]]; then
        return
    fi
    echo "== building $VENV with $PY" >&2
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "${TF_PINS[@]}"
    "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "${PEER_PINS[@]}"
    "$VENV/bin/python" -m pip check >&2
    echo "$want" > "$VENV/.benches-stamp"
}

setup
if [[ "${1:-}" == "--setup" ]]; then
    "$VENV/bin/python" -m pip freeze
    exit 0
fi

if [[ " $* " != *" --tfjsc "* && -z "${TFJSC:-}" ]]; then
    TFJSC="$REPO/target/release/tfjsc"
    if [[ ! -x "$TFJSC" ]]; then
        echo "== $TFJSC missing: cargo build --release -p tfjsc" >&2
        (cd "$REPO" && cargo build --release -p tfjsc)
    fi
    # The micro-kernel peak ResNet50's GFLOP/s is set against, measured in the same rounds.
    if [[ ! -x "$REPO/target/release/examples/kernel_peak" ]]; then
        echo "== kernel_peak missing: cargo build --release -p tfjsc --example kernel_peak" >&2
        (cd "$REPO" && cargo build --release -p tfjsc --example kernel_peak)
    fi
fi
export TFJSC
exec "$VENV/bin/python" "$HERE/peers.py" "$@"

#!/usr/bin/env python3
"""Mapped or copied weight shards: load time, run time and peak resident memory, side by side.

Writes a synthetic web model with ResNet50's weight volume (about 98 MB of float32 in 4 MiB
shards, as the TF.js converter writes them) -- two matrix products, so running it reads every
weight once -- compiles it with the release `tfjsc`, then runs `tfjsc bench` on it alternately
with mapped (default) and copied (`--copy-weights`) shards under `/usr/bin/time -v`.

    cargo build --release -p tfjsc && python3 benches/weights_loading.py [--rounds 5]

Needs only Python 3 and /usr/bin/time. Prints one Markdown table of medians over the rounds.
The page cache is warm after the first round (the shards were just written): these figures are
the warm-cache case, which is the one a long-running server sees after its first load.
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import struct
import subprocess
import tempfile

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
TFJSC = REPOSITORY / "target" / "release" / "tfjsc"
SHARD_BYTES = 4 * 1024 * 1024
# [in, out] of the two products: 2048*4096 + 4096*4096 floats = 96 MiB.
LAYERS = [(2048, 4096), (4096, 4096)]


def const_node(name, shape):
    dims = [{"size": str(d)} for d in shape]
    return {
        "name": name,
        "op": "Const",
        "attr": {
            "dtype": {"type": "DT_FLOAT"},
            "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {"dim": dims}}},
        },
    }


def write_model(folder: pathlib.Path):
    nodes = [
        {
            "name": "input",
            "op": "Placeholder",
            "attr": {
                "dtype": {"type": "DT_FLOAT"},
                "shape": {"shape": {"dim": [{"size": "1"}, {"size": str(LAYERS[0][0])}]}},
            },
        }
    ]
    weights = []
    previous = "input"
    for index, (rows, columns) in enumerate(LAYERS):
        weight = f"dense{index}/kernel"
        nodes.append(const_node(weight, [rows, columns]))
        weights.append({"name": weight, "shape": [rows, columns], "dtype": "float32"})
        name = f"dense{index}/MatMul"
        nodes.append(
            {
                "name": name,
                "op": "MatMul",
                "input": [previous, weight],
                "attr": {"T": {"type": "DT_FLOAT"}, "transpose_a": {"b": False}, "transpose_b": {"b": False}},
            }
        )
        previous = name
    total = sum(rows * columns for rows, columns in LAYERS) * 4
    # Small values that keep the products finite: one 4 KiB block repeated.
    block = b"".join(struct.pack("<f", ((i % 97) - 48) / 4096.0) for i in range(1024))
    count = (total + SHARD_BYTES - 1) // SHARD_BYTES
    paths = []
    written = 0
    for shard in range(count):
        size = min(SHARD_BYTES, total - written)
        name = f"group1-shard{shard + 1}of{count}.bin"
        with open(folder / name, "wb") as file:
            file.write((block * (size // len(block) + 1))[:size])
        paths.append(name)
        written += size
    model = {
        "format": "graph-model",
        "generatedBy": "benches/weights_loading.py",
        "convertedBy": "benches/weights_loading.py",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": paths, "weights": weights}],
    }
    (folder / "model.json").write_text(json.dumps(model))
    return total


def measure(library: pathlib.Path, copy: bool, runs: int):
    command = ["/usr/bin/time", "-v", str(TFJSC), "bench", str(library), "--runs", str(runs), "--warmup", "1", "--json"]
    if copy:
        command.append("--copy-weights")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    resident_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return figures["load_ms"], figures["median_ms"], resident_kb / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = pathlib.Path(temporary)
        total = write_model(folder)
        library = folder / "libweights.so"
        subprocess.run([str(TFJSC), "compile", str(folder / "model.json"), "-o", str(library)], check=True, capture_output=True)
        results = {False: [], True: []}
        for _ in range(arguments.rounds):
            for copy in (False, True):
                results[copy].append(measure(library, copy, arguments.runs))
        print(f"weights: {total / 2**20:.1f} MiB in {(total + SHARD_BYTES - 1) // SHARD_BYTES} shards; "
              f"medians of {arguments.rounds} rounds, {arguments.runs} runs each, {os.cpu_count()} CPUs\n")
        print("| weights | load ms | run ms (median) | peak resident MiB |")
        print("|---|---|---|---|")
        for copy in (False, True):
            load, run, resident = (statistics.median(column) for column in zip(*results[copy]))
            print(f"| {'copied' if copy else 'mapped'} | {load:.1f} | {run:.2f} | {resident:.1f} |")


if __name__ == "__main__":
    main()

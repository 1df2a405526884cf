#!/usr/bin/env python3
"""Peer benchmark: ONNX Runtime and TensorFlow (and optionally tfjsc) on the full-size models.

Inputs: the directories written by `python tests/make_fixtures.py --full /work/models`, i.e. for
each model /work/models/<name>/{case.json, input_0.npy, expected_0.npy, model.json, shards,
saved_model/}.

For every model (sequentially, one peer at a time):
  * ONNX: tf2onnx converts saved_model/ (signature serving_default) to <dir>/model.onnx
    (cached; --reconvert forces it), then ONNX Runtime (CPUExecutionProvider, ORT_ENABLE_ALL,
    ORT_SEQUENTIAL, inter_op_num_threads=1) with intra_op_num_threads=1 and =2;
  * TensorFlow: tf.saved_model.load(saved_model).signatures["serving_default"] wrapped in a
    tf.function, intra-op and inter-op parallelism 1;
  * tfjsc (only with --tfjsc BIN): `BIN compile <dir>/model.json -o <tmp>/lib<name>.so` (wall time
    of the compile is reported), then `BIN bench <tmp>/lib<name>.so --runs N --json`, whose stdout
    is a JSON object {"median_ms","p90_ms","min_ms","load_ms","threads","runs"}.
Each in-process peer runs `--warmup` (10) untimed runs, then `--runs` (50) timed runs on
input_0.npy; reports median / p90 / min in ms and the error against expected_0.npy as
max|y - expected| / max|expected|; tfjsc's comes from `tfjsc run` on the same input (its bench
command does not return values).

Prints one markdown table; --json PATH also writes every number.

    /work/pyenv/venv/bin/python benches/peers.py --json /tmp/peers.json
    /work/pyenv/venv/bin/python benches/peers.py --tfjsc target/release/tfjsc --json /tmp/p.json
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

DEFAULT_MODELS = ["mobilenet_v2", "resnet50", "efficientnet_b0"]


def stats_ms(times_s):
    a = np.asarray(times_s, dtype=np.float64) * 1000.0
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "runs": int(a.size)}


def rel_err(y, expected):
    y = np.asarray(y, dtype=np.float32).reshape(expected.shape)
    denom = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(y - expected))) / denom


def time_fn(fn, warmup, runs):
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, stats_ms(times)


# ------------------------------------------------------------------------------------- ONNX ---

def convert_onnx(model_dir, opset, reconvert, log):
    sm = os.path.join(model_dir, "saved_model")
    onnx_path = os.path.join(model_dir, "model.onnx")
    if (not reconvert and os.path.exists(onnx_path)
            and os.path.getmtime(onnx_path) >= os.path.getmtime(os.path.join(sm, "saved_model.pb"))):
        return onnx_path, None
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", sm,
           "--signature_def", "serving_default", "--tag", "serve",
           "--opset", str(opset), "--output", onnx_path]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    with open(log, "w") as f:
        f.write(p.stdout)
    if p.returncode != 0 or not os.path.exists(onnx_path):
        raise RuntimeError("tf2onnx failed (exit %d), log: %s\n%s"
                           % (p.returncode, log, p.stdout[-2000:]))
    return onnx_path, dt


def bench_ort(onnx_path, x, expected, threads, warmup, runs):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1000.0
    inputs = sess.get_inputs()
    assert len(inputs) == 1, [i.name for i in inputs]
    feed = {inputs[0].name: x}
    out_name = sess.get_outputs()[0].name
    y, st = time_fn(lambda: sess.run([out_name], feed)[0], warmup, runs)
    st.update(threads=threads, load_ms=load_ms, max_rel_err=rel_err(y, expected),
              version=ort.__version__)
    return st


# --------------------------------------------------------------------------------- TensorFlow ---

_TF = None


def tf_module():
    """Import TensorFlow once, with 1 intra-op and 1 inter-op thread (must precede any TF op)."""
    global _TF
    if _TF is None:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _TF = tf
    return _TF


def bench_tf(model_dir, x, expected, warmup, runs):
    tf = tf_module()
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    sig = loaded.signatures["serving_default"]
    arg = list(sig.structured_input_signature[1].keys())[0]
    out_key = sorted(sig.structured_outputs.keys())[0]

    @tf.function
    def run(t):
        return sig(**{arg: t})[out_key]

    xt = tf.constant(x)
    run(xt)  # trace
    load_ms = (time.perf_counter() - t0) * 1000.0
    y, st = time_fn(lambda: run(xt).numpy(), warmup, runs)
    st.update(threads=1, load_ms=load_ms, max_rel_err=rel_err(y, expected), version=tf.__version__)
    return st


# ------------------------------------------------------------------------------------- tfjsc ---

def _last_json_object(text):
    """The last JSON object in text: a one-line object, or a pretty-printed one ending the text."""
    lines = text.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].lstrip().startswith("{"):
            continue
        for chunk in (lines[i], "\n".join(lines[i:])):
            try:
                obj = json.loads(chunk)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ValueError("no JSON object in output")


def bench_tfjsc(binary, name, model_dir, runs, workdir, timeout):
    lib = os.path.join(workdir, "lib%s.so" % name)
    cmd = [binary, "compile", os.path.join(model_dir, "model.json"), "-o", lib]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    compile_s = time.perf_counter() - t0
    if p.returncode != 0 or not os.path.exists(lib):
        raise RuntimeError("tfjsc compile failed (exit %d): %s" % (p.returncode,
                                                                  (p.stderr or p.stdout)[-2000:]))
    # Accuracy: tfjsc's own answer on the same input, against TensorFlow's.
    out_dir = os.path.join(workdir, "%s_outputs" % name)
    cmd = [binary, "run", lib, "--input", os.path.join(model_dir, "input_0.npy"), "--out", out_dir]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("tfjsc run failed (exit %d): %s" % (p.returncode,
                                                              (p.stderr or p.stdout)[-2000:]))
    with open(os.path.join(out_dir, "outputs.json")) as f:
        listing = json.load(f)
    got = np.load(os.path.join(out_dir, listing[0]["file"]))
    expected = np.load(os.path.join(model_dir, "expected_0.npy"))
    max_rel_err = float(np.abs(got.astype(np.float64) - expected).max() / np.abs(expected).max())
    cmd = [binary, "bench", lib, "--runs", str(runs), "--json"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("tfjsc bench failed (exit %d): %s" % (p.returncode,
                                                                (p.stderr or p.stdout)[-2000:]))
    try:
        res = _last_json_object(p.stdout)
    except ValueError:
        raise RuntimeError("tfjsc bench printed no JSON object: %r" % p.stdout[-2000:])
    missing = [k for k in ("median_ms", "p90_ms", "min_ms") if k not in res]
    if missing:
        raise RuntimeError("tfjsc bench JSON lacks %s: %r" % (missing, res))
    out = {k: res.get(k) for k in ("median_ms", "p90_ms", "min_ms", "load_ms", "threads", "runs")}
    out["compile_s"] = compile_s
    out["lib_bytes"] = os.path.getsize(lib)
    out["max_rel_err"] = max_rel_err
    return out


# ------------------------------------------------------------------------------------- table ---

def _cell(r, err=False):
    if r is None:
        return "-"
    if "error" in r:
        return "FAIL"
    s = "%.2f / %.2f / %.2f" % (r["median_ms"], r["p90_ms"], r["min_ms"])
    return s


def _err(r):
    if not r or "error" in r or r.get("max_rel_err") is None:
        return "-"
    return "%.1e" % r["max_rel_err"]


def _ratio(a, b, key="median_ms"):
    if not a or not b or "error" in a or "error" in b or not b.get(key) or a.get(key) is None:
        return "-"
    return "%.2f" % (float(a[key]) / float(b[key]))


def make_table(results, with_tfjsc):
    hdr = ["model", "ORT 1T ms (med / p90 / min)", "ORT 2T ms (med / p90 / min)",
           "TF 1T ms (med / p90 / min)", "rel err ORT1 / ORT2 / TF"]
    if with_tfjsc:
        hdr += ["tfjsc compile s", "tfjsc library KB", "tfjsc ms (med / p90 / min)",
                "tfjsc threads", "tfjsc rel err", "tfjsc / ORT 1T (med)", "tfjsc / ORT 1T (min)"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * len(hdr)) + "|"]
    for name, r in results.items():
        o1, o2, t = r.get("ort_1t"), r.get("ort_2t"), r.get("tf_1t")
        row = [name, _cell(o1), _cell(o2), _cell(t), "%s / %s / %s" % (_err(o1), _err(o2), _err(t))]
        if with_tfjsc:
            j = r.get("tfjsc")
            ok = j and "error" not in j
            row += ["%.2f" % j["compile_s"] if ok else ("FAIL" if j else "-"),
                    "%.0f" % (j["lib_bytes"] / 1024) if ok else "-",
                    _cell(j), str(j.get("threads")) if ok else "-", _err(j),
                    _ratio(j, o1, "median_ms"), _ratio(j, o1, "min_ms")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="ONNX Runtime / TensorFlow / tfjsc peer benchmark")
    ap.add_argument("--models-dir", default="/work/models")
    ap.add_argument("--models", nargs="*", default=None,
                    help="model names (default: %s, those present)" % " ".join(DEFAULT_MODELS))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    ap.add_argument("--tfjsc", metavar="BIN", help="path to the tfjsc binary (adds tfjsc columns)")
    ap.add_argument("--tfjsc-timeout", type=float, default=3600.0, help="seconds per command")
    ap.add_argument("--keep-libs", metavar="DIR", help="compile tfjsc libraries into DIR "
                    "(default: a temporary directory, removed afterwards)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--reconvert", action="store_true", help="redo tf2onnx even if cached")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ort", "tf"],
                    help="skip these peers")
    args = ap.parse_args()

    names = args.models or [n for n in DEFAULT_MODELS
                            if os.path.exists(os.path.join(args.models_dir, n, "case.json"))]
    if not names:
        sys.exit("no models in %s (run tests/make_fixtures.py --full %s)"
                 % (args.models_dir, args.models_dir))
    tfjsc_bin = None
    if args.tfjsc:
        tfjsc_bin = shutil.which(args.tfjsc) or os.path.abspath(args.tfjsc)
        if not (os.path.isfile(tfjsc_bin) and os.access(tfjsc_bin, os.X_OK)):
            sys.exit("--tfjsc %s: not an executable file" % args.tfjsc)

    workdir = args.keep_libs or tempfile.mkdtemp(prefix="tfjsc_peers_")
    os.makedirs(workdir, exist_ok=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(), "python": platform.python_version(),
        "runs": args.runs, "warmup": args.warmup, "opset": args.opset,
        "tfjsc": tfjsc_bin,
    }
    results = {}
    try:
        for name in names:
            d = os.path.join(args.models_dir, name)
            with open(os.path.join(d, "case.json")) as f:
                case = json.load(f)
            x = np.load(os.path.join(d, case["inputs"][0]["file"])).astype(np.float32)
            expected = np.load(os.path.join(d, case["outputs"][0]["file"])).astype(np.float32)
            r = results[name] = {"input_shape": list(x.shape)}
            print("[%s] input %s" % (name, list(x.shape)), file=sys.stderr, flush=True)
            if "ort" not in args.skip:
                try:
                    onnx_path, conv_s = convert_onnx(d, args.opset, args.reconvert,
                                                     os.path.join(workdir, name + ".tf2onnx.log"))
                    r["onnx"] = {"path": onnx_path, "convert_s": conv_s}
                    for t in (1, 2):
                        key = "ort_%dt" % t
                        try:
                            r[key] = bench_ort(onnx_path, x, expected, t, args.warmup, args.runs)
                        except Exception as e:  # noqa: BLE001
                            r[key] = {"error": str(e)}
                        print("[%s] %s %s" % (name, key, r[key]), file=sys.stderr, flush=True)
                except Exception as e:  # noqa: BLE001
                    r["ort_1t"] = r["ort_2t"] = {"error": str(e)}
                    print("[%s] onnx: %s" % (name, e), file=sys.stderr, flush=True)
            if "tf" not in args.skip:
                try:
                    r["tf_1t"] = bench_tf(d, x, expected, args.warmup, args.runs)
                except Exception as e:  # noqa: BLE001
                    r["tf_1t"] = {"error": str(e)}
                print("[%s] tf_1t %s" % (name, r["tf_1t"]), file=sys.stderr, flush=True)
            if tfjsc_bin:
                try:
                    r["tfjsc"] = bench_tfjsc(tfjsc_bin, name, d, args.runs, workdir,
                                             args.tfjsc_timeout)
                    o1 = r.get("ort_1t") or {}
                    if "error" not in o1 and o1.get("median_ms"):
                        r["tfjsc"]["ratio_vs_ort_1t_median"] = (r["tfjsc"]["median_ms"]
                                                                / o1["median_ms"])
                        r["tfjsc"]["ratio_vs_ort_1t_min"] = r["tfjsc"]["min_ms"] / o1["min_ms"]
                except Exception as e:  # noqa: BLE001
                    r["tfjsc"] = {"error": str(e)}
                print("[%s] tfjsc %s" % (name, r["tfjsc"]), file=sys.stderr, flush=True)
    finally:
        if not args.keep_libs:
            shutil.rmtree(workdir, ignore_errors=True)

    meta["loadavg_end"] = os.getloadavg()
    table = make_table(results, tfjsc_bin is not None)
    print(table)
    print()
    print("%d timed runs after %d warm-up runs, batch 1, float32; ms per inference. ORT: intra-op "
          "threads 1T/2T, inter-op 1, sequential. TF: tf.function, 1 intra-op thread. rel err = "
          "max|y-expected|/max|expected|. Load average %.2f -> %.2f on %d CPUs."
          % (args.runs, args.warmup, meta["loadavg_start"][0], meta["loadavg_end"][0],
             meta["cpu_count"]))
    for name, r in results.items():
        for k, v in r.items():
            if isinstance(v, dict) and "error" in v:
                print("- %s %s: %s" % (name, k, v["error"].splitlines()[0] if v["error"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "table": table}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()

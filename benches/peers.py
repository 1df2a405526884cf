#!/usr/bin/env python3
"""Peer benchmark: tfjsc against ONNX Runtime, LiteRT, OpenVINO and TensorFlow, 1 and 2 threads.

Run it through benches/run.sh, which builds the benches' own venv (pinned versions, see
benches/constraints.txt) and then calls this script with that venv's Python:

    TFJSC=/path/to/tfjsc benches/run.sh --write-results

Inputs: the directories written by `python tests/make_fixtures.py --full /work/models`, i.e. for
each model <models-dir>/<name>/{case.json, input_0.npy, expected_0.npy, model.json, shards,
saved_model/}. Every runtime gets the same input_0.npy and its output is checked against
expected_0.npy (TensorFlow's output of the SavedModel) as rel err = max|y - exp| / max|exp|;
more than 1e-3 is flagged in the table, and a flagged peer cannot be "best peer".

Runtimes (each one a class below with the same interface: `prepare(model_dir, threads) ->
runner`, `runner.run(x) -> y`; conversions are cached next to the model, --reconvert redoes them):
  * tfjsc: a copy of the binary taken at the start (so a rebuild during the run changes nothing),
    `tfjsc compile model.json -o lib.so` (into the work directory, once per model), output
    through `tfjsc run`, timing through `tfjsc bench --runs K --warmup W --input NAME=input_0.npy
    --json` (it reports median/p90/min, not single runs). Threads: `--threads N` to bench (and
    to run, if it takes it), only if `tfjsc bench --help` offers --threads; otherwise the
    2-thread cells say "n/a".
  * ORT: tf2onnx (opset 17) saved_model/ -> model.onnx; ONNX Runtime CPUExecutionProvider,
    ORT_ENABLE_ALL, sequential, inter-op 1, intra_op_num_threads = N.
  * LiteRT: tf.lite.TFLiteConverter.from_concrete_functions([serving_default], loaded
    SavedModel), float32, no optimizations -> model.tflite; ai_edge_litert Interpreter(model_path,
    num_threads=N), whose default op resolver applies the XNNPACK delegate (checked: the execution
    plan must hold a DELEGATE node, else the result is flagged). Not `from_saved_model`: with these
    Keras 3 SavedModels (a tf.Module holding the model) it leaves the variables unfrozen and writes
    a 190 KB flatbuffer that computes NaN.
  * OpenVINO: openvino.convert_model(the loaded SavedModel's serving_default function) (TF
    frontend; `convert_model(saved_model_dir)` fails here with "VarHandleOp: Cannot find requested
    variable"), saved as IR with compress_to_fp16=False -> openvino/saved_model/model.xml;
    --ov-source onnx converts model.onnx instead. compile_model(model, "CPU",
    {INFERENCE_NUM_THREADS: N, PERFORMANCE_HINT: LATENCY, NUM_STREAMS: 1,
    INFERENCE_PRECISION_HINT: f32}); the precision hint matters: on a CPU with AVX512_BF16,
    OpenVINO's default is bf16 (rel err ~3e-2 on MobileNetV2).
  * TF: tf.saved_model.load(saved_model).signatures["serving_default"] in a tf.function,
    intra-op parallelism N, inter-op 1.

Each (runtime, threads) pair lives in its own worker process (this script with --worker), so
thread-pool settings cannot leak between them (TensorFlow's are per process) and an idle runtime
sleeps on its pipe. The main process never runs two workers at once: per model it starts every
worker in turn (conversion, load, output check, --warmup untimed runs), then does --rounds rounds;
in each round every worker, in an order rotated by one each round, does --round-warmup untimed
and --runs/--rounds timed runs. Per round: median, p90, min of its runs; reported: the median
and the 90th percentile of the round medians (with one timed run per round, those of all
runs), and the min over all runs. tfjsc is timed the same way, one `tfjsc bench` per round.
Times are ms per inference, batch 1, float32.

Rounds: many short ones (60 by default, one timed run each), because on the shared VMs this
runs on, times come in windows of a few seconds. At 1 thread they are bimodal (session 20,
ResNet50 in 15 rounds of 4 runs: tfjsc's rounds at 45-54 or 66-70 ms, the in-cache
micro-kernel's at the same two speeds, OpenVINO's at 53-73), and with 15 rounds seconds apart
one runtime's median fell among its slow rounds and another's among its fast ones; 60 rounds of
one run give each runtime about the same share of each window. At 2 threads there is a second
kind of window: for seconds at a time, threads of one process that hand data to each other run
far slower, while two independent processes on the same two vCPUs do not slow at all (likely the
host placing the vCPUs apart; measured in one minute, EfficientNetB0 at 2 threads: LiteRT 6.6 ->
10.9 ms, tfjsc 5.7 -> 8.1 ms; a C test of two threads swapping 1 MB buffers 2x slower, the same
threads on private buffers unchanged). With 5 rounds, two or three of one runtime's rounds
landing in such windows moved its median. The JSON keeps every round.

Settling: before each runtime's round the harness waits (at most 1 s) until no thread of the
other runtimes' workers is running: thread pools spin for a while after a run, and a round that
starts beside a spinning pool loses a vCPU (measured: LiteRT's 2-thread rounds right after ORT's
took 5.8-7.9 ms on MobileNetV2 against 3.4-3.6 after its own 1-thread round). Each round's wait
is in the JSON (settle_s).

Peak: in each round of ResNet50 (--peak-models), before the runtimes, the harness runs the
`kernel_peak` example: in the first round it sweeps every tile shape (each one's best of 7 short
batches in cache on one core) and picks the three fastest; every round then times those three
in turn, as many runs each as a runtime has per round, every run doing ResNet50's GFLOP (as
`tfjsc bench --profile` counts them). The peak is the fastest tile's median run over all
rounds, and ResNet50's GFLOP/s at 1 thread over its median is reported as a share of it: runs
of one length, met by the same windows, compared by the same statistic. A slow window slows
the in-cache micro-kernel too (session 20: its median run as long as ResNet50's was 0.68x its
fastest, in 10 rounds interleaved with ResNet50), so a sweep's best of 7 short batches, a best
case, beside a network's median measures the host's windows as much as the network. That figure
(a sweep every tenth round, their median) and fastest run against fastest run are reported too.

Outputs: the markdown section on stdout; --json PATH (every number, per-round stats, raw times);
--write-results prepends the section to benches/RESULTS.md (newest first) and writes the chart
benches/ratios.png (--chart PATH elsewhere): per model, tfjsc's median over each peer's at 1 and
2 threads, with a line at 1.0.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BENCHES = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODELS = ["mobilenet_v2", "efficientnet_b0", "resnet50"]
THREADS = (1, 2)
ERR_LIMIT = 1e-3
# Longest wait, before a runtime's round, for the other runtimes' threads to stop running.
SETTLE_MAX_S = 1.0


def rel_err(y, expected):
    y = np.asarray(y, dtype=np.float64).reshape(expected.shape)
    denom = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(y - expected))) / denom


def round_stats(times_ms):
    a = np.asarray(times_ms, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "runs": int(a.size)}


def is_stale(artifact, source):
    return not os.path.exists(artifact) or os.path.getmtime(artifact) < os.path.getmtime(source)


def saved_model_pb(model_dir):
    return os.path.join(model_dir, "saved_model", "saved_model.pb")


_TF = None


def tf_module(threads=None):
    """Import TensorFlow once; threads (intra-op, with inter-op 1) must be set before any TF op."""
    global _TF
    if _TF is None:
        import tensorflow as tf
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        _TF = tf
    return _TF


def load_signature(model_dir):
    tf = tf_module()
    loaded = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    return loaded, loaded.signatures["serving_default"]


# ------------------------------------------------------------------------------------ peers ---
#
# A peer: name, label, version(), prepare(model_dir, threads) -> runner. A runner: run(x) -> y
# (one inference on a float32 array, output as numpy), info (a dict for the report), and
# optionally time_round(runs, warmup) -> round stats, for runtimes timed outside this process.


class Runner:
    def __init__(self, fn, info=None):
        self.run = fn
        self.info = info or {}


class TfjscPeer:
    name, label = "tfjsc", "tfjsc"

    def __init__(self, opts):
        self.binary = opts["tfjsc"]
        self.workdir = opts["workdir"]
        self.timeout = opts.get("tfjsc_timeout", 3600.0)
        self.count_gflop = opts.get("count_gflop", False)

    def _cmd(self, args):
        p = subprocess.run([self.binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=self.timeout)
        if p.returncode != 0:
            text = (p.stderr or p.stdout).strip()
            lines = text.splitlines()
            panic = [i for i, ln in enumerate(lines) if " panicked at " in ln]
            if panic:  # the panic message, not the backtrace
                text = " ".join(lines[panic[0]:panic[0] + 2]) + " (%s)" % lines[-1]
            raise RuntimeError("tfjsc %s failed (exit %d): %s"
                               % (args[0], p.returncode, text[-2000:]))
        return p.stdout

    def version(self):
        return self._cmd(["--version"]).strip().replace("tfjsc ", "", 1)

    def threads_flag(self):
        return "--threads" in self._cmd(["bench", "--help"])

    def prepare(self, model_dir, threads):
        name = os.path.basename(os.path.normpath(model_dir))
        has_threads = self.threads_flag()
        if threads != 1 and not has_threads:
            raise NotAvailable("tfjsc bench has no --threads")
        lib = os.path.join(self.workdir, "lib%s.so" % name)
        info = {}
        if threads == THREADS[0] or not os.path.exists(lib):  # once per model, 1-thread worker
            t0 = time.perf_counter()
            self._cmd(["compile", os.path.join(model_dir, "model.json"), "-o", lib])
            info["compile_s"] = time.perf_counter() - t0
        info["lib_bytes"] = os.path.getsize(lib)
        with open(os.path.join(model_dir, "case.json")) as f:
            case = json.load(f)
        in_name = case["inputs"][0]["name"]
        input_file = os.path.join(model_dir, case["inputs"][0]["file"])
        thread_args = ["--threads", str(threads)] if has_threads else []
        if self.count_gflop and threads == THREADS[0]:
            # The model's arithmetic as tfjsc counts it (direct convolution, 2 per multiply-add):
            # the numerator of its GFLOP/s beside the micro-kernel peak.
            profile = json.loads(self._cmd(["bench", lib, "--runs", "1", "--warmup", "0",
                                            "--profile", "--json"]).strip().splitlines()[-1])
            info["gflop"] = sum(s.get("flops") or 0 for s in profile["profile"]["steps"]) / 1e9
        out_dir = os.path.join(self.workdir, "%s_%dt_outputs" % (name, threads))

        def run(x):
            xf = os.path.join(self.workdir, "%s_input.npy" % name)
            np.save(xf, x)
            run_threads = thread_args if "--threads" in self._cmd(["run", "--help"]) else []
            self._cmd(["run", lib, "--input", "%s=%s" % (in_name, xf), "--out", out_dir]
                      + run_threads)
            with open(os.path.join(out_dir, "outputs.json")) as f:
                listing = json.load(f)
            return np.load(os.path.join(out_dir, listing[0]["file"]))

        runner = Runner(run, info)

        def time_round(runs, warmup):
            res = json.loads(self._cmd(["bench", lib, "--runs", str(runs), "--warmup", str(warmup),
                                        "--input", "%s=%s" % (in_name, input_file), "--json"]
                                       + thread_args).strip().splitlines()[-1])
            if res.get("threads", threads) != threads:
                raise RuntimeError("tfjsc bench ran %s threads, wanted %d" % (res["threads"],
                                                                              threads))
            info["load_ms"] = res.get("load_ms")
            return {k: res[k] for k in ("median_ms", "p90_ms", "min_ms", "runs")}

        runner.time_round = time_round
        return runner


class OrtPeer:
    name, label = "ort", "ONNX Runtime"

    def __init__(self, opts):
        self.opset = opts.get("opset", 17)
        self.reconvert = opts.get("reconvert", False)

    def version(self):
        import onnxruntime
        import tf2onnx
        return "onnxruntime %s (tf2onnx %s)" % (onnxruntime.__version__, tf2onnx.__version__)

    def convert(self, model_dir, info):
        onnx_path = os.path.join(model_dir, "model.onnx")
        if self.reconvert or is_stale(onnx_path, saved_model_pb(model_dir)):
            cmd = [sys.executable, "-m", "tf2onnx.convert",
                   "--saved-model", os.path.join(model_dir, "saved_model"),
                   "--signature_def", "serving_default", "--tag", "serve",
                   "--opset", str(self.opset), "--output", onnx_path + ".tmp"]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                raise RuntimeError("tf2onnx failed (exit %d): %s" % (p.returncode,
                                                                    p.stdout[-2000:]))
            os.replace(onnx_path + ".tmp", onnx_path)
            info["convert_s"] = time.perf_counter() - t0
        return onnx_path

    def prepare(self, model_dir, threads):
        import onnxruntime as ort
        info = {}
        onnx_path = self.convert(model_dir, info)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        inputs = sess.get_inputs()
        assert len(inputs) == 1, [i.name for i in inputs]
        in_name, out_name = inputs[0].name, sess.get_outputs()[0].name
        return Runner(lambda x: sess.run([out_name], {in_name: x})[0], info)


class LiteRtPeer:
    name, label = "litert", "LiteRT"

    def __init__(self, opts):
        self.reconvert = opts.get("reconvert", False)

    def version(self):
        from importlib.metadata import version
        return "ai-edge-litert %s (XNNPACK)" % version("ai-edge-litert")

    def convert(self, model_dir, info):
        path = os.path.join(model_dir, "model.tflite")
        if self.reconvert or is_stale(path, saved_model_pb(model_dir)):
            t0 = time.perf_counter()
            tf = tf_module()
            loaded, sig = load_signature(model_dir)
            # float32: no converter.optimizations, no representative dataset.
            conv = tf.lite.TFLiteConverter.from_concrete_functions([sig], loaded)
            flatbuffer = conv.convert()
            with open(path + ".tmp", "wb") as f:
                f.write(flatbuffer)
            os.replace(path + ".tmp", path)
            info["convert_s"] = time.perf_counter() - t0
        return path

    def prepare(self, model_dir, threads):
        info = {}
        path = self.convert(model_dir, info)
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_path=path, num_threads=threads)
        it.allocate_tensors()
        plan = it._get_ops_details()  # pylint: disable=protected-access
        info["xnnpack_delegate_nodes"] = sum(1 for op in plan if op["op_name"] == "DELEGATE")
        if not info["xnnpack_delegate_nodes"]:
            info["warning"] = "no XNNPACK delegate node in the execution plan"
        (inp,), out = it.get_input_details(), it.get_output_details()
        i_in, i_out = inp["index"], out[0]["index"]

        def run(x):
            it.set_tensor(i_in, x)
            it.invoke()
            return it.get_tensor(i_out)

        return Runner(run, info)


class OpenVinoPeer:
    name, label = "openvino", "OpenVINO"

    def __init__(self, opts):
        self.reconvert = opts.get("reconvert", False)
        self.source = opts.get("ov_source", "saved_model")
        self.ort = OrtPeer(opts)

    def version(self):
        import openvino
        return "openvino %s" % openvino.__version__.split("-")[0]

    def convert(self, model_dir, info):
        import openvino as ov
        xml = os.path.join(model_dir, "openvino", self.source, "model.xml")
        if self.reconvert or is_stale(xml, saved_model_pb(model_dir)):
            t0 = time.perf_counter()
            if self.source == "onnx":
                model = ov.convert_model(self.ort.convert(model_dir, {}))
            else:
                _, sig = load_signature(model_dir)
                model = ov.convert_model(sig)
            os.makedirs(os.path.dirname(xml), exist_ok=True)
            ov.save_model(model, xml, compress_to_fp16=False)  # the default would halve weights
            info["convert_s"] = time.perf_counter() - t0
        info["source"] = self.source
        return xml

    def prepare(self, model_dir, threads):
        import openvino as ov
        info = {}
        xml = self.convert(model_dir, info)
        core = ov.Core()
        compiled = core.compile_model(core.read_model(xml), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        info["precision"] = getattr(precision, "get_type_name", lambda: str(precision))()
        if "f32" not in info["precision"]:
            info["warning"] = "OpenVINO compiled with precision %s" % info["precision"]
        info["threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        request = compiled.create_infer_request()
        out = compiled.outputs[0]
        return Runner(lambda x: request.infer([x])[out], info)


class TfPeer:
    name, label = "tf", "TensorFlow"

    def __init__(self, opts):
        pass

    def version(self):
        return "tensorflow %s" % tf_module().__version__

    def prepare(self, model_dir, threads):
        tf = tf_module(threads)
        loaded, sig = load_signature(model_dir)
        arg = list(sig.structured_input_signature[1].keys())[0]
        out_key = sorted(sig.structured_outputs.keys())[0]
        fn = tf.function(lambda t: sig(**{arg: t})[out_key])
        runner = Runner(lambda x: fn(tf.constant(x)).numpy())
        runner.loaded = loaded  # the signature does not keep the variables alive
        return runner


PEERS = {p.name: p for p in (TfjscPeer, OrtPeer, LiteRtPeer, OpenVinoPeer, TfPeer)}


class NotAvailable(Exception):
    """This runtime cannot run this configuration at all (reported as n/a, not as a failure)."""


# ----------------------------------------------------------------------------------- worker ---

def worker_main(spec):
    """One runtime at one thread count on one model; JSON lines on the original stdout.

    Replies to the start with {"ok", "rel_err", "prepare_s", "version", "info"} (or "error" /
    "na"), then to each {"runs", "warmup"} with round stats (+ "times_ms"), until {"quit"}.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter on stdout must not corrupt the protocol

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")

    try:
        if spec["peer"] == "tf":
            tf_module(spec["threads"])  # before anything else touches TensorFlow
        peer = PEERS[spec["peer"]](spec)
        version = peer.version()
        model_dir = spec["model_dir"]
        with open(os.path.join(model_dir, "case.json")) as f:
            case = json.load(f)
        x = np.load(os.path.join(model_dir, case["inputs"][0]["file"])).astype(np.float32)
        expected = np.load(os.path.join(model_dir, case["outputs"][0]["file"])).astype(np.float32)
        t0 = time.perf_counter()
        runner = peer.prepare(model_dir, spec["threads"])
        prepare_s = time.perf_counter() - t0
        err = rel_err(runner.run(x), expected)
        if not hasattr(runner, "time_round"):
            for _ in range(spec["warmup"]):
                runner.run(x)
        reply({"ok": True, "rel_err": err, "prepare_s": prepare_s, "version": version,
               "info": runner.info})
    except NotAvailable as e:
        reply({"na": str(e)})
        return
    except Exception as e:  # noqa: BLE001
        reply({"error": "%s: %s" % (type(e).__name__, e)})
        return
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        try:
            if hasattr(runner, "time_round"):
                reply(runner.time_round(req["runs"], req["warmup"]))
                continue
            for _ in range(req["warmup"]):
                runner.run(x)
            times = []
            for _ in range(req["runs"]):
                t0 = time.perf_counter()
                runner.run(x)
                times.append((time.perf_counter() - t0) * 1000.0)
            st = round_stats(times)
            st["times_ms"] = times
            reply(st)
        except Exception as e:  # noqa: BLE001
            reply({"error": "%s: %s" % (type(e).__name__, e)})


def running_threads(pids):
    """Threads of these processes that are running right now (state R in
    /proc/PID/task/TID/stat); processes that are gone count for nothing. real_models.py waits
    for quiet with it too."""
    count = 0
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    st = f.read()
            except OSError:
                continue
            if st[st.rindex(")") + 2:][:1] == "R":
                count += 1
    return count


def settle(pids, max_s=SETTLE_MAX_S):
    """Wait until no thread of the other runtimes' workers runs (three looks 5 ms apart), at
    most max_s; returns the seconds waited."""
    t0, quiet = time.perf_counter(), 0
    while quiet < 3 and time.perf_counter() - t0 < max_s:
        quiet = quiet + 1 if running_threads(pids) == 0 else 0
        time.sleep(0.005)
    return time.perf_counter() - t0


class Worker:
    def __init__(self, spec, log_path):
        self.spec = spec
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)

    def ask(self, obj=None):
        if obj is not None:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            with open(self.log_path) as f:
                tail = f.read()[-1500:]
            return {"error": "worker exited (%s); log %s:\n%s" % (self.proc.returncode,
                                                                 self.log_path, tail)}
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------- orchestration ---

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def bench_model(name, model_dir, peers, args, opts):
    """All (peer, threads) workers for one model, round-robin; returns {key: result}."""
    results, workers = {}, {}
    peak = opts.get("kernel_peak") if name in args.peak_models else None
    try:
        for peer in peers:
            for t in THREADS:
                key = "%s_%dt" % (peer, t)
                spec = dict(opts, peer=peer, threads=t, model_dir=model_dir, warmup=args.warmup,
                            count_gflop=bool(peak))
                w = Worker(spec, os.path.join(opts["workdir"], "%s_%s.log" % (name, key)))
                t0 = time.perf_counter()
                r = w.ask()
                r["start_s"] = time.perf_counter() - t0
                results[key] = r
                if r.get("ok"):
                    workers[key] = w
                    flag = "  <-- REL ERR > %g" % ERR_LIMIT if r["rel_err"] > ERR_LIMIT else ""
                    log("[%s] %-12s ready in %.1f s, rel err %.1e %s%s"
                        % (name, key, r["start_s"], r["rel_err"], r["info"], flag))
                else:
                    w.close()
                    log("[%s] %-12s %s" % (name, key, "n/a: " + r["na"] if "na" in r
                                           else "FAILED: " + r["error"]))
        per_round = max(1, args.runs // args.rounds)
        keys = list(workers)
        for rnd in range(args.rounds):
            if peak:
                settle([w.proc.pid for w in workers.values()])
                gflop = (results.get("tfjsc_1t", {}).get("info") or {}).get("gflop")
                samples = results.setdefault("peak", {"samples": []})["samples"]
                # The first round's sweep picks the tiles every round times; every tenth
                # round sweeps again, for the sweep's own figure.
                tiles = [t["tile"] for t in samples[0]["series"]] if samples else []
                samples.append(kernel_peak(peak, per_round, gflop, tiles,
                                           sweep=rnd % 10 == 0 or not tiles))
            order = keys[rnd % len(keys):] + keys[:rnd % len(keys)] if keys else []
            for key in order:
                others = [w.proc.pid for k, w in workers.items() if k != key]
                waited = settle(others)
                st = workers[key].ask({"runs": per_round, "warmup": args.round_warmup})
                st["settle_s"] = waited
                if "error" in st:
                    results[key] = {"error": st["error"]}
                    workers.pop(key).close()
                    keys.remove(key)
                    log("[%s] %s FAILED in round %d: %s" % (name, key, rnd, st["error"]))
                    continue
                results[key].setdefault("rounds", []).append(st)
            log("[%s] round %d/%d done, load %.2f" % (name, rnd + 1, args.rounds,
                                                      os.getloadavg()[0]))
    finally:
        for w in workers.values():
            w.close()
    if results.get("peak"):
        samples = results["peak"]["samples"]
        swept = [r for r in samples if "gflops" in r]
        results["peak"].update(median_gflops=float(np.median([r["gflops"] for r in swept])),
                               best=max(swept, key=lambda r: r["gflops"]), sweeps=len(swept))
        tiles = {}
        for t in (t for r in samples for t in r["series"]):
            tiles.setdefault(t["shape"], {"gflop": t["gflop"], "ms": []})["ms"] += t["ms"]
        if tiles:
            # The peak is the fastest tile's median run over all rounds, as a runtime's median
            # is over all its rounds.
            results["peak"]["series_median_gflops"] = max(
                t["gflop"] / np.median(t["ms"]) * 1e3 for t in tiles.values())
            results["peak"]["series_best"] = max(
                ({"gflops": t["gflop"] / min(t["ms"]) * 1e3, "shape": shape}
                 for shape, t in tiles.items()), key=lambda r: r["gflops"])
    for r in results.values():
        if r.get("rounds"):
            rounds = r["rounds"]
            r["median_ms"] = float(np.median([s["median_ms"] for s in rounds]))
            r["p90_ms"] = float(np.percentile([s["median_ms"] for s in rounds], 90))
            r["min_ms"] = float(min(s["min_ms"] for s in rounds))
            r["runs"] = int(sum(s["runs"] for s in rounds))
    return results


def kernel_peak(binary, runs, gflop, tiles, sweep):
    """One run of the `kernel_peak` example: with `sweep`, the sweep's best tile (each tile's
    best of 7 batches, in cache, one core) with its GFLOP/s; when the network's GFLOP are
    known, `runs` runs of that many GFLOP on each of `tiles` ("avx512:9x48:512", from an
    earlier sweep), or else on the sweep's three fastest (`series`)."""
    cmd = [binary, "--json"]
    if gflop:
        cmd += ["--runs", str(runs), "--run-gflop", str(gflop)]
        cmd += [arg for tile in tiles for arg in ("--tile", tile)]
        if tiles and not sweep:
            cmd.append("--no-sweep")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600)
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (binary, p.returncode, p.stderr[-500:]))
    out = json.loads(p.stdout)

    def shape(t):
        return "%s %dx%d depth %d" % (t["isa"], t["rows"], t["columns"], t["depth"])
    sample = {"series": [{"shape": shape(t), "gflop": t["gflop"], "ms": t["ms"],
                          "tile": "%s:%dx%d:%d" % (t["isa"].lower(), t["rows"], t["columns"],
                                                   t["depth"])}
                         for t in out["runs"]]}
    if out["tiles"]:
        best = max(out["tiles"], key=lambda t: t["gflops"])
        sample.update(gflops=best["gflops"], shape=shape(best))
    return sample


def peak_share(res):
    """tfjsc's GFLOP/s at 1 thread (the model's GFLOP over its median) and its share of the
    micro-kernel peak measured in the same rounds, or None. `share` compares medians of runs
    of the same length (the micro-kernel's series); `share_of_min` compares tfjsc's fastest
    run with the series' fastest; `share_of_sweep` compares tfjsc's median with the sweep's
    best of 7 batches (median over the sweeps), a best case against a median."""
    j, peak = res.get("tfjsc_1t"), res.get("peak")
    if not (ok(j) and peak and (j.get("info") or {}).get("gflop")):
        return None
    gflop = j["info"]["gflop"]
    gflops = gflop / j["median_ms"] * 1e3
    share = {"gflop": gflop, "gflops": gflops, "sweep_median": peak["median_gflops"],
             "sweep_max": peak["best"]["gflops"], "sweep_tile": peak["best"]["shape"],
             "sweeps": peak["sweeps"], "share_of_sweep": gflops / peak["median_gflops"]}
    if "series_median_gflops" in peak:
        min_gflops = gflop / j["min_ms"] * 1e3
        share.update(series_median=peak["series_median_gflops"],
                     series_max=peak["series_best"]["gflops"],
                     series_tile=peak["series_best"]["shape"],
                     share=gflops / peak["series_median_gflops"],
                     share_of_min=min_gflops / peak["series_best"]["gflops"])
    return share


def ok(r):
    return bool(r and r.get("ok") and "median_ms" in r)


def add_ratios(results, peers):
    """Per model and thread count: the best peer (fastest median with rel err <= limit) and
    tfjsc's median over it and over each peer."""
    for name, res in results.items():
        summary = res.setdefault("summary", {})
        for t in THREADS:
            cands = [(res[k]["median_ms"], p) for p in peers if p != "tfjsc"
                     for k in ["%s_%dt" % (p, t)] if ok(res.get(k))
                     and res[k]["rel_err"] <= ERR_LIMIT]
            s = summary["%dt" % t] = {}
            if cands:
                s["best_peer"] = min(cands)[1]
                s["best_ms"] = min(cands)[0]
            j = res.get("tfjsc_%dt" % t)
            s["tfjsc_available"] = ok(j)
            j1 = res.get("tfjsc_1t")
            # Without tfjsc at t threads, the chart compares tfjsc at 1 thread (labelled so).
            j = j if ok(j) else j1
            if not ok(j):
                continue
            s["ratios"] = {p: j["median_ms"] / res["%s_%dt" % (p, t)]["median_ms"]
                           for p in peers if p != "tfjsc" and ok(res.get("%s_%dt" % (p, t)))}
            if cands:
                s["ratio_best"] = j["median_ms"] / s["best_ms"]


# ------------------------------------------------------------------------------ machine info ---

SIMD_FLAGS = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx_vnni_int8", "avx_ne_convert",
              "amx_tile", "amx_bf16", "amx_int8"]


def machine_info():
    info = {"host": platform.node(), "arch": platform.machine(), "kernel": platform.release(),
            "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        first = text.split("\n\n")[0]
        fields = dict((k.strip(), v.strip()) for k, _, v in
                      (line.partition(":") for line in first.splitlines()) if k.strip())
        flags = fields.get("flags", "").split()
        info["cpu_model"] = fields.get("model name", "?")
        info["cpu_family_model"] = "family %s model %s stepping %s" % (
            fields.get("cpu family", "?"), fields.get("model", "?"), fields.get("stepping", "?"))
        info["cpu_features"] = [f for f in SIMD_FLAGS if f in flags] + sorted(
            f for f in flags if f.startswith("avx512"))
        info["cpu_mhz"] = fields.get("cpu MHz")
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
        info["mem_gib"] = round(kb / 1048576.0, 1)
    except (OSError, AttributeError):
        pass
    return info


def tfjsc_provenance(binary):
    """The binary's path, mtime, and the commit of the checkout it sits in (if any)."""
    out = {"path": binary, "mtime": datetime.datetime.fromtimestamp(
        os.path.getmtime(binary)).isoformat(timespec="seconds")}
    repo = os.path.dirname(os.path.dirname(os.path.dirname(binary)))  # <repo>/target/release/
    try:
        rev = subprocess.run(["git", "-C", repo, "log", "-1", "--format=%h %ct"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "compiler",
                                "runtime"], text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        commit, ctime = rev.stdout.split()
        out["commit"] = commit
        out["commit_time"] = datetime.datetime.fromtimestamp(int(ctime)).isoformat(
            timespec="seconds")
        # The checkout's state now, not necessarily what the binary was built from.
        out["dirty"] = bool(dirty.stdout.strip())
        out["binary_older_than_commit"] = os.path.getmtime(binary) < int(ctime)
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return out


# ------------------------------------------------------------------------------------ report ---

def fmt_cell(r):
    if r is None:
        return "-"
    if "na" in r:
        return "n/a"
    if not ok(r):
        return "**FAIL**"
    return "%.2f / %.2f / %.2f" % (r["median_ms"], r["p90_ms"], r["min_ms"])


def fmt_err(r):
    if not r or "rel_err" not in r:
        return "-"
    e = r["rel_err"]
    return "**%.1e ⚠ > %g**" % (e, ERR_LIMIT) if e > ERR_LIMIT else "%.1e" % e


def pretty_model(name):
    return {"mobilenet_v2": "MobileNetV2", "efficientnet_b0": "EfficientNetB0",
            "resnet50": "ResNet50"}.get(name, name)


def make_section(meta, results, peers, chart_rel):
    labels = {p: PEERS[p].label for p in peers}
    m = meta["machine"]
    lines = ["## %s — tfjsc vs ONNX Runtime, LiteRT, OpenVINO, TensorFlow at 1 and 2 threads"
             % meta["date"], ""]
    lines.append("Machine: %s (%s), %d CPUs, %s GiB, Linux %s. CPU features: %s. Load average "
                 "%.2f at the start, %.2f at the end (1 min)."
                 % (m.get("cpu_model"), m.get("cpu_family_model"), m["cpus"], m.get("mem_gib"),
                    m["kernel"], " ".join(m.get("cpu_features", [])) or "?",
                    meta["loadavg_start"][0], meta["loadavg_end"][0]))
    lines.append("")
    tj = meta.get("tfjsc") or {}
    if tj.get("commit"):
        where = "binary built %s; its checkout at %s, committed %s%s%s" % (
            tj["mtime"], tj["commit"], tj["commit_time"],
            ", with uncommitted changes in compiler/ or runtime/" if tj.get("dirty") else "",
            ", after the build" if tj.get("binary_older_than_commit") else "")
    else:
        where = "%s, built %s" % (tj.get("path", "?"), tj.get("mtime", "?"))
    lines.append("Versions: tfjsc %s (%s); %s. Python %s. Wall time %.0f s."
                 % (meta["versions"].get("tfjsc", "?"), where,
                    "; ".join(v for k, v in meta["versions"].items() if k != "tfjsc"),
                    m["python"], meta["wall_s"]))
    lines.append("")
    lines.append("`%s`: %d timed runs per runtime and thread count in %d round-robin rounds "
                 "(each round: %d warm-up + %d timed runs per runtime, order rotated, started "
                 "once no thread of the other runtimes runs), after "
                 "%d warm-up runs; batch 1, float32. Cells: ms median / p90 / min (median and "
                 "90th percentile of the rounds' medians; min of all runs). rel err = "
                 "max|y − TF| / max|TF| on the same input (tfjsc's through `tfjsc run`)."
                 % (meta["command"], meta["runs_per_round"] * meta["rounds"], meta["rounds"],
                    meta["round_warmup"], meta["runs_per_round"], meta["warmup"]))
    lines.append("")
    hdr = ["model", "runtime", "1 thread", "2 threads", "rel err 1T / 2T"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for name, res in results.items():
        for i, p in enumerate(peers):
            r1, r2 = res.get(p + "_1t"), res.get(p + "_2t")
            lbl = "**%s**" % labels[p] if p == "tfjsc" else labels[p]
            lines.append("| %s | %s | %s | %s | %s / %s |" % (
                pretty_model(name) if i == 0 else "", lbl, fmt_cell(r1), fmt_cell(r2),
                fmt_err(r1), fmt_err(r2)))
    lines.append("")
    hdr = ["model", "best peer 1T", "tfjsc / best 1T", "best peer 2T", "tfjsc / best 2T"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for name, res in results.items():
        row = [pretty_model(name)]
        for t in THREADS:
            s = res["summary"]["%dt" % t]
            best = ("%s (%.2f ms)" % (labels[s["best_peer"]], s["best_ms"])
                    if "best_peer" in s else "-")
            if "ratio_best" not in s:
                ratio = "-"
            elif s["tfjsc_available"]:
                ratio = "**%.2f**" % s["ratio_best"]
            else:
                ratio = "n/a (tfjsc 1T / best 2T: %.2f)" % s["ratio_best"]
            row += [best, ratio]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for name, res in results.items():
        share = peak_share(res)
        if share and "share" in share:
            lines.append(
                "%s at 1 thread: %.3f GFLOP (tfjsc's count, direct convolution) in %.2f ms = "
                "%.1f GFLOP/s, **%.0f %%** of the micro-kernel's peak in the same rounds, %.1f "
                "GFLOP/s: the fastest tile's median `kernel_peak` run of %.3f GFLOP (the first "
                "round's sweep picks its three fastest tiles; every round runs each %d time(s) "
                "before the runtimes). Fastest run against fastest run: %.0f %% (%.1f GFLOP/s, "
                "%s). Against the sweep's best of 7 short batches (median of %d sweeps, one every "
                "ten rounds, %.1f GFLOP/s; best %.1f, %s), a best case beside a median: %.0f %%."
                % (pretty_model(name), share["gflop"], res["tfjsc_1t"]["median_ms"],
                   share["gflops"], 100 * share["share"], share["series_median"], share["gflop"],
                   meta["runs_per_round"],
                   100 * share["share_of_min"], share["series_max"], share["series_tile"],
                   share["sweeps"], share["sweep_median"], share["sweep_max"],
                   share["sweep_tile"], 100 * share["share_of_sweep"]))
            lines.append("")
        elif share:
            lines.append("%s at 1 thread: %.3f GFLOP (tfjsc's count, direct convolution) in %.2f ms "
                         "= %.1f GFLOP/s, %.0f %% of the micro-kernel sweep's best of 7 batches "
                         "(median of %d sweeps %.1f GFLOP/s; best %.1f, %s)."
                         % (pretty_model(name), share["gflop"], res["tfjsc_1t"]["median_ms"],
                            share["gflops"], 100 * share["share_of_sweep"], share["sweeps"],
                            share["sweep_median"], share["sweep_max"], share["sweep_tile"]))
            lines.append("")
    notes, na = [], {}
    for name, res in results.items():
        for key, r in res.items():
            if not isinstance(r, dict) or key in ("summary", "peak"):
                continue
            if "error" in r:
                lines_ = [ln.strip() for ln in r["error"].strip().splitlines() if ln.strip()]
                msg = lines_[0] if len(lines_) == 1 else "%s … %s" % (lines_[0], lines_[-1])
                notes.append("- **%s %s failed**: %s" % (pretty_model(name), key, msg[:400]))
            elif "na" in r:  # the same reason for every model: said once
                na.setdefault((key, r["na"]), []).append(pretty_model(name))
            elif r.get("rel_err", 0) > ERR_LIMIT:
                notes.append("- **%s %s: rel err %.1e > %g: wrong output, excluded from best "
                             "peer.**" % (pretty_model(name), key, r["rel_err"], ERR_LIMIT))
            if (r.get("info") or {}).get("warning"):
                notes.append("- **%s %s: %s.**" % (pretty_model(name), key, r["info"]["warning"]))
    notes += ["- %s: n/a for %s (%s)." % (key, ", ".join(models), reason)
              for (key, reason), models in na.items()]

    def infos(key, fmt):
        out = []
        for res in results.values():
            i = (res.get(key) or {}).get("info") or {}
            try:
                out.append(fmt(i))
            except (KeyError, TypeError):
                out.append("?")
        return ", ".join(out)

    notes.append("- Conversions (cached next to each model): ONNX by tf2onnx (opset %d); TFLite by "
                 "`TFLiteConverter.from_concrete_functions` on the loaded SavedModel, float32; "
                 "OpenVINO IR by `openvino.convert_model` from the %s, f32 weights, compiled "
                 "with INFERENCE_PRECISION_HINT f32 (got: %s). LiteRT's XNNPACK delegate nodes "
                 "per model: %s. tfjsc compile s / library KB: %s."
                 % (meta["opset"],
                    "ONNX file" if meta["ov_source"] == "onnx" else "SavedModel's serving_default "
                    "function (TF frontend)",
                    infos("openvino_1t", lambda i: i["precision"]),
                    infos("litert_1t", lambda i: str(i["xnnpack_delegate_nodes"])),
                    infos("tfjsc_1t", lambda i: "%.2f / %.0f" % (i["compile_s"],
                                                                  i["lib_bytes"] / 1024.0))))
    lines += notes
    if chart_rel:
        lines += ["", "![tfjsc / peer median latency](%s)" % chart_rel]
    return "\n".join(lines) + "\n"


def make_chart(results, peers, path, note=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    others = [p for p in peers if p != "tfjsc"]
    names = list(results)
    colors = {"ort": "#4C72B0", "litert": "#55A868", "openvino": "#8172B2", "tf": "#DD8452"}
    fig, axes = plt.subplots(1, len(THREADS), figsize=(12, 4.8), sharey=True)
    width = 0.8 / max(1, len(others))
    ymax = 1.2
    for ax, t in zip(axes, THREADS):
        same = all(results[n]["summary"]["%dt" % t]["tfjsc_available"] for n in names)
        for i, p in enumerate(others):
            xs, ys = [], []
            for j, n in enumerate(names):
                v = results[n]["summary"]["%dt" % t].get("ratios", {}).get(p)
                if v is not None:
                    xs.append(j + (i - (len(others) - 1) / 2.0) * width)
                    ys.append(v)
                    ymax = max(ymax, v * 1.15)
            bars = ax.bar(xs, ys, width * 0.92, label=PEERS[p].label, color=colors.get(p),
                          hatch=None if same else "//", edgecolor="white" if same else "black",
                          linewidth=0.5)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([pretty_model(n) for n in names])
        ax.set_title("%d thread%s" % (t, "s" if t > 1 else "") if same else
                     "%d threads (tfjsc has no --threads yet:\ntfjsc at 1 thread / peer at %d)"
                     % (t, t), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("tfjsc median / peer median\n(< 1: tfjsc faster)")
    axes[0].set_ylim(0, ymax)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("tfjsc latency relative to each peer (batch 1, float32)" + note, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(section, path):
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    i = text.find("\n## ")
    head, rest = (text[:i + 1], text[i + 1:]) if i >= 0 else (text.rstrip("\n") + "\n\n", "")
    with open(path, "w") as f:
        f.write(head + section + ("\n" + rest if rest else ""))


# -------------------------------------------------------------------------------------- main ---

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default="/work/models")
    ap.add_argument("--models", nargs="*", default=None,
                    help="model names (default: %s, those present)" % " ".join(DEFAULT_MODELS))
    ap.add_argument("--runs", type=int, default=60, help="timed runs per runtime x threads")
    ap.add_argument("--rounds", type=int, default=60, help="round-robin rounds the runs are "
                    "split into (default 60: see 'Rounds' above)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs after loading")
    ap.add_argument("--round-warmup", type=int, default=2, help="untimed runs at the start of "
                    "each round (absorbs the switch from the previous runtime)")
    ap.add_argument("--tfjsc", metavar="BIN", help="the tfjsc binary (default $TFJSC, else "
                    "target/release/tfjsc of this checkout)")
    ap.add_argument("--tfjsc-timeout", type=float, default=3600.0, help="seconds per command")
    ap.add_argument("--kernel-peak", metavar="BIN", help="the kernel_peak example, run once per "
                    "round of the --peak-models (default $KERNEL_PEAK, else examples/kernel_peak "
                    "beside the tfjsc binary, if present)")
    ap.add_argument("--peak-models", nargs="*", default=["resnet50"],
                    help="models whose rounds also measure the micro-kernel peak")
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS),
                    help="runtimes to run (default: all)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--ov-source", choices=["saved_model", "onnx"], default="saved_model",
                    help="what openvino.convert_model reads (default: the SavedModel)")
    ap.add_argument("--reconvert", action="store_true", help="redo the ONNX/TFLite/OpenVINO "
                    "conversions even if cached")
    ap.add_argument("--workdir", help="tfjsc libraries, worker logs (default: a temporary "
                    "directory, removed afterwards)")
    ap.add_argument("--json", metavar="PATH", help="write every number as JSON to PATH")
    ap.add_argument("--write-results", action="store_true", help="prepend the section to "
                    "benches/RESULTS.md and write the chart to benches/ratios.png")
    ap.add_argument("--chart", metavar="PATH", help="write the chart here (default with "
                    "--write-results: benches/ratios.png)")
    ap.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return

    t_start = time.time()
    loadavg_start = os.getloadavg()
    names = args.models or [n for n in DEFAULT_MODELS
                            if os.path.exists(os.path.join(args.models_dir, n, "case.json"))]
    if not names:
        sys.exit("no models in %s (run tests/make_fixtures.py --full %s)"
                 % (args.models_dir, args.models_dir))
    peers = [p for p in PEERS if p in args.peers]
    tfjsc_bin = None
    if "tfjsc" in peers:
        tfjsc_bin = args.tfjsc or os.environ.get("TFJSC") or os.path.join(
            os.path.dirname(BENCHES), "target", "release", "tfjsc")
        tfjsc_bin = shutil.which(tfjsc_bin) or os.path.abspath(tfjsc_bin)
        if not (os.path.isfile(tfjsc_bin) and os.access(tfjsc_bin, os.X_OK)):
            sys.exit("tfjsc binary %s: not an executable file (--tfjsc or $TFJSC)" % tfjsc_bin)
    peak_bin = args.kernel_peak or os.environ.get("KERNEL_PEAK") or (
        os.path.join(os.path.dirname(tfjsc_bin), "examples", "kernel_peak") if tfjsc_bin else None)
    if peak_bin and not os.access(peak_bin, os.X_OK):
        if args.kernel_peak or os.environ.get("KERNEL_PEAK"):
            sys.exit("kernel_peak %s: not an executable file" % peak_bin)
        log("no %s: the micro-kernel peak is not measured" % peak_bin)
        peak_bin = None
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfjsc_peers_")
    os.makedirs(workdir, exist_ok=True)
    provenance = tfjsc_provenance(tfjsc_bin) if tfjsc_bin else None
    if tfjsc_bin:  # a private copy: a rebuild of the original during the run cannot mix versions
        shutil.copy2(tfjsc_bin, os.path.join(workdir, "tfjsc"))
        tfjsc_bin = os.path.join(workdir, "tfjsc")
    opts = {"tfjsc": tfjsc_bin, "workdir": workdir, "tfjsc_timeout": args.tfjsc_timeout,
            "opset": args.opset, "reconvert": args.reconvert, "ov_source": args.ov_source,
            "kernel_peak": peak_bin}
    chart = args.chart or (os.path.join(BENCHES, "ratios.png") if args.write_results else None)
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": "benches/peers.py " + " ".join(a for a in sys.argv[1:]),
        "machine": machine_info(), "loadavg_start": loadavg_start,
        "runs_per_round": max(1, args.runs // args.rounds), "rounds": args.rounds,
        "warmup": args.warmup, "round_warmup": args.round_warmup, "opset": args.opset,
        "ov_source": args.ov_source, "models_dir": args.models_dir, "versions": {},
        "tfjsc": provenance,
    }
    log("load average at start: %.2f %.2f %.2f" % loadavg_start)
    results = {}
    try:
        for name in names:
            results[name] = bench_model(name, os.path.join(args.models_dir, name), peers,
                                        args, opts)
            for key, r in results[name].items():
                if r.get("version"):
                    meta["versions"].setdefault(key.rsplit("_", 1)[0], r["version"])
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_s"] = time.time() - t_start
    meta["versions"] = {p: meta["versions"][p] for p in peers if p in meta["versions"]}
    add_ratios(results, peers)
    chart_rel = None
    if chart:
        make_chart(results, peers, chart, "\n%s, %s, %d CPUs, load average %.1f → %.1f" % (
            meta["date"], meta["machine"].get("cpu_model", "?"), meta["machine"]["cpus"],
            meta["loadavg_start"][0], meta["loadavg_end"][0]))
        chart_rel = os.path.relpath(chart, BENCHES) if args.write_results else chart
    section = make_section(meta, results, peers, chart_rel)
    print(section)
    if args.write_results:
        write_results(section, os.path.join(BENCHES, "RESULTS.md"))
        log("prepended to %s; chart %s" % (os.path.join(BENCHES, "RESULTS.md"), chart))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "markdown": section}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

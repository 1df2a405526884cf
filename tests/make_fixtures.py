#!/usr/bin/env python3
"""Regenerate the tfjsc test fixtures (TF.js graph models + TensorFlow reference outputs).

Setup (once)
------------
    python3.11 -m venv /work/pyenv/venv
    . /work/pyenv/venv/bin/activate
    pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 keras==3.15.1 \
        tensorflow-hub==0.16.1 importlib_resources numpy \
        onnxruntime==1.32.0 tf2onnx==1.17.0          # the last two only for benches/peers.py
    pip install --no-deps tensorflowjs==4.22.0

  tensorflowjs 4.22 declares jax, flax, tensorflow-decision-forests and the full
  `tensorflow` wheel as dependencies; none of them is needed for the tf_saved_model
  converter, hence --no-deps.  Two module-level imports must then be made optional
  in the venv's site-packages copy (this script checks and prints the fix):

    tensorflowjs/converters/__init__.py:
        try:
          from tensorflowjs.converters.jax_conversion import convert_jax
        except ImportError:  # jax not installed
          convert_jax = None
    tensorflowjs/converters/tf_saved_model_conversion_v2.py:
        try:
          import tensorflow_decision_forests
        except ImportError:  # TF-DF not installed
          tensorflow_decision_forests = None

Running
-------
    /work/pyenv/venv/bin/python tests/make_fixtures.py                 # small set -> tests/fixtures
    /work/pyenv/venv/bin/python tests/make_fixtures.py --only mlp small_cnn
    /work/pyenv/venv/bin/python tests/make_fixtures.py --full /work/models   # full-size, not committed

What it writes, per model <name> (under tests/fixtures/ or the --full directory)
---------------------------------------------------------------------------------
    model.json, group1-shard*of*     graph model from tensorflowjs 4.22 (tf_saved_model path)
    legacy/web_model.pb              modelTopology as a binary GraphDef (2018 layout)
    legacy/weights_manifest.json     the weightsManifest array alone
    legacy/group1-shard*of*          shards, copied
    input_0.npy                      float32 input, fixed seed
    expected_0.npy                   float32 TensorFlow output of the same SavedModel signature
    case.json                        {"model", "legacy", "inputs", "outputs", "notes", "ops"}
    weights_decoded.npz              (quantized variants only) name -> dequantized float32 array
    saved_model/                     (--full only) the SavedModel that was converted; used by
                                     benches/peers.py.  The full set has no legacy/ directory.

Every model is built with Keras, all weights are re-drawn from a numpy RandomState with a fixed
seed (kernels: scaled normal; biases, BN beta: small normal; BN gamma: uniform), BatchNorm moving
statistics are calibrated on a random batch (one training-mode pass with momentum 0) and then
perturbed randomly, so activations stay alive (no dead ReLUs), and the classifier kernel is scaled
so the logits have std ~2 on that batch (softmax neither one-hot nor flat).  The model is
wrapped in a tf.function with input_signature [TensorSpec(static shape, name="input")] returning
{"output": y}, saved with tf.saved_model.save, converted with
tensorflowjs.converters.tf_saved_model_conversion_v2.convert_tf_saved_model, and the expected
outputs come from tf.saved_model.load(...).signatures["serving_default"](input=x)["output"].
"""

import argparse
import collections
import glob
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

PATCH_HELP = """
tensorflowjs could not be imported: {err}

tensorflowjs 4.22 is installed with --no-deps, so two module-level imports must be made optional
in the venv's site-packages (NOT in this repository):

  SP={sp}
  # 1) jax_conversion
  sed -i 's/^from tensorflowjs.converters.jax_conversion import convert_jax$/try:\\n  from tensorflowjs.converters.jax_conversion import convert_jax\\nexcept ImportError:\\n  convert_jax = None/' \\
      $SP/tensorflowjs/converters/__init__.py
  # 2) tensorflow_decision_forests
  sed -i 's/^import tensorflow_decision_forests$/try:\\n  import tensorflow_decision_forests\\nexcept ImportError:\\n  tensorflow_decision_forests = None/' \\
      $SP/tensorflowjs/converters/tf_saved_model_conversion_v2.py

Then re-run this script.
"""


def import_tfjs():
    try:
        import tensorflowjs  # noqa: F401
        from tensorflowjs.converters import tf_saved_model_conversion_v2  # noqa: F401
        from tensorflowjs import read_weights  # noqa: F401
    except ImportError as e:  # jax / tensorflow_decision_forests missing and not patched
        import importlib.util
        spec = importlib.util.find_spec("tensorflowjs")
        sp = (os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else
              "$(%s -c 'import site; print(site.getsitepackages()[0])')" % sys.executable)
        sys.stderr.write(PATCH_HELP.format(err=e, sp=sp))
        sys.exit(2)
    return tensorflowjs


import tensorflow as tf  # noqa: E402

tfjs = import_tfjs()
from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv  # noqa: E402
from tensorflowjs import read_weights as tfjs_read_weights  # noqa: E402
from google.protobuf import json_format  # noqa: E402

tf.config.experimental.enable_op_determinism()

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "fixtures")


def keras_module(flavor):
    if flavor == "keras3":
        import keras
        return keras
    import tf_keras
    return tf_keras


# --------------------------------------------------------------------------------------------
# Model builders.  Each returns a Keras model with a static batch-1 input.
# --------------------------------------------------------------------------------------------

def build_mlp(K):
    L = K.layers
    inp = K.Input((64,), batch_size=1, name="input")
    x = L.Dense(128, activation="relu", name="fc1")(inp)
    x = L.Dense(96, activation="tanh", name="fc2")(x)
    x = L.Dense(80, activation="sigmoid", name="fc3")(x)
    x = L.Dense(48, name="fc4")(x)  # linear
    x = L.Dense(10, activation="softmax", name="fc5")(x)
    return K.Model(inp, x, name="mlp")


def build_small_cnn(K):
    L = K.layers
    inp = K.Input((32, 32, 3), batch_size=1, name="input")
    # Conv2D + bias + ReLU -> _FusedConv2D [BiasAdd, Relu]
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    # Conv2D (no bias) + BN + ReLU6 -> _FusedConv2D [BiasAdd, Relu6] (BN folded)
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(6.0, name="relu6")(x)
    # DepthwiseConv2D stride 2 SAME + BN + ReLU -> FusedDepthwiseConv2dNative [BiasAdd, Relu]
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw3")(x)
    x = L.BatchNormalization(name="bn3")(x)
    x = L.ReLU(name="relu3")(x)                                     # 16x16x16
    # ZeroPadding2D + Conv2D VALID + LeakyReLU -> Pad, _FusedConv2D [BiasAdd, LeakyRelu]
    a = L.ZeroPadding2D(((1, 1), (1, 1)), name="pad4")(x)
    a = L.Conv2D(24, 3, padding="valid", name="conv4")(a)
    a = L.LeakyReLU(0.1, name="leaky4")(a)                          # 16x16x24
    # 1x1 conv + PReLU -> _FusedConv2D [BiasAdd, Prelu]
    b = L.Conv2D(24, 1, name="conv5")(x)
    b = L.PReLU(shared_axes=[1, 2], name="prelu5")(b)
    r = L.Add(name="residual")([a, b])                              # AddV2
    c = L.Conv2D(24, 1, use_bias=False, name="conv6_nobias")(r)     # plain Conv2D
    m1 = L.MaxPooling2D(2, name="maxpool")(c)                       # 8x8x24
    m2 = L.AveragePooling2D(3, strides=2, padding="same", name="avgpool_same")(r)
    cat = L.Concatenate(name="concat")([m1, m2])                    # 8x8x48
    g = L.GlobalAveragePooling2D(name="gap")(cat)                   # Mean
    s = L.Dense(48, activation="sigmoid", name="gate")(g)           # _FusedMatMul + Sigmoid
    s = L.Reshape((1, 1, 48), name="gate_reshape")(s)
    t = L.Dense(48, activation="tanh", name="shift")(g)             # Tanh
    t = L.Reshape((1, 1, 48), name="shift_reshape")(t)
    h = L.Multiply(name="mul_bcast")([cat, s])                      # Mul, broadcast
    h = L.Subtract(name="sub_bcast")([h, t])                        # Sub, broadcast
    f = L.Flatten(name="flatten")(h)                                # Reshape
    f = L.Dense(32, use_bias=False, name="fc_nobias")(f)            # MatMul
    f = L.ReLU(name="fc_relu")(f)
    f = L.Dense(10, name="logits")(f)
    out = L.Softmax(name="softmax")(f)
    return K.Model(inp, out, name="small_cnn")


def build_effnet_block(K):
    L = K.layers

    def swish(x, name):
        return L.Activation("swish", name=name)(x)

    def mbconv(x, cin, cout, k, stride, expand, name):
        mid = cin * expand
        y = L.Conv2D(mid, 1, padding="same", use_bias=False, name=name + "_expand")(x)
        y = L.BatchNormalization(name=name + "_expand_bn")(y)
        y = swish(y, name + "_expand_act")
        y = L.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False,
                              name=name + "_dw")(y)
        y = L.BatchNormalization(name=name + "_dw_bn")(y)
        y = swish(y, name + "_dw_act")
        # squeeze-excitation
        se = L.GlobalAveragePooling2D(keepdims=True, name=name + "_se_squeeze")(y)
        se = L.Conv2D(max(1, cin // 4), 1, name=name + "_se_reduce")(se)
        se = swish(se, name + "_se_act")
        se = L.Conv2D(mid, 1, activation="sigmoid", name=name + "_se_expand")(se)
        y = L.Multiply(name=name + "_se_excite")([y, se])
        y = L.Conv2D(cout, 1, padding="same", use_bias=False, name=name + "_project")(y)
        y = L.BatchNormalization(name=name + "_project_bn")(y)
        if stride == 1 and cin == cout:
            y = L.Dropout(0.2, name=name + "_drop")(y)
            y = L.Add(name=name + "_add")([y, x])
        return y

    inp = K.Input((48, 48, 3), batch_size=1, name="input")
    x = L.Rescaling(1.0 / 255.0, name="rescaling")(inp)
    x = L.Normalization(mean=[0.485, 0.456, 0.406],
                        variance=[0.229 ** 2, 0.224 ** 2, 0.225 ** 2], name="normalization")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = swish(x, "stem_act")                                        # 24x24x16
    x = mbconv(x, 16, 16, 3, 1, 4, "block1")                        # residual
    x = mbconv(x, 16, 24, 5, 2, 4, "block2")                        # 12x12x24
    x = L.Conv2D(64, 1, use_bias=False, name="top_conv")(x)
    x = L.BatchNormalization(name="top_bn")(x)
    x = swish(x, "top_act")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    x = L.Dense(10, activation="softmax", name="predictions")(x)
    return K.Model(inp, x, name="effnet_block")


def build_mobilenet_v2_035_96(K):
    return K.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
                                      classes=100)


def build_mobilenet_v2(K):
    return K.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=1000)


def build_resnet50(K):
    return K.applications.ResNet50(input_shape=(224, 224, 3), weights=None, classes=1000)


def build_efficientnet_b0(K):
    return K.applications.EfficientNetB0(input_shape=(224, 224, 3), weights=None, classes=1000)


LOGIT_STD = 2.0  # target std of the classifier logits (see scale_classifier)

# name -> (builder, keras flavor, input shape, input range (lo, hi), seed, calib batch, legacy)
SMALL = collections.OrderedDict([
    ("mlp", (build_mlp, "keras3", (1, 64), (-2.0, 2.0), 11, 8, True)),
    ("small_cnn", (build_small_cnn, "tf_keras", (1, 32, 32, 3), (-1.0, 1.0), 12, 8, True)),
    ("effnet_block", (build_effnet_block, "keras3", (1, 48, 48, 3), (0.0, 255.0), 13, 8, True)),
    ("mobilenet_v2_035_96", (build_mobilenet_v2_035_96, "keras3", (1, 96, 96, 3), (-1.0, 1.0),
                             14, 8, True)),
])
QUANT = ["uint8", "uint16", "float16"]  # variants of mlp: mlp_<dtype>
FULL = collections.OrderedDict([
    ("mobilenet_v2", (build_mobilenet_v2, "keras3", (1, 224, 224, 3), (-1.0, 1.0), 21, 4, False)),
    ("resnet50", (build_resnet50, "keras3", (1, 224, 224, 3), (-1.0, 1.0), 22, 4, False)),
    ("efficientnet_b0", (build_efficientnet_b0, "keras3", (1, 224, 224, 3), (0.0, 255.0), 23, 4,
                         False)),
])


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def _short(v):
    """Last path component of a variable name, without ':0' (works for keras 3 and tf_keras)."""
    n = getattr(v, "path", None) or v.name
    return n.split(":")[0].split("/")[-1]


def _is_bn(layer):
    return type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")


def randomize_weights(model, rng):
    """Re-draw every trainable weight from rng (deterministic, independent of Keras RNGs)."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Normalization", "Rescaling"):
            continue
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for v, w in zip(layer.weights, ws):
            s = _short(v)
            if s in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                if s == "depthwise_kernel":
                    fan_in = int(np.prod(w.shape[:2]))
                else:
                    fan_in = int(np.prod(w.shape[:-1]))
                gain = 2.0 if kind != "Dense" else 1.0
                w = rng.normal(0.0, np.sqrt(gain / fan_in), w.shape)
            elif s == "bias":
                w = rng.normal(0.0, 0.1, w.shape)
            elif s == "gamma":
                w = rng.uniform(0.6, 1.4, w.shape)
            elif s == "beta":
                w = rng.normal(0.0, 0.2, w.shape)
            elif s == "alpha":  # PReLU
                w = rng.uniform(0.05, 0.35, w.shape)
            elif s in ("moving_mean", "moving_variance"):
                pass  # calibrated below
            else:
                raise RuntimeError("unhandled weight %s in layer %s" % (v.name, layer.name))
            new.append(np.asarray(w, dtype=w.dtype if w.dtype != np.float64 else np.float32)
                       .astype(np.float32))
        layer.set_weights(new)


def calibrate_bn(model, rng, calib_x):
    """Set BN moving stats to the batch stats of calib_x (training pass, momentum 0), then perturb
    them randomly: mean += N(0, 0.1) * std, var *= U(0.7, 1.4)."""
    bns = [l for l in model.layers if _is_bn(l)]
    if not bns:
        return
    old = [l.momentum for l in bns]
    for l in bns:
        l.momentum = 0.0
    model(tf.constant(calib_x), training=True)
    for l, m in zip(bns, old):
        l.momentum = m
    for l in bns:
        d = {_short(v): v for v in l.weights}
        mean = d["moving_mean"].numpy()
        var = d["moving_variance"].numpy()
        std = np.sqrt(var + 1e-3)
        mean = mean + rng.normal(0.0, 0.1, mean.shape) * std
        var = var * rng.uniform(0.7, 1.4, var.shape)
        d["moving_mean"].assign(mean.astype(np.float32))
        d["moving_variance"].assign(var.astype(np.float32))


def scale_classifier(model, K, calib_x, target_std):
    """Rescale the last Dense layer's kernel so its pre-activation outputs (the logits feeding the
    softmax) have std ~target_std on the calibration batch: a softmax that is neither one-hot nor
    flat, so errors in the layers below stay visible in the output."""
    dense = [l for l in model.layers if type(l).__name__ == "Dense"][-1]
    feats = K.Model(model.inputs, dense.input)(tf.constant(calib_x), training=False)
    kernel, bias = dense.get_weights()
    logits = np.asarray(feats).reshape(-1, kernel.shape[0]) @ kernel
    std = float(np.mean(np.std(logits, axis=-1)))
    if std > 0:
        dense.set_weights([(kernel * (target_std / std)).astype(np.float32), bias])


# --------------------------------------------------------------------------------------------
# Export / convert / reference
# --------------------------------------------------------------------------------------------

def export_saved_model(model, input_shape, sm_dir):
    spec = tf.TensorSpec(list(input_shape), tf.float32, name="input")

    @tf.function(input_signature=[spec])
    def serve(x):
        return {"output": model(x, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    if os.path.exists(sm_dir):
        shutil.rmtree(sm_dir)
    tf.saved_model.save(module, sm_dir, signatures={"serving_default": serve})
    return serve


def run_saved_model(sm_dir, x):
    loaded = tf.saved_model.load(sm_dir)
    fn = loaded.signatures["serving_default"]
    return fn(input=tf.constant(x))["output"].numpy().astype(np.float32)


def clean_model_dir(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for p in glob.glob(os.path.join(out_dir, "group*-shard*")) + \
            glob.glob(os.path.join(out_dir, "model.json")):
        os.remove(p)
    if os.path.isdir(os.path.join(out_dir, "legacy")):
        shutil.rmtree(os.path.join(out_dir, "legacy"))


# Smaller shards for some small fixtures so the committed set also covers weight streams split
# over several files (weights straddling shard boundaries).  Default: the converter's 4 MiB.
SHARD_BYTES = {"mobilenet_v2_035_96": 1024 * 1024}


def convert(sm_dir, out_dir, quant=None, shard_bytes=4 * 1024 * 1024):
    clean_model_dir(out_dir)
    qmap = {quant: True} if quant else None
    tfjs_conv.convert_tf_saved_model(sm_dir, out_dir, quantization_dtype_map=qmap,
                                     weight_shard_size_bytes=shard_bytes)
    path = os.path.join(out_dir, "model.json")
    with open(path) as f:
        mj = json.load(f, object_pairs_hook=collections.OrderedDict)
    # The converter goes through protobuf's MessageToDict, whose map (attr) iteration order
    # differs from process to process.  Sort each node's attr keys so that regenerating gives
    # byte-identical files; nothing else is changed (same json.dump call as the converter).
    topo = mj["modelTopology"]
    nodes = list(topo.get("node", []))
    for fn in topo.get("library", {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    for n in nodes:
        if "attr" in n:
            n["attr"] = collections.OrderedDict(sorted(n["attr"].items()))
    with open(path, "w") as f:
        json.dump(mj, f)
    return mj


def write_legacy(model_json, out_dir):
    leg = os.path.join(out_dir, "legacy")
    os.makedirs(leg, exist_ok=True)
    gd = tf.compat.v1.GraphDef()
    json_format.ParseDict(model_json["modelTopology"], gd)
    with open(os.path.join(leg, "web_model.pb"), "wb") as f:
        f.write(gd.SerializeToString(deterministic=True))  # sorted map keys
    with open(os.path.join(leg, "weights_manifest.json"), "w") as f:
        json.dump(model_json["weightsManifest"], f, indent=1)
    for group in model_json["weightsManifest"]:
        for p in group["paths"]:
            shutil.copyfile(os.path.join(out_dir, p), os.path.join(leg, p))


def op_histogram(model_json):
    c = collections.Counter(n["op"] for n in model_json["modelTopology"].get("node", []))
    for fn in model_json["modelTopology"].get("library", {}).get("function", []):
        c.update(n["op"] for n in fn.get("nodeDef", []))
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def signature_names(model_json):
    sig = model_json["signature"]
    ins = [v["name"].split(":")[0] for _, v in sorted(sig["inputs"].items())]
    outs = [v["name"].split(":")[0] for _, v in sorted(sig["outputs"].items())]
    return ins, outs


def check_output(name, y):
    assert np.all(np.isfinite(y)), "%s: non-finite output" % name
    std = float(np.std(y))
    assert std > 0, "%s: constant output" % name
    msg = "std=%.4g min=%.4g max=%.4g" % (std, float(y.min()), float(y.max()))
    s = y.reshape(-1)
    if np.all(s >= 0) and abs(float(s.sum()) - 1.0) < 1e-3:  # softmax
        top = float(s.max())
        ent = float(-(s * np.log(np.maximum(s, 1e-30))).sum())
        msg += " softmax max_p=%.4f entropy=%.3f (uniform %.3f)" % (top, ent, np.log(s.size))
        assert top < 0.99, "%s: softmax output is (nearly) one-hot" % name
    return msg


def dir_size(path):
    tot = 0
    for root, _, files in os.walk(path):
        for fn in files:
            tot += os.path.getsize(os.path.join(root, fn))
    return tot


def write_case(out_dir, model_json, legacy, notes, extra=None):
    ins, outs = signature_names(model_json)
    assert len(ins) == 1 and len(outs) == 1, (ins, outs)
    ops = op_histogram(model_json)
    case = collections.OrderedDict([
        ("model", "model.json"),
        ("legacy", "legacy/web_model.pb" if legacy else None),
        ("inputs", [{"name": ins[0], "file": "input_0.npy"}]),
        ("outputs", [{"name": outs[0], "file": "expected_0.npy"}]),
        ("notes", notes),
        ("ops", ops),
    ])
    if extra:
        case.update(extra)
    with open(os.path.join(out_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    return case


def make_one(name, spec, out_root, keep_saved_model):
    builder, flavor, shape, (lo, hi), seed, calib_n, legacy = spec
    K = keras_module(flavor)
    K.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    model = builder(K)
    randomize_weights(model, rng)
    calib = rng.uniform(lo, hi, (calib_n,) + tuple(shape[1:])).astype(np.float32)
    calibrate_bn(model, rng, calib)
    scale_classifier(model, K, calib, LOGIT_STD)
    x = np.random.RandomState(seed + 1000).uniform(lo, hi, shape).astype(np.float32)

    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    tmp = None
    if keep_saved_model:
        sm_dir = os.path.join(out_dir, "saved_model")
    else:
        tmp = tempfile.mkdtemp(prefix="tfjsc_fx_")
        sm_dir = os.path.join(tmp, "saved_model")
    serve = export_saved_model(model, shape, sm_dir)
    y = run_saved_model(sm_dir, x)
    y_mem = serve(tf.constant(x))["output"].numpy()
    assert np.allclose(y, y_mem, rtol=1e-5, atol=1e-6), "%s: saved vs in-memory mismatch" % name

    mj = convert(sm_dir, out_dir, shard_bytes=SHARD_BYTES.get(name, 4 * 1024 * 1024))
    if legacy:
        write_legacy(mj, out_dir)
    np.save(os.path.join(out_dir, "input_0.npy"), x)
    np.save(os.path.join(out_dir, "expected_0.npy"), y)
    stat = check_output(name, y)
    notes = ("%s built with %s (%s), random weights (seed %d), BN stats calibrated+perturbed, "
             "logits scaled to std~2; "
             "input uniform[%g,%g] shape %s; expected = TF %s SavedModel "
             "signatures['serving_default'](input=x)['output']; converted with tensorflowjs %s "
             "(tf_saved_model)." % (name, flavor, "keras " + K.__version__, seed, lo, hi,
                                     list(shape), tf.__version__, tfjs.__version__))
    case = write_case(out_dir, mj, legacy, notes)
    report(name, out_dir, case, stat, y)
    result = dict(model=model, serve=serve, sm_dir=sm_dir, x=x, y=y, flavor=flavor, seed=seed,
                  tmp=tmp)
    return result


def report(name, out_dir, case, stat, y):
    print("=" * 78)
    print("%s  -> %s  (%.1f KiB)" % (name, out_dir, dir_size(out_dir) / 1024.0))
    print("  input  %s  output %s %s" % (case["inputs"][0]["name"], case["outputs"][0]["name"],
                                         list(y.shape)))
    print("  %s" % stat)
    print("  ops: " + ", ".join("%s=%d" % kv for kv in case["ops"].items()))
    sys.stdout.flush()


def make_quantized(base, out_root):
    """mlp_<dtype>: quantized conversions of the mlp SavedModel; expected outputs computed by TF
    with the mlp's weights replaced by the values decoded by tensorflowjs.read_weights."""
    model, serve, x = base["model"], base["serve"], base["x"]
    originals = [(v, v.numpy().copy()) for v in model.weights]
    for q in QUANT:
        name = "mlp_" + q
        out_dir = os.path.join(out_root, name)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        mj = convert(base["sm_dir"], out_dir, quant=q)
        decoded = tfjs_read_weights.read_weights(mj["weightsManifest"], out_dir, flatten=True)
        decoded = collections.OrderedDict(
            (e["name"], np.asarray(e["data"], dtype=np.float32)) for e in decoded)
        for w in mj["weightsManifest"][0]["weights"]:
            assert w.get("quantization", {}).get("dtype") == q, w
        np.savez(os.path.join(out_dir, "weights_decoded.npz"), **decoded)
        # map each decoded weight to the Keras variable it came from: same shape, nearest values
        used = set()
        assignments = []
        for wname, arr in decoded.items():
            best = None
            for i, (v, orig) in enumerate(originals):
                if i in used or tuple(orig.shape) != tuple(arr.shape):
                    continue
                err = float(np.max(np.abs(orig - arr)))
                if best is None or err < best[0]:
                    best = (err, i)
            assert best is not None, "no variable for %s %s" % (wname, arr.shape)
            used.add(best[1])
            assignments.append((originals[best[1]][0], arr, wname, best[0]))
        assert len(used) == len(originals), "not all variables matched"
        for v, arr, _, _ in assignments:
            v.assign(arr)
        y = serve(tf.constant(x))["output"].numpy().astype(np.float32)
        for v, orig in originals:
            v.assign(orig)
        y_float = serve(tf.constant(x))["output"].numpy()
        assert np.array_equal(y_float, base["y"]) or np.allclose(y_float, base["y"], atol=1e-7)
        np.save(os.path.join(out_dir, "input_0.npy"), x)
        np.save(os.path.join(out_dir, "expected_0.npy"), y)
        stat = check_output(name, y)
        maxq = max(a[3] for a in assignments)
        notes = ("mlp (same SavedModel, same input) converted with --quantize_%s. expected_0 = TF "
                 "output of the mlp after assigning the weights decoded by "
                 "tensorflowjs.read_weights (weights_decoded.npz) to its variables; max |decoded - "
                 "float weight| = %.3g; max |expected - float expected| = %.3g."
                 % (q, maxq, float(np.max(np.abs(y - base["y"])))))
        case = write_case(out_dir, mj, False, notes)
        report(name, out_dir, case, stat, y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", metavar="DIR",
                    help="write the full-size models (with saved_model/) into DIR instead of the "
                         "small fixtures")
    ap.add_argument("--out", default=DEFAULT_OUT, help="small-fixture directory (%(default)s)")
    ap.add_argument("--only", nargs="*", help="only these model names")
    args = ap.parse_args()

    print("tensorflow %s, tensorflowjs %s" % (tf.__version__, tfjs.__version__))
    if args.full:
        for name, spec in FULL.items():
            if args.only and name not in args.only:
                continue
            make_one(name, spec, args.full, keep_saved_model=True)
        return
    os.makedirs(args.out, exist_ok=True)
    want = args.only
    for name, spec in SMALL.items():
        quant_wanted = name == "mlp" and (not want or "mlp" in want or
                                        any(w.startswith("mlp_") for w in want))
        if want and name not in want and not quant_wanted:
            continue
        r = make_one(name, spec, args.out, keep_saved_model=False)
        if quant_wanted:
            make_quantized(r, args.out)
        if r["tmp"]:
            shutil.rmtree(r["tmp"], ignore_errors=True)
    total = dir_size(args.out)
    print("=" * 78)
    print("total %s: %.2f MiB" % (args.out, total / 1048576.0))
    if total > 8 * 1048576:
        print("WARNING: fixtures exceed 8 MiB")


if __name__ == "__main__":
    main()

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
    # only the real-pattern models (TF.js reference outputs need node + @tensorflow/tfjs 4.22,
    # found through $TFJS_MODULES, default /work/tfjs-node/node_modules; --no-tfjs skips them):
    /work/pyenv/venv/bin/python tests/make_fixtures.py --only seg_decoder detector_head \
        keypoint_head mesh_refine dilated_net int_image_input
    # TF.js reference for one fixture by hand:
    TFJS_MODULES=/work/tfjs-node/node_modules node tests/tfjs_reference.mjs tests/fixtures/NAME

What it writes, per model <name> (under tests/fixtures/ or the --full directory)
---------------------------------------------------------------------------------
    model.json, group1-shard*of*     graph model from tensorflowjs 4.22 (tf_saved_model path)
    legacy/web_model.pb              modelTopology as a binary GraphDef (2018 layout)
    legacy/weights_manifest.json     the weightsManifest array alone
    legacy/group1-shard*of*          shards, copied
    input_0.npy                      float32 input, fixed seed (int32 for int_image_input)
    expected_0.npy                   float32 TensorFlow output of the same SavedModel signature
    expected_tfjs_0.npy              (real-pattern models) float32 output of TF.js 4.22, pure-JS
                                     cpu backend, on the same model.json (tests/tfjs_reference.mjs)
    case.json                        {"model", "legacy", "inputs", "outputs", "notes", "ops"};
                                     real-pattern models add "tfjs_vs_tf_max_abs" (max |TF.js -
                                     TF|) and outputs[0]["tfjs_file"]
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

The real-pattern models (seg_decoder, detector_head, keypoint_head, mesh_refine, dilated_net,
int_image_input) are tf_keras functional models whose raw TF ops (depth_to_space, split, argmax,
gather_nd, top_k, ...) are traced as plain graph ops; they follow the same conventions, scale a
named head layer instead of (or no) classifier, have no legacy/ copy, and where the graph makes a
data-dependent choice (ArgMax, TopKV2, the Atan2 branch cut) the seed was picked so the input is
at least MIN_MARGIN away from a tie / the discontinuity.
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


# --- Real-pattern heads (tf_keras functional models: raw TF ops on Keras tensors become
# TFOpLambda layers, so they are traced into the SavedModel as plain TF ops). ---------------

def build_seg_decoder(K):
    """Encoder (two stride-2 convs) + decoder: Conv2DTranspose SAME and VALID (stride 2, bias,
    ReLU) and bilinear upsampling three ways (tf.image.resize -> ResizeBilinear
    half_pixel_centers; UpSampling2D(bilinear) -> the same; tf.compat.v1.image.resize_bilinear
    (align_corners=True) -> ResizeBilinear align_corners), per-pixel softmax over 5 classes."""
    L = K.layers
    inp = K.Input((32, 32, 3), batch_size=1, name="input")
    e1 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="enc1")(inp)  # 16
    e2 = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="enc2")(e1)   # 8
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="bottleneck")(e2)         # 8x8x32
    u1 = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu",
                           name="up1_same")(x)                                            # 16x16x16
    r1 = L.Lambda(lambda t: tf.image.resize(t, (16, 16), method="bilinear"),
                  name="resize_half_pixel")(x)                                            # 16x16x32
    c1 = L.Concatenate(name="skip1")([u1, r1, e1])                                        # 16x16x64
    c1 = L.Conv2D(16, 1, activation="relu", name="fuse1")(c1)
    u2 = L.Conv2DTranspose(8, 2, strides=2, padding="valid", activation="relu",
                           name="up2_valid_k2")(c1)                                       # 32x32x8
    u3 = L.Conv2DTranspose(8, 3, strides=2, padding="valid", activation="relu",
                           name="up2_valid_k3")(c1)                                       # 33x33x8
    u3 = L.Cropping2D(((0, 1), (0, 1)), name="crop33")(u3)                                # 32x32x8
    r2 = L.UpSampling2D(2, interpolation="bilinear", name="upsample_bilinear")(c1)       # 32x32x16
    r3 = L.Lambda(lambda t: tf.compat.v1.image.resize_bilinear(t, (32, 32),
                                                               align_corners=True),
                  name="resize_align_corners")(x)                                         # 32x32x32
    c2 = L.Concatenate(name="skip2")([u2, u3, r2, r3])                                    # 32x32x64
    c2 = L.Conv2D(16, 3, padding="same", activation="relu", name="fuse2")(c2)
    logits = L.Conv2D(5, 1, name="logits")(c2)
    out = L.Softmax(axis=-1, name="pixel_softmax")(logits)
    return K.Model(inp, out, name="seg_decoder")


def build_detector_head(K):
    """Backbone to 8x8, 1x1 conv to 48 channels, DepthToSpace(2) -> 16x16x12 = 2 anchors x 6,
    reshaped to [1,16,16,2,6] and decoded YOLO-style: SplitV [2,2,1,1], sigmoid(xy) + grid,
    exp(wh) * anchors, a Slice of the raw predictions, a data-dependent image scale broadcast with
    BroadcastTo, concatenated -> [1, 512, 7]."""
    L = K.layers
    inp = K.Input((32, 32, 3), batch_size=1, name="input")
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv1")(inp)  # 16
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)    # 8
    p = L.Conv2D(48, 1, name="pred")(x)                                                   # 8x8x48
    gy, gx = np.meshgrid(np.arange(16, dtype=np.float32), np.arange(16, dtype=np.float32),
                         indexing="ij")
    grid = np.stack([gx, gy], -1).reshape(1, 16, 16, 1, 2)
    anchors = np.array([[3.0, 5.0], [9.0, 7.0]], np.float32).reshape(1, 1, 1, 2, 2)

    def decode(t):
        feat, p = t
        d = tf.nn.depth_to_space(p, 2)                                    # DepthToSpace
        r = tf.reshape(d, [1, 16, 16, 2, 6])
        xy, wh, obj, cls = tf.split(r, [2, 2, 1, 1], axis=-1)             # SplitV (uneven)
        xy = (tf.sigmoid(xy) + grid) * 2.0
        wh = tf.exp(0.5 * wh) * anchors
        raw = tf.slice(r, [0, 0, 0, 1, 3], [1, 16, 16, 1, 2])             # Slice
        raw = tf.concat([raw, -raw], axis=3)                              # [1,16,16,2,2]
        score = tf.sigmoid(obj) * tf.sigmoid(cls)
        scale = tf.reduce_mean(feat, axis=[1, 2, 3], keepdims=True)       # [1,1,1,1]
        scale = tf.broadcast_to(tf.reshape(scale, [1, 1, 1, 1, 1]), [1, 16, 16, 2, 1])
        box = tf.concat([xy - 0.5 * wh, xy + 0.5 * wh, score * scale, tf.tanh(raw)], axis=-1)
        return tf.reshape(box, [1, 16 * 16 * 2, 7])

    out = L.Lambda(decode, name="decode")([x, p])
    return K.Model(inp, out, name="detector_head")


def build_keypoint_head(K):
    """Heatmap + offset convs at 16x16 for 5 keypoints; ArgMax over the flattened spatial axis,
    row/column by FloorDiv/FloorMod of the index, GatherNd of the offsets at (row, col, k),
    Unpack of (dy, dx), Pack of [y + dy, x + dx, sigmoid(max)] -> [1, 5, 3]."""
    L = K.layers
    H = W = 16
    NK = 5
    inp = K.Input((32, 32, 3), batch_size=1, name="input")
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(24, 3, padding="same", activation="relu", name="conv2")(x)
    heat = L.Conv2D(NK, 1, name="heatmap")(x)
    off = L.Conv2D(2 * NK, 1, name="offsets")(x)

    def decode(t):
        heat, off = t
        flat = tf.reshape(heat, [1, H * W, NK])
        idx = tf.argmax(flat, axis=1, output_type=tf.int32)[0]           # ArgMax -> [NK]
        score = tf.sigmoid(tf.reduce_max(flat, axis=1)[0])
        row = tf.math.floordiv(idx, W)                                    # FloorDiv
        col = tf.math.floormod(idx, W)                                    # FloorMod
        ind = tf.stack([row, col, tf.range(NK, dtype=tf.int32)], axis=-1)  # Pack [NK, 3]
        o = tf.gather_nd(tf.reshape(off, [H, W, NK, 2]), ind)             # GatherNd -> [NK, 2]
        dy, dx = tf.unstack(o, axis=-1)                                   # Unpack
        y = tf.cast(row, tf.float32) + dy
        xx = tf.cast(col, tf.float32) + dx
        return tf.expand_dims(tf.stack([y, xx, score], axis=-1), 0)      # [1, NK, 3]

    out = L.Lambda(decode, name="decode")([heat, off])
    return K.Model(inp, out, name="keypoint_head")


def build_mesh_refine(K):
    """Point features [1,64,8] -> per-point score, TopKV2 (k=16), GatherV2 with batch_dims=1 of
    the features at the top-k indices, one attention step (BatchMatMul + Softmax) of the selected
    points over all points, Atan2 of two feature halves, Tile of a global feature, Dense -> [1,16,3]."""
    L = K.layers
    inp = K.Input((64, 8), batch_size=1, name="input")
    h = L.Dense(16, activation="relu", name="embed")(inp)                 # [1,64,16]
    s = L.Dense(1, name="score")(h)                                      # [1,64,1]

    def select(t):
        h, s = t
        top = tf.math.top_k(tf.squeeze(s, -1), k=16)                     # TopKV2 [1,16] x2
        q_in = tf.gather(h, top.indices, batch_dims=1)                    # GatherV2 batch_dims=1
        return q_in, tf.sigmoid(top.values)[..., None]                    # [1,16,16], [1,16,1]

    q_in, w = L.Lambda(select, name="topk_gather")([h, s])
    q = L.Dense(16, name="query")(q_in)
    k = L.Dense(16, name="key")(h)
    v = L.Dense(16, name="value")(h)

    def attend(t):
        q, k, v = t
        a = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / 4.0, axis=-1)  # [1,16,64]
        return tf.matmul(a, v)                                               # [1,16,16]

    def combine(t):
        o, w, q_in = t
        ang = tf.math.atan2(o[..., :4], o[..., 4:8])                         # [1,16,4]
        g = tf.reduce_mean(o, axis=1, keepdims=True)                         # [1,1,16]
        g = tf.tile(g, [1, 16, 1])                                           # Tile
        return tf.concat([ang, g * w, q_in], axis=-1)                        # [1,16,36]

    o = L.Lambda(attend, name="attend")([q, k, v])
    o = L.Lambda(combine, name="combine")([o, w, q_in])
    out = L.Dense(3, name="refine")(o)
    return K.Model(inp, out, name="mesh_refine")


def build_dilated_net(K):
    """Atrous convs (dilation 2 and 3, SAME; dilation 2 VALID), traced by TF as SpaceToBatchND /
    Conv2D / BatchToSpaceND; GAP + Dense softmax."""
    L = K.layers
    inp = K.Input((32, 32, 3), batch_size=1, name="input")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    a = L.Conv2D(16, 3, padding="same", dilation_rate=2, activation="relu", name="atrous2")(x)
    b = L.Conv2D(16, 3, padding="same", dilation_rate=3, activation="relu", name="atrous3")(x)
    y = L.Add(name="sum")([x, a, b])
    y = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="down")(y)    # 16x16
    # (no BatchNormalization after an atrous conv: BN is not folded across BatchToSpaceND and
    # grappler then fuses BN + ReLU into _FusedBatchNormEx, which tensorflowjs rejects)
    c = L.Conv2D(24, 3, padding="valid", dilation_rate=2, activation="relu",
                 name="atrous2_valid")(y)                                                 # 12x12
    g = L.GlobalAveragePooling2D(name="gap")(c)
    out = L.Dense(10, activation="softmax", name="logits")(g)
    return K.Model(inp, out, name="dilated_net")


def build_int_image_input(K):
    """int32 image [1,32,32,3] in 0..255 -> Cast -> x/127.5 - 1 -> conv/BN/ReLU, conv -> GAP ->
    Dense softmax."""
    L = K.layers
    inp = K.Input((32, 32, 3), batch_size=1, dtype="int32", name="input")
    x = L.Lambda(lambda t: tf.cast(t, tf.float32) / 127.5 - 1.0, name="to_float")(inp)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, activation="softmax", name="logits")(x)
    return K.Model(inp, out, name="int_image_input")


LOGIT_STD = 2.0  # target std of the classifier logits (see scale_classifier)

# name -> (builder, keras flavor, input shape, input range (lo, hi), seed, calib batch, legacy
#          [, options])
# options (the real-pattern models):
#   "dtype": input dtype ("float32" default; "int32": integers uniform in [lo, hi])
#   "head":  name of the layer (Dense or 1x1 Conv2D) whose kernel is scaled so its outputs have
#            std LOGIT_STD, or None for no scaling; absent: the last Dense (scale_classifier)
#   "tfjs":  also run tests/tfjs_reference.mjs (expected_tfjs_0.npy, "tfjs_vs_tf_max_abs")
#   "margin": [(layer name, fn(layer output as numpy) -> smallest gap between the values a
#            data-dependent selection (ArgMax, TopKV2) compares, or distance from a
#            discontinuity (Atan2 branch cut), description)]; asserted >= MIN_MARGIN so that rounding
#            differences cannot change which element is selected
PATTERN = dict(tfjs=True)
MIN_MARGIN = 1e-3  # f32 rounding differences in these values are ~1e-6


def argmax_margin(heat):
    """[1,H,W,K] heatmap: min over k of (largest - second largest) over the H*W positions."""
    f = np.sort(heat.reshape(-1, heat.shape[-1]), axis=0)
    return float(np.min(f[-1] - f[-2]))


def atan2_margin(o):
    """[..., 16] attention output, atan2(o[..., :4], o[..., 4:8]): min |y| where x < 0 (distance
    from the branch cut, where atan2 jumps from pi to -pi)."""
    y, x = o[..., :4], o[..., 4:8]
    return float(np.min(np.abs(y[x < 0]))) if np.any(x < 0) else float("inf")


def topk_margin(k):
    def margin(score):
        """[1,N,1] scores: min gap between consecutive values among the k+1 largest."""
        v = np.sort(score.reshape(-1))[::-1][:k + 1]
        return float(np.min(v[:-1] - v[1:]))
    return margin


SMALL = collections.OrderedDict([
    ("mlp", (build_mlp, "keras3", (1, 64), (-2.0, 2.0), 11, 8, True)),
    ("small_cnn", (build_small_cnn, "tf_keras", (1, 32, 32, 3), (-1.0, 1.0), 12, 8, True)),
    ("effnet_block", (build_effnet_block, "keras3", (1, 48, 48, 3), (0.0, 255.0), 13, 8, True)),
    ("mobilenet_v2_035_96", (build_mobilenet_v2_035_96, "keras3", (1, 96, 96, 3), (-1.0, 1.0),
                             14, 8, True)),
    ("seg_decoder", (build_seg_decoder, "tf_keras", (1, 32, 32, 3), (-1.0, 1.0), 31, 4, False,
                     dict(PATTERN, head="logits"))),
    ("detector_head", (build_detector_head, "tf_keras", (1, 32, 32, 3), (-1.0, 1.0), 32, 4,
                       False, dict(PATTERN, head=None))),
    ("keypoint_head", (build_keypoint_head, "tf_keras", (1, 32, 32, 3), (-1.0, 1.0), 533, 4,
                       False, dict(PATTERN, head="heatmap", margin=[("heatmap", argmax_margin,
                                         "ArgMax: min over keypoints of top-1 minus top-2")]))),
    ("mesh_refine", (build_mesh_refine, "tf_keras", (1, 64, 8), (-1.0, 1.0), 1034, 4, False,
                     dict(PATTERN, head="score", margin=[("score", topk_margin(16), "TopKV2: min gap between the 17 largest scores"),
                             ("attend", atan2_margin,
                              "Atan2: min |y| where x < 0, distance from the branch cut")]))),
    ("dilated_net", (build_dilated_net, "tf_keras", (1, 32, 32, 3), (-1.0, 1.0), 35, 4, False,
                     dict(PATTERN))),
    ("int_image_input", (build_int_image_input, "tf_keras", (1, 32, 32, 3), (0, 255), 36, 4,
                         False, dict(PATTERN, dtype="int32"))),
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


def scale_classifier(model, K, calib_x, target_std, layer_name=None):
    """Rescale the last Dense layer's kernel (or that of the named Dense / 1x1 Conv2D layer) so
    its pre-activation outputs (the logits feeding the softmax) have std ~target_std on the
    calibration batch: a softmax that is neither one-hot nor flat, so errors in the layers below
    stay visible in the output."""
    if layer_name is None:
        dense = [l for l in model.layers if type(l).__name__ == "Dense"][-1]
    else:
        dense = model.get_layer(layer_name)
    feats = K.Model(model.inputs, dense.input)(tf.constant(calib_x), training=False)
    kernel, bias = dense.get_weights()
    assert kernel.ndim == 2 or kernel.shape[:-2] == (1, 1), "head must be Dense or 1x1 conv"
    logits = np.asarray(feats).reshape(-1, kernel.shape[-2]) @ kernel.reshape(kernel.shape[-2], -1)
    std = float(np.mean(np.std(logits, axis=-1)))
    if std > 0:
        dense.set_weights([(kernel * (target_std / std)).astype(np.float32), bias])


# --------------------------------------------------------------------------------------------
# Export / convert / reference
# --------------------------------------------------------------------------------------------

def export_saved_model(model, input_shape, sm_dir, dtype=tf.float32):
    spec = tf.TensorSpec(list(input_shape), dtype, name="input")

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


def write_case(out_dir, model_json, legacy, notes, extra=None, output_extra=None):
    ins, outs = signature_names(model_json)
    assert len(ins) == 1 and len(outs) == 1, (ins, outs)
    ops = op_histogram(model_json)
    output = {"name": outs[0], "file": "expected_0.npy"}
    output.update(output_extra or {})
    case = collections.OrderedDict([
        ("model", "model.json"),
        ("legacy", "legacy/web_model.pb" if legacy else None),
        ("inputs", [{"name": ins[0], "file": "input_0.npy"}]),
        ("outputs", [output]),
        ("notes", notes),
        ("ops", ops),
    ])
    if extra:
        case.update(extra)
    with open(os.path.join(out_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    return case


def make_one(name, spec, out_root, keep_saved_model, run_tfjs=True):
    builder, flavor, shape, (lo, hi), seed, calib_n, legacy = spec[:7]
    opts = spec[7] if len(spec) > 7 else {}
    dtype = opts.get("dtype", "float32")
    K = keras_module(flavor)
    K.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    model = builder(K)
    randomize_weights(model, rng)
    if dtype == "int32":
        calib = rng.randint(lo, hi + 1, (calib_n,) + tuple(shape[1:])).astype(np.int32)
    else:
        calib = rng.uniform(lo, hi, (calib_n,) + tuple(shape[1:])).astype(np.float32)
    calibrate_bn(model, rng, calib)
    head = opts.get("head", "")
    if head is not None:
        scale_classifier(model, K, calib, LOGIT_STD, head or None)
    if dtype == "int32":
        x = np.random.RandomState(seed + 1000).randint(lo, hi + 1, shape).astype(np.int32)
    else:
        x = np.random.RandomState(seed + 1000).uniform(lo, hi, shape).astype(np.float32)

    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    tmp = None
    if keep_saved_model:
        sm_dir = os.path.join(out_dir, "saved_model")
    else:
        tmp = tempfile.mkdtemp(prefix="tfjsc_fx_")
        sm_dir = os.path.join(tmp, "saved_model")
    serve = export_saved_model(model, shape, sm_dir, tf.as_dtype(dtype))
    y = run_saved_model(sm_dir, x)
    y_mem = serve(tf.constant(x))["output"].numpy()
    assert np.allclose(y, y_mem, rtol=1e-5, atol=1e-6), "%s: saved vs in-memory mismatch" % name

    mj = convert(sm_dir, out_dir, shard_bytes=SHARD_BYTES.get(name, 4 * 1024 * 1024))
    if legacy:
        write_legacy(mj, out_dir)
    np.save(os.path.join(out_dir, "input_0.npy"), x)
    np.save(os.path.join(out_dir, "expected_0.npy"), y)
    stat = check_output(name, y)
    margins = []
    for layer, fn, what in opts.get("margin", []):
        sub = K.Model(model.inputs, model.get_layer(layer).output)
        m = fn(np.asarray(sub(tf.constant(x), training=False)))
        margins.append((layer, what, m))
        stat += " margin(%s) %.3g" % (layer, m)
        assert m >= MIN_MARGIN, "%s: %s margin %g < %g" % (name, layer, m, MIN_MARGIN)
    notes = ("%s built with %s (%s), random weights (seed %d), BN stats calibrated+perturbed, "
             "logits scaled to std~2; "
             "input uniform[%g,%g] shape %s; expected = TF %s SavedModel "
             "signatures['serving_default'](input=x)['output']; converted with tensorflowjs %s "
             "(tf_saved_model)." % (name, flavor, "keras " + K.__version__, seed, lo, hi,
                                     list(shape), tf.__version__, tfjs.__version__))
    extra, output_extra = None, None
    if opts:
        doc = " ".join((builder.__doc__ or "").split())
        scaled = ("%s outputs scaled to std~2" % head if head else
                  "logits scaled to std~2" if head is not None else "no output scaling")
        notes = ("%s: %s Built with %s (%s), random weights (seed %d), BN stats "
                 "calibrated+perturbed, %s; input %s uniform[%g,%g] shape %s; expected = TF %s "
                 "SavedModel signatures['serving_default'](input=x)['output']; converted with "
                 "tensorflowjs %s (tf_saved_model)."
                 % (name, doc, flavor, "keras " + K.__version__, seed, scaled, dtype, lo, hi,
                    list(shape), tf.__version__, tfjs.__version__))
        if opts.get("tfjs") and run_tfjs:
            diff = run_tfjs_reference(out_dir, y)
            notes += (" expected_tfjs_0.npy = TF.js %s (pure-JS cpu backend, "
                      "tests/tfjs_reference.mjs) on the same model.json and input."
                      % TFJS_NPM_VERSION)
            extra = {"tfjs_vs_tf_max_abs": diff}
        for layer, what, m in margins:
            notes += (" Robustness margin on the %s output (%s): %.3g (asserted >= %g)."
                      % (layer, what, m, MIN_MARGIN))
            output_extra = {"tfjs_file": "expected_tfjs_0.npy"}
    case = write_case(out_dir, mj, legacy, notes, extra, output_extra)
    report(name, out_dir, case, stat, y)
    result = dict(model=model, serve=serve, sm_dir=sm_dir, x=x, y=y, flavor=flavor, seed=seed,
                  tmp=tmp)
    return result


TFJS_SCRIPT = os.path.join(HERE, "tfjs_reference.mjs")
TFJS_MODULES = os.environ.get("TFJS_MODULES", "/work/tfjs-node/node_modules")
TFJS_NPM_VERSION = "4.22.0"


def run_tfjs_reference(out_dir, y):
    """Run tests/tfjs_reference.mjs on the fixture (writes expected_tfjs_0.npy) and return
    max |TF.js - TF|."""
    import subprocess
    env = dict(os.environ, TFJS_MODULES=TFJS_MODULES)
    r = subprocess.run(["node", TFJS_SCRIPT, out_dir], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("tfjs_reference.mjs failed on %s:\n%s%s" % (out_dir, r.stdout,
                                                                         r.stderr))
    res = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
    yj = np.load(os.path.join(out_dir, "expected_tfjs_0.npy"))
    assert yj.shape == y.shape, (yj.shape, y.shape)
    diff = float(np.max(np.abs(yj.astype(np.float64) - y.astype(np.float64))))
    assert abs(diff - res["max_abs_vs_tf"]) <= 1e-6 * max(1.0, diff), (diff, res)
    print("  TF.js vs TF: max abs %.3g (max |TF| %.3g)" % (diff, float(np.max(np.abs(y)))))
    return diff


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
    ap.add_argument("--no-tfjs", action="store_true",
                    help="do not run tests/tfjs_reference.mjs (node + @tensorflow/tfjs in "
                         "$TFJS_MODULES, default /work/tfjs-node/node_modules)")
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
        r = make_one(name, spec, args.out, keep_saved_model=False, run_tfjs=not args.no_tfjs)
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

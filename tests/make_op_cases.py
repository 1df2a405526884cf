#!/usr/bin/env python3
"""Op cases computed by TensorFlow itself: the oracle for tfjsc's op references and kernels.

Running
-------
    /work/venv-tf/bin/python tests/make_op_cases.py            # every op
    /work/venv-tf/bin/python tests/make_op_cases.py Relu Pad   # only these ops

  (tensorflow 2.21 on CPU; no network.)  Deterministic: fixed seeds, eager CPU execution.

What it writes
--------------
    tests/fixtures/op_cases/<OpName>.json, one file per TensorFlow op:

    {"op": "<OpName>", "cases": [case, ...]}

    case = {
      "op":    TensorFlow op name,
      "name":  what the case exercises (for messages),
      "attrs": {attr name: {"kind": k, "value": v}}, the NodeDef attributes exactly as TensorFlow
               writes them into a GraphDef for this call (hence as TF.js's converter keeps them),
               read back from a traced tf.function; names starting with "_" are left out.
               k is one of: "int", "float", "bool", "string", "type" (TensorFlow DataType
               number), "shape" (list of dims, -1 unknown; null for unknown rank),
               "list_int", "list_float", "list_string", "list_type", "list_bool".
      "inputs":  [{"dtype", "shape", "values"}] in NodeDef input order (list inputs flattened),
      "const_inputs": indices into inputs that are compile-time constants in a converted model
               (axes, sizes, k, shapes, paddings, weights); the others are graph inputs,
      "outputs": [{"dtype", "shape", "values"}], TensorFlow's outputs (tf.raw_ops.<Op>, eager,
               CPU). FusedBatchNormV3 records only `y` (the other outputs are training state).
    }

    dtype is "float32", "int32", "int64" or "bool"; values are flat, row-major; floats are JSON
    numbers (the shortest text that reads back as the same float32) with NaN and infinities as
    the strings "nan", "inf", "-inf".

Note: TensorFlow's CPU kernels run with denormals flushed to zero; cases named "denormal" show
that (tfjsc does not flush).
"""

import json
import math
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import tensorflow as tf  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "op_cases")

F32, I32, I64, BOOL = np.float32, np.int32, np.int64, np.bool_
DTYPE_NAMES = {np.dtype(F32): "float32", np.dtype(I32): "int32", np.dtype(I64): "int64",
               np.dtype(BOOL): "bool"}

NAN, INF = float("nan"), float("inf")
# Specials for unary float ops: signed zeros, ties, tiny and huge, around exp's overflow.
SPECIALS = [0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1e-3, -1e-3, 1e-8, -1e-8, 6.0, 6.5,
            -6.5, 20.0, -20.0, 88.5, -88.5, 100.0, -100.0, 16777215.0, 0.49999997, -0.49999997,
            1e30, -1e30, INF, -INF, NAN]


def rng(seed):
    return np.random.default_rng(seed)


def f32(values, shape=None):
    a = np.array(values, dtype=F32)
    return a.reshape(shape) if shape is not None else a


def i32(values, shape=None):
    a = np.array(values, dtype=I32)
    return a.reshape(shape) if shape is not None else a


def uniform(shape, seed, low=-1.0, high=1.0):
    return rng(seed).uniform(low, high, size=shape).astype(F32)


def randint(shape, seed, low, high):
    return rng(seed).integers(low, high + 1, size=shape).astype(I32)


def randbool(shape, seed):
    return rng(seed).integers(0, 2, size=shape).astype(BOOL)


def halves(shape, seed, span=4):
    """Multiples of 0.5 in [-span, span]: many ties and equal pairs."""
    return (rng(seed).integers(-2 * span, 2 * span + 1, size=shape) / 2.0).astype(F32)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def encode_float(v):
    v = np.float32(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = repr(float(np.format_float_positional(v, unique=True, trim="-")))
    short = float(text)
    if np.float32(short) == v and math.copysign(1.0, short) == math.copysign(1.0, float(v)):
        return short
    return float(v)


def encode_tensor(a):
    a = np.asarray(a)
    name = DTYPE_NAMES[a.dtype]
    flat = a.reshape(-1)
    if name == "float32":
        values = [encode_float(v) for v in flat]
    elif name == "bool":
        values = [bool(v) for v in flat]
    else:
        values = [int(v) for v in flat]
    return {"dtype": name, "shape": [int(d) for d in a.shape], "values": values}


def encode_attr(value):
    which = value.WhichOneof("value")
    if which == "i":
        return {"kind": "int", "value": int(value.i)}
    if which == "f":
        return {"kind": "float", "value": encode_float(value.f)}
    if which == "b":
        return {"kind": "bool", "value": bool(value.b)}
    if which == "s":
        return {"kind": "string", "value": value.s.decode()}
    if which == "type":
        return {"kind": "type", "value": int(value.type)}
    if which == "shape":
        if value.shape.unknown_rank:
            return {"kind": "shape", "value": None}
        return {"kind": "shape", "value": [int(d.size) for d in value.shape.dim]}
    if which == "list":
        lst = value.list
        if lst.f:
            return {"kind": "list_float", "value": [encode_float(v) for v in lst.f]}
        if lst.s:
            return {"kind": "list_string", "value": [s.decode() for s in lst.s]}
        if lst.type:
            return {"kind": "list_type", "value": [int(t) for t in lst.type]}
        if lst.b:
            return {"kind": "list_bool", "value": [bool(b) for b in lst.b]}
        return {"kind": "list_int", "value": [int(v) for v in lst.i]}
    raise ValueError(f"attribute kind {which} not encoded")


# ---------------------------------------------------------------------------------------------
# Running one case
# ---------------------------------------------------------------------------------------------

CASES = {}
SKIPPED = []


def case(op, name, inputs, const=(), outputs=None, **attrs):
    """inputs: [(arg name, array or list of arrays)] in the op's input order; const: arg names
    (a list argument's arrays are then all constant); attrs: the op's non-input arguments;
    outputs: which outputs to record (default all)."""
    flat, const_indices, kwargs = [], [], {}
    for arg, value in inputs:
        arrays = value if isinstance(value, list) else [value]
        for a in arrays:
            if arg in const:
                const_indices.append(len(flat))
            flat.append(np.asarray(a))
        kwargs[arg] = [tf.constant(a) for a in arrays] if isinstance(value, list) \
            else tf.constant(value)
    raw = getattr(tf.raw_ops, op)
    try:
        with tf.device("/CPU:0"):
            result = raw(**kwargs, **attrs)
    except Exception as error:  # noqa: BLE001 - TF refuses the case: leave it out, say so.
        SKIPPED.append(f"{op} {name}: {type(error).__name__}: {str(error).splitlines()[0]}")
        return
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    if outputs is not None:
        results = [results[i] for i in outputs]

    # The NodeDef TensorFlow writes for this call: trace with the graph inputs as placeholders.
    signature = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype))
                 for k, a in enumerate(flat) if k not in const_indices]

    def traced(*placeholders):
        it = iter(placeholders)
        position = 0
        call = {}
        for arg, value in inputs:
            arrays = value if isinstance(value, list) else [value]
            tensors = []
            for a in arrays:
                tensors.append(tf.constant(a) if position in const_indices else next(it))
                position += 1
            call[arg] = tensors if isinstance(value, list) else tensors[0]
        return raw(**call, **attrs)

    graph = tf.function(traced, input_signature=signature).get_concrete_function().graph
    nodes = [n for n in graph.as_graph_def().node if n.op == op]
    assert len(nodes) == 1, (op, name, [n.op for n in graph.as_graph_def().node])
    node_attrs = {key: encode_attr(nodes[0].attr[key])
                  for key in sorted(nodes[0].attr) if not key.startswith("_")}
    CASES.setdefault(op, []).append({
        "op": op,
        "name": name,
        "attrs": node_attrs,
        "inputs": [encode_tensor(a) for a in flat],
        "const_inputs": const_indices,
        "outputs": [encode_tensor(r.numpy()) for r in results],
    })


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

UNARY_ARG = {"Relu": "features", "Relu6": "features", "Elu": "features", "Selu": "features",
             "Softplus": "features", "LeakyRelu": "features"}
UNARY = ["Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Exp", "Expm1", "Log", "Log1p",
         "Softplus", "Sqrt", "Rsqrt", "Square", "Abs", "Neg", "Sign", "Floor", "Ceil", "Round",
         "Reciprocal", "Sin", "Cos", "Tan", "Erf", "Atan", "Asin", "Acos", "Sinh", "Cosh",
         "Asinh", "Acosh", "Atanh", "IsNan", "IsInf", "IsFinite"]
INT_UNARY = {"Abs", "Neg", "Sign", "Square"}


# Arguments beyond which tfjsc's sine and cosine reduction (Cephes, three-part π/4) is not
# accurate: kept in a case of their own, which the test lists instead of failing.
TRIG_RANGE = 8192.0


def unary_cases():
    for k, op in enumerate(UNARY):
        arg = UNARY_ARG.get(op, "x")
        if op in ("Sin", "Cos", "Tan"):
            inside = [v for v in SPECIALS if not (abs(v) > TRIG_RANGE and abs(v) != INF)]
            outside = [v for v in SPECIALS if abs(v) > TRIG_RANGE and abs(v) != INF]
            case(op, "specials", [(arg, f32(inside))])
            case(op, "beyond the kernel range", [(arg, f32(outside))])
        else:
            case(op, "specials", [(arg, f32(SPECIALS))])
        case(op, "random [2, 3, 5] in ±8", [(arg, uniform([2, 3, 5], 100 + k, -8, 8))])
        case(op, "random [17] in ±1", [(arg, uniform([17], 200 + k, -1, 1))])
        case(op, "scalar", [(arg, f32(-0.75))])
        case(op, "denormal", [(arg, f32([3e-39, -3e-39, 1e-45]))])
        if op in INT_UNARY:
            case(op, "int32", [(arg, i32([0, 1, -1, 7, -8, 46340, -46340, 2147483647]))])
    specials = f32(SPECIALS)
    for alpha in [0.2, 0.01, 1.5, -0.3]:
        case("LeakyRelu", f"specials alpha={alpha}", [("features", specials)], alpha=alpha)
        case("LeakyRelu", f"random alpha={alpha}", [("features", uniform([3, 4], 7, -5, 5))],
             alpha=alpha)
    case("LogicalNot", "bools", [("x", randbool([2, 5], 1))])
    case("LogicalNot", "scalar", [("x", np.array(True))])


BINARY = ["Add", "Sub", "Mul", "RealDiv", "DivNoNan", "Maximum", "Minimum",
          "SquaredDifference", "FloorDiv", "FloorMod", "Pow", "Atan2"]
COMPARISONS = ["Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual"]
INT_BINARY = {"Add", "Sub", "Mul", "Maximum", "Minimum", "SquaredDifference", "FloorDiv",
              "FloorMod", "Pow", "DivNoNan"}
BINARY_SPECIALS_X = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 7.0, -7.0, 7.0, -7.0, 3.0, INF, -INF,
                     NAN, 2.0, 0.0, 5.5, -5.5, 1e30, -1e-30]
BINARY_SPECIALS_Y = [0.0, 0.0, -0.0, 2.0, -0.5, 2.5, 2.0, 2.0, -2.0, -2.0, 3.0, 2.0, 3.0,
                     1.0, INF, -0.0, 0.5, -2.0, 1e10, -1e30]
# A float remainder with a quotient beyond 2^24 (1e30 mod 1e10): tfjsc's float FloorMod rounds
# the quotient, so it is kept in a case of its own, which the test lists instead of failing.
HUGE_QUOTIENT = (18,)


def binary_case(op, name, inputs, *rest, **named):
    """A binary op's case: Atan2's operands are named (y, x), the others' (x, y)."""
    if op == "Atan2":
        inputs = [(("y", "x")[i], value) for i, (_, value) in enumerate(inputs)]
    return case(op, name, inputs, *rest, **named)


def binary_cases():
    for k, op in enumerate(BINARY):
        if op == "FloorMod":
            keep = [i for i in range(len(BINARY_SPECIALS_X)) if i not in HUGE_QUOTIENT]
            pick = lambda values, indices: f32([values[i] for i in indices])
            binary_case(op, "specials", [("x", pick(BINARY_SPECIALS_X, keep)),
                                         ("y", pick(BINARY_SPECIALS_Y, keep))])
            binary_case(op, "huge quotient", [("x", pick(BINARY_SPECIALS_X, HUGE_QUOTIENT)),
                                              ("y", pick(BINARY_SPECIALS_Y, HUGE_QUOTIENT))])
        else:
            binary_case(op, "specials",
                        [("x", f32(BINARY_SPECIALS_X)), ("y", f32(BINARY_SPECIALS_Y))])
        x = uniform([2, 3, 4], 300 + k, -4, 4)
        y = uniform([2, 3, 4], 400 + k, -4, 4)
        if op == "Pow":
            x = np.abs(x) + F32(0.1)
        binary_case(op, "same shape", [("x", x), ("y", y)])
        binary_case(op, "broadcast [2,3,1] [1,4]", [("x", x[:, :, :1]), ("y", y[0, :1, :])])
        binary_case(op, "scalar right", [("x", x), ("y", f32(1.75))])
        binary_case(op, "scalar left", [("x", f32(-1.25)), ("y", y)])
        binary_case(op, "halves (ties)", [("x", halves([12], 500 + k)), ("y", halves([12], 600 + k))])
        if op in INT_BINARY:
            xi = randint([3, 5], 700 + k, -20, 20)
            yi = randint([3, 5], 800 + k, 1, 6) * np.where(randbool([3, 5], 900 + k), 1, -1)
            yi = yi.astype(I32)
            if op == "Pow":
                xi = randint([3, 5], 700 + k, -5, 5)
                yi = randint([3, 5], 800 + k, 0, 5)
            if op == "DivNoNan":
                continue  # float-only in TensorFlow
            binary_case(op, "int32 signs", [("x", xi), ("y", yi)])
            binary_case(op, "int32 broadcast", [("x", xi), ("y", yi[:1, :])])
        if op in ("FloorDiv", "FloorMod"):
            binary_case(op, "int32 sign rules",
                 [("x", i32([7, -7, 7, -7, 0, 1, -1, 6, -6, 2147483647, -2147483647])),
                  ("y", i32([2, 2, -2, -2, 3, -3, 3, -3, 3, 2, 2]))])
            binary_case(op, "float sign rules",
                 [("x", f32([7, -7, 7, -7, 0, -0.0, 1, -1, 6, -6, 5.5, -5.5, 1e-3, 2.5, INF])),
                  ("y", f32([2, 2, -2, -2, 3, 3, -3, 3, -3, 3, 0.5, 2.0, -1e3, 0.0, 2]))])
    for k, op in enumerate(COMPARISONS):
        case(op, "halves", [("x", halves([3, 5], 1000 + k, 2)), ("y", halves([3, 5], 1100 + k, 2))])
        case(op, "broadcast", [("x", halves([3, 1], 1200 + k, 2)), ("y", halves([4], 1300 + k, 2))])
        case(op, "specials", [("x", f32([0.0, -0.0, NAN, NAN, INF, -INF, 1.0, 1e-30])),
                              ("y", f32([-0.0, 0.0, NAN, 1.0, INF, INF, 1.0, 0.0]))])
        case(op, "int32", [("x", randint([3, 4], 1400 + k, -2, 2)),
                           ("y", randint([3, 4], 1500 + k, -2, 2))])
    for op in ["Equal", "NotEqual"]:
        case(op, "bool", [("x", randbool([8], 1)), ("y", randbool([8], 2))])
    for op in ["LogicalAnd", "LogicalOr"]:
        case(op, "same shape", [("x", randbool([3, 4], 3)), ("y", randbool([3, 4], 4))])
        case(op, "broadcast", [("x", randbool([3, 1], 5)), ("y", randbool([4], 6))])
        case(op, "scalar", [("x", np.array(True)), ("y", randbool([5], 7))])
    # Select: condition same shape, or a vector over the first dimension.
    case("Select", "same shape", [("condition", randbool([3, 4], 8)),
                                  ("x", uniform([3, 4], 9)), ("y", uniform([3, 4], 10))])
    case("Select", "vector condition", [("condition", randbool([3], 11)),
                                        ("x", uniform([3, 4], 12)), ("y", uniform([3, 4], 13))])
    case("Select", "int32", [("condition", randbool([6], 14)),
                             ("x", randint([6], 15, -9, 9)), ("y", randint([6], 16, -9, 9))])
    case("SelectV2", "same shape", [("condition", randbool([3, 4], 17)),
                                    ("t", uniform([3, 4], 18)), ("e", uniform([3, 4], 19))])
    case("SelectV2", "broadcast", [("condition", randbool([4], 20)),
                                   ("t", uniform([3, 1], 21)), ("e", f32(0.5))])
    case("SelectV2", "nan", [("condition", np.array([True, False, True, False])),
                             ("t", f32([NAN, 1, -0.0, 2])), ("e", f32([3, NAN, 4, -0.0]))])
    case("SelectV2", "scalar condition", [("condition", np.array(False)),
                                          ("t", uniform([2, 3], 22)), ("e", uniform([2, 3], 23))])
    # Cast between float32, int32 and bool.
    floats = f32([0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.7, -2.7, 1e-3, 255.9, -1e5, 16777217.0,
                  3e9, -3e9, NAN, INF])
    ints_ = i32([0, 1, -1, 16777217, -16777217, 2147483647, -2147483648, 255, 256])
    bools = np.array([True, False, True])
    for name, x, dst in [("float32->int32", floats[:12], tf.int32),
                         ("float32->bool", floats, tf.bool),
                         ("int32->float32", ints_, tf.float32),
                         ("int32->bool", ints_, tf.bool),
                         ("bool->float32", bools, tf.float32),
                         ("bool->int32", bools, tf.int32),
                         ("float32->float32", floats, tf.float32),
                         ("int32->int32", ints_, tf.int32)]:
        case("Cast", name, [("x", x)], DstT=dst)
    case("Cast", "float32->int32 out of range (implementation-defined in C++)",
         [("x", floats[12:])], DstT=tf.int32)
    # AddN, ClipByValue.
    case("AddN", "two", [("inputs", [uniform([2, 3], 30), uniform([2, 3], 31)])])
    case("AddN", "four", [("inputs", [uniform([5], 32 + k, -1e3, 1e3) for k in range(4)])])
    case("AddN", "one", [("inputs", [uniform([3], 36)])])
    case("AddN", "int32", [("inputs", [randint([4], 37, -9, 9), randint([4], 38, -9, 9),
                                       randint([4], 39, -9, 9)])])
    case("AddN", "specials", [("inputs", [f32([INF, 1, NAN, 0.0]), f32([-INF, 2, 1, -0.0])])])
    x = f32(SPECIALS)
    case("ClipByValue", "scalar bounds", [("t", x), ("clip_value_min", f32(-1.5)),
                                          ("clip_value_max", f32(6.0))],
         const=("clip_value_min", "clip_value_max"))
    case("ClipByValue", "tensor bounds",
         [("t", uniform([2, 4], 40, -3, 3)), ("clip_value_min", uniform([2, 4], 41, -2, 0)),
          ("clip_value_max", uniform([2, 4], 42, 0, 2))],
         const=("clip_value_min", "clip_value_max"))
    case("ClipByValue", "int32", [("t", randint([6], 43, -10, 10)), ("clip_value_min", i32(-3)),
                                  ("clip_value_max", i32(4))],
         const=("clip_value_min", "clip_value_max"))


def reduction_cases():
    x = uniform([2, 3, 4], 50, -5, 5)
    xi = randint([2, 3, 4], 51, -9, 9)
    xs = randint([2, 3, 4], 52, 1, 3)
    xb = randbool([2, 3, 4], 53)
    axes_variants = [("axis 0", i32([0])), ("axis -1", i32([-1])), ("axes [0, 2]", i32([0, 2])),
                     ("all axes", i32([0, 1, 2])), ("scalar axis 1", i32(1)),
                     ("no axes", np.zeros([0], I32)), ("axes [2, -3]", i32([2, -3]))]
    for op in ["Mean", "Sum", "Max", "Min", "Prod", "All", "Any"]:
        for keep in [False, True]:
            for name, axes in axes_variants:
                if op in ("All", "Any"):
                    data = xb
                elif op == "Prod":
                    data = (x / 4).astype(F32)
                else:
                    data = x
                case(op, f"{name} keep_dims={keep}", [("input", data), ("axis", axes)],
                     const=("axis",), keep_dims=keep)
            if op in ("All", "Any"):
                case(op, f"all true keep_dims={keep}",
                     [("input", np.ones([2, 3], BOOL)), ("axis", i32([1]))], const=("axis",),
                     keep_dims=keep)
                continue
            case(op, f"int32 axis 1 keep_dims={keep}",
                 [("input", xs if op == "Prod" else xi), ("axis", i32([1]))], const=("axis",),
                 keep_dims=keep)
        case(op, "specials", [("input", f32([[1, NAN, 2], [INF, 1, -INF], [-0.0, 0.0, -0.0]])
                                          if op not in ("All", "Any") else xb[0]),
                              ("axis", i32([1]))], const=("axis",))
        if op not in ("All", "Any"):
            case(op, "scalar input", [("input", f32(2.5)), ("axis", np.zeros([0], I32))],
                 const=("axis",))
    case("Mean", "int32 truncating mean", [("input", i32([[1, 2], [-1, -2], [3, 4], [-3, -4]])),
                                          ("axis", i32([1]))], const=("axis",))
    case("Sum", "large sum", [("input", uniform([300], 54, 0, 100)), ("axis", i32([0]))],
         const=("axis",))


def shape_cases():
    x = uniform([2, 3, 4], 60, -5, 5)
    # Softmax.
    case("Softmax", "[2, 7]", [("logits", uniform([2, 7], 61, -5, 5))])
    case("Softmax", "[5]", [("logits", uniform([5], 62, -20, 20))])
    case("Softmax", "[2, 3, 4]", [("logits", x)])
    case("Softmax", "large", [("logits", f32([[1000, 999, -1000], [88, 89, 90], [0, 0, 0]]))])
    case("Softmax", "-inf", [("logits", f32([[-INF, 0, 1], [-INF, -INF, 5]]))])
    # LogSoftmax.
    case("LogSoftmax", "[2, 7]", [("logits", uniform([2, 7], 63, -5, 5))])
    case("LogSoftmax", "[2, 3, 4]", [("logits", x)])
    case("LogSoftmax", "large", [("logits", f32([[1000, 999, -1000], [88, 89, 90], [0, 0, 0]]))])
    # Einsum, the patterns models use.
    for k, (equation, a, b) in enumerate([
        ("ab,bc->ac", [3, 4], [4, 5]),
        ("abc,cd->abd", [2, 3, 4], [4, 5]),
        ("abc,acd->abd", [2, 3, 4], [2, 4, 5]),
        ("bhqd,bhkd->bhqk", [1, 2, 3, 4], [1, 2, 5, 4]),
        ("bhqk,bhkd->bhqd", [1, 2, 3, 5], [1, 2, 5, 4]),
        ("abcd,aecd->acbe", [2, 3, 4, 5], [2, 6, 4, 5]),
    ]):
        case("Einsum", equation,
             [("inputs", [uniform(a, 70 + k, -1, 1), uniform(b, 80 + k, -1, 1)])],
             equation=equation)
    # Transpose.
    for perm in [[1, 0, 2], [2, 1, 0], [0, 1, 2], [2, 0, 1]]:
        case("Transpose", f"perm {perm}", [("x", x), ("perm", i32(perm))], const=("perm",))
    case("Transpose", "4-d int32 [0,3,1,2]", [("x", randint([2, 1, 3, 2], 63, -9, 9)),
                                              ("perm", i32([0, 3, 1, 2]))], const=("perm",))
    case("Transpose", "bool", [("x", randbool([2, 3], 64)), ("perm", i32([1, 0]))],
         const=("perm",))
    # ConcatV2 / Pack / AddN-like lists.
    for axis in [0, 1, -1, 2]:
        parts = [x, uniform([2, 3, 4], 65), uniform([2, 3, 4], 66)]
        if axis in (1,):
            parts = [x, uniform([2, 1, 4], 65), uniform([2, 2, 4], 66)]
        case("ConcatV2", f"axis {axis}", [("values", parts), ("axis", i32(axis))],
             const=("axis",))
        case("Pack", f"axis {axis}", [("values", [x, uniform([2, 3, 4], 67)])], axis=axis)
    case("ConcatV2", "int32", [("values", [randint([3], 68, 0, 9), randint([2], 168, 0, 9)]),
                              ("axis", i32(0))],
         const=("axis",))
    case("ConcatV2", "with a constant part", [("values", [x, uniform([2, 3, 1], 69)]),
                                              ("axis", i32(2))], const=("axis",))
    case("Pack", "scalars", [("values", [f32(1), f32(-0.0), f32(NAN)])], axis=0)
    case("Pack", "axis -3 int32", [("values", [randint([2, 2], 70, 0, 9)] * 3)], axis=-3)
    # Pad / PadV2 / MirrorPad.
    pads = i32([[1, 0], [0, 2], [2, 1]])
    case("Pad", "[2,3,4]", [("input", x), ("paddings", pads)], const=("paddings",))
    case("Pad", "int32 zero pads", [("input", randint([2, 2], 71, 0, 9)),
                                    ("paddings", i32([[0, 0], [0, 0]]))], const=("paddings",))
    case("Pad", "4-d", [("input", uniform([1, 2, 2, 3], 72)),
                        ("paddings", i32([[0, 0], [1, 1], [2, 0], [0, 0]]))], const=("paddings",))
    case("PadV2", "value -1.5", [("input", x), ("paddings", pads),
                                 ("constant_values", f32(-1.5))],
         const=("paddings", "constant_values"))
    case("PadV2", "value -inf", [("input", uniform([2, 2], 73)),
                                 ("paddings", i32([[1, 1], [1, 1]])),
                                 ("constant_values", f32(-INF))],
         const=("paddings", "constant_values"))
    case("PadV2", "int32 value 7", [("input", randint([3], 74, 0, 9)), ("paddings", i32([[2, 3]])),
                                    ("constant_values", i32(7))],
         const=("paddings", "constant_values"))
    for mode in ["REFLECT", "SYMMETRIC"]:
        case("MirrorPad", f"{mode} 2-d", [("input", uniform([3, 4], 75)),
                                          ("paddings", i32([[1, 2], [2, 0]]))],
             const=("paddings",), mode=mode)
        case("MirrorPad", f"{mode} 3-d", [("input", x), ("paddings", i32([[1, 1], [0, 2], [3, 3]]))],
             const=("paddings",), mode=mode)
    # StridedSlice.
    y = uniform([4, 5, 6], 76, -5, 5)
    for name, begin, end, strides, masks in [
        ("plain", [1, 0, 2], [3, 5, 6], [1, 1, 1], {}),
        ("strides 2", [0, 1, 0], [4, 5, 6], [2, 2, 3], {}),
        ("negative stride", [3, 4, 5], [0, 0, 0], [-1, -2, -1], {}),
        ("negative stride to start", [3, -1, 5], [0, 0, 0], [-1, -1, -2],
         {"end_mask": 7}),
        ("negative indices", [-3, -4, -6], [-1, -1, -1], [1, 1, 1], {}),
        ("begin/end masks", [2, 3, 1], [3, 4, 4], [1, 1, 1], {"begin_mask": 5, "end_mask": 2}),
        ("shrink axis 0", [2, 0, 0], [3, 5, 6], [1, 1, 1], {"shrink_axis_mask": 1}),
        ("shrink axes 0,2 negative", [-1, 0, -2], [0, 5, -1], [1, 1, 1],
         {"shrink_axis_mask": 5}),
        ("new axis", [0, 1, 0], [4, 3, 6], [1, 1, 1], {"new_axis_mask": 2}),
        ("ellipsis", [0, 1], [4, 4], [1, 1], {"ellipsis_mask": 1}),
        ("ellipsis + new axis", [0, 0, 2], [0, 0, 5], [1, 1, 1],
         {"ellipsis_mask": 1, "new_axis_mask": 2}),
        ("out of range clamps", [-10, 2, 0], [10, 100, 6], [1, 1, 1], {}),
        ("empty", [3, 0, 0], [1, 5, 6], [1, 1, 1], {}),
        ("partial spec", [1], [3], [1], {}),
    ]:
        case("StridedSlice", name,
             [("input", y), ("begin", i32(begin)), ("end", i32(end)), ("strides", i32(strides))],
             const=("begin", "end", "strides"), **masks)
    # Slice.
    for name, begin, size in [("plain", [1, 0, 2], [2, 3, 3]), ("size -1", [0, 2, 1], [-1, -1, 2]),
                              ("whole", [0, 0, 0], [4, 5, 6]), ("empty", [0, 0, 0], [0, 5, 6])]:
        case("Slice", name, [("input", y), ("begin", i32(begin)), ("size", i32(size))],
             const=("begin", "size"))
    # Reshape, Squeeze, ExpandDims.
    for shape in [[6, 4], [-1], [4, -1, 3], [2, 3, 4], [1, 24, 1]]:
        case("Reshape", f"to {shape}", [("tensor", x), ("shape", i32(shape))], const=("shape",))
    case("Reshape", "scalar", [("tensor", f32([3.5])), ("shape", np.zeros([0], I32))],
         const=("shape",))
    z = uniform([1, 3, 1, 2, 1], 77)
    for dims in [[], [0], [2, -1], [-5]]:
        case("Squeeze", f"axis {dims}", [("input", z)], axis=dims)
    for axis in [0, 1, 3, -1, -4]:
        case("ExpandDims", f"axis {axis}", [("input", x), ("axis", i32(axis))], const=("axis",))
    case("ExpandDims", "scalar", [("input", f32(1.5)), ("axis", i32(0))], const=("axis",))
    # Tile, BroadcastTo.
    for mult in [[1, 2, 1], [2, 1, 3], [1, 1, 1]]:
        case("Tile", f"multiples {mult}", [("input", x), ("multiples", i32(mult))],
             const=("multiples",))
    case("Tile", "int32", [("input", randint([2], 78, 0, 9)), ("multiples", i32([3]))],
         const=("multiples",))
    for name, src, shape in [("[3,1] to [2,3,4]", uniform([3, 1], 79), [2, 3, 4]),
                             ("scalar to [2,2]", f32(2.5), [2, 2]),
                             ("same", uniform([2, 3], 80), [2, 3])]:
        case("BroadcastTo", name, [("input", src), ("shape", i32(shape))], const=("shape",))
    # Split, SplitV, Unpack.
    for axis, num in [(0, 2), (1, 3), (-1, 4), (2, 1)]:
        case("Split", f"axis {axis} num {num}", [("axis", i32(axis)), ("value", y[:2, :3, :4])],
             const=("axis",), num_split=num)
    for sizes, axis in [([1, 2, 3], 2), ([2, -1], 0), ([5], 1), ([0, 3, 2], 1)]:
        case("SplitV", f"sizes {sizes} axis {axis}",
             [("value", y), ("size_splits", i32(sizes)), ("axis", i32(axis))],
             const=("size_splits", "axis"), num_split=len(sizes))
    for axis in [0, 1, -1]:
        case("Unpack", f"axis {axis}", [("value", x)], num=x.shape[axis], axis=axis)
    # ReverseV2.
    for axes in [[0], [1, 2], [-1], [], [0, 1, 2]]:
        case("ReverseV2", f"axes {axes}", [("tensor", x), ("axis", i32(axes))], const=("axis",))
    # DepthToSpace, SpaceToDepth, SpaceToBatchND, BatchToSpaceND.
    case("DepthToSpace", "block 2", [("input", uniform([1, 2, 3, 8], 81))], block_size=2)
    case("DepthToSpace", "block 3", [("input", uniform([2, 1, 2, 9], 82))], block_size=3)
    case("SpaceToDepth", "block 2", [("input", uniform([1, 4, 6, 2], 83))], block_size=2)
    case("SpaceToDepth", "block 3", [("input", uniform([2, 3, 3, 1], 84))], block_size=3)
    case("SpaceToBatchND", "block [2,2] pads",
         [("input", uniform([1, 4, 3, 2], 85)), ("block_shape", i32([2, 2])),
          ("paddings", i32([[0, 0], [1, 0]]))], const=("block_shape", "paddings"))
    case("SpaceToBatchND", "block [2,3]",
         [("input", uniform([2, 2, 3, 1], 86)), ("block_shape", i32([2, 3])),
          ("paddings", i32([[0, 0], [0, 0]]))], const=("block_shape", "paddings"))
    case("SpaceToBatchND", "1-d block",
         [("input", uniform([1, 5, 2], 87)), ("block_shape", i32([3])),
          ("paddings", i32([[1, 0]]))], const=("block_shape", "paddings"))
    case("BatchToSpaceND", "block [2,2] crops",
         [("input", uniform([4, 2, 2, 2], 88)), ("block_shape", i32([2, 2])),
          ("crops", i32([[0, 0], [1, 0]]))], const=("block_shape", "crops"))
    case("BatchToSpaceND", "block [2,3] no crops",
         [("input", uniform([6, 1, 2, 1], 89)), ("block_shape", i32([2, 3])),
          ("crops", i32([[0, 0], [0, 0]]))], const=("block_shape", "crops"))
    # Resize.
    img = uniform([1, 3, 4, 2], 90, 0, 10)
    for op in ["ResizeBilinear", "ResizeNearestNeighbor"]:
        for size in [[6, 8], [2, 3], [5, 7], [3, 4], [1, 1]]:
            for ac, hp in [(False, False), (True, False), (False, True)]:
                case(op, f"to {size} align_corners={ac} half_pixel_centers={hp}",
                     [("images", img), ("size", i32(size))], const=("size",),
                     align_corners=ac, half_pixel_centers=hp)
    # GatherV2, GatherNd.
    params = uniform([4, 3, 5], 91, -5, 5)
    for name, indices, axis, batch_dims in [
        ("axis 0", i32([3, 0, 0, 2]), 0, 0),
        ("axis 1 2-d indices", i32([[2, 0], [1, 1]]), 1, 0),
        ("axis -1", i32([4, 0, 1]), -1, 0),
        ("scalar index", i32(2), 0, 0),
        ("batch_dims 1", randint([4, 2], 92, 0, 2), 1, 1),
        ("batch_dims -1 axis -1", randint([4, 3, 2], 93, 0, 4), -1, -1),
    ]:
        case("GatherV2", name, [("params", params), ("indices", indices), ("axis", i32(axis))],
             const=("axis",), batch_dims=batch_dims)
    case("GatherV2", "int32 params, constant indices",
         [("params", randint([5, 2], 94, -9, 9)), ("indices", i32([4, 4, 1])),
          ("axis", i32(0))], const=("indices", "axis"))
    for name, indices in [("full index", i32([[0, 1, 2], [3, 2, 4]])),
                          ("slices", i32([[1], [3], [0]])),
                          ("2-d index batch", i32([[[0, 0], [1, 1]], [[2, 2], [3, 0]]]))]:
        case("GatherNd", name, [("params", params), ("indices", indices)])
    # OneHot.
    for axis in [-1, 0, 1]:
        case("OneHot", f"axis {axis}",
             [("indices", i32([[0, 3], [-1, 2]])), ("depth", i32(4)), ("on_value", f32(1.0)),
              ("off_value", f32(0.0))], const=("depth", "on_value", "off_value"), axis=axis)
    case("OneHot", "values 5/-2 int32",
         [("indices", i32([1, 0, 5])), ("depth", i32(3)), ("on_value", i32(5)),
          ("off_value", i32(-2))], const=("depth", "on_value", "off_value"), axis=-1)
    # ArgMax, ArgMin, TopKV2.
    ties = f32([[1, 3, 3, 0], [NAN, 1, 2, 2], [-0.0, 0.0, -1, -1]])
    for op in ["ArgMax", "ArgMin"]:
        for axis in [0, 1, -1]:
            for out in [tf.int32, tf.int64]:
                case(op, f"axis {axis} {out.name}", [("input", x), ("dimension", i32(axis))],
                     const=("dimension",), output_type=out)
        case(op, "ties", [("input", ties[:, :]), ("dimension", i32(1))], const=("dimension",),
             output_type=tf.int32)
        case(op, "int32", [("input", randint([3, 5], 95, -3, 3)), ("dimension", i32(1))],
             const=("dimension",), output_type=tf.int32)
    for k in [1, 3, 5]:
        case("TopKV2", f"k {k}", [("input", uniform([2, 5], 96)), ("k", i32(k))], const=("k",))
    case("TopKV2", "ties", [("input", f32([[1, 3, 3, 0, 3], [2, 2, -1, 2, 5]])), ("k", i32(3))],
         const=("k",))
    case("TopKV2", "int32 3-d", [("input", randint([2, 2, 4], 97, -3, 3)), ("k", i32(2))],
         const=("k",))
    # Cumsum.
    for axis in [0, 1, -1]:
        for exclusive in [False, True]:
            for reverse in [False, True]:
                case("Cumsum", f"axis {axis} exclusive={exclusive} reverse={reverse}",
                     [("x", x), ("axis", i32(axis))], const=("axis",), exclusive=exclusive,
                     reverse=reverse)
    case("Cumsum", "int32", [("x", randint([6], 98, -9, 9)), ("axis", i32(0))], const=("axis",))
    # SparseToDense.
    case("SparseToDense", "2-d",
         [("sparse_indices", i32([[0, 1], [1, 0], [2, 3]])), ("output_shape", i32([3, 4])),
          ("sparse_values", f32([1.5, -2, 3])), ("default_value", f32(0.25))],
         const=("sparse_indices", "output_shape", "default_value"))
    case("SparseToDense", "1-d scalar value",
         [("sparse_indices", i32([0, 3, 4])), ("output_shape", i32([6])),
          ("sparse_values", i32(7)), ("default_value", i32(-1))],
         const=("sparse_indices", "output_shape", "default_value"))
    # Fill, Range, ZerosLike, OnesLike, Size, Shape.
    case("Fill", "[2,3] float", [("dims", i32([2, 3])), ("value", f32(-2.5))],
         const=("dims", "value"))
    case("Fill", "[4] int32", [("dims", i32([4])), ("value", i32(7))], const=("dims", "value"))
    case("Fill", "scalar", [("dims", np.zeros([0], I32)), ("value", f32(1.0))],
         const=("dims", "value"))
    case("Fill", "run-time value", [("dims", i32([2, 2])), ("value", f32(NAN))], const=("dims",))
    for name, start, limit, delta in [("0..5", 0, 5, 1), ("10..1 by -3", 10, 1, -3),
                                      ("float 0..1 by 0.3", 0.0, 1.0, 0.3),
                                      ("float -1..1 by 0.5", -1.0, 1.0, 0.5),
                                      ("empty", 3, 3, 1)]:
        make = f32 if isinstance(start, float) else i32
        case("Range", name, [("start", make(start)), ("limit", make(limit)),
                             ("delta", make(delta))], const=("start", "limit", "delta"))
    for op in ["ZerosLike", "OnesLike"]:
        case(op, "float", [("x", x)])
        case(op, "int32", [("x", randint([3], 99, 0, 9))])
        case(op, "bool", [("x", randbool([2, 2], 100))])
    for op in ["Size", "Shape"]:
        for out in [tf.int32, tf.int64]:
            case(op, f"[2,3,4] {out.name}", [("input", x)], out_type=out)
        case(op, "scalar", [("input", f32(1.0))], out_type=tf.int32)
        case(op, "empty", [("input", np.zeros([2, 0], F32))], out_type=tf.int32)


def nn_cases():
    # Conv2D.
    for k, (name, inp, filt, strides, padding, dilations, explicit) in enumerate([
        ("3x3 SAME", [1, 5, 5, 2], [3, 3, 2, 3], 1, "SAME", 1, None),
        ("3x3 VALID", [2, 5, 6, 2], [3, 3, 2, 2], 1, "VALID", 1, None),
        ("stride 2 SAME even", [1, 6, 6, 3], [3, 3, 3, 2], 2, "SAME", 1, None),
        ("stride 2 SAME odd", [1, 7, 5, 1], [2, 2, 1, 2], 2, "SAME", 1, None),
        ("dilation 2", [1, 7, 7, 2], [3, 3, 2, 2], 1, "SAME", 2, None),
        ("1x1", [1, 3, 3, 4], [1, 1, 4, 5], 1, "VALID", 1, None),
        ("EXPLICIT", [1, 4, 5, 2], [3, 2, 2, 2], 1, "EXPLICIT", 1, [0, 0, 1, 2, 0, 1, 0, 0]),
    ]):
        attrs = dict(strides=[1, strides, strides, 1], padding=padding,
                     dilations=[1, dilations, dilations, 1])
        if explicit:
            attrs["explicit_paddings"] = explicit
        case("Conv2D", name, [("input", uniform(inp, 110 + k)), ("filter", uniform(filt, 120 + k))],
             const=("filter",), **attrs)
    # DepthwiseConv2dNative.
    for k, (name, inp, filt, strides, padding, dilations) in enumerate([
        ("3x3 SAME", [1, 5, 5, 2], [3, 3, 2, 1], 1, "SAME", 1),
        ("multiplier 2 VALID", [1, 5, 4, 3], [3, 3, 3, 2], 1, "VALID", 1),
        ("stride 2", [2, 6, 6, 2], [3, 3, 2, 1], 2, "SAME", 1),
        ("dilation 2", [1, 6, 6, 1], [2, 2, 1, 2], 1, "SAME", 2),
    ]):
        case("DepthwiseConv2dNative", name,
             [("input", uniform(inp, 130 + k)), ("filter", uniform(filt, 140 + k))],
             const=("filter",), strides=[1, strides, strides, 1], padding=padding,
             dilations=[1, dilations, dilations, 1])
    # Conv2DBackpropInput.
    for k, (name, out_shape, filt, strides, padding) in enumerate([
        ("stride 2 SAME", [1, 6, 6, 2], [3, 3, 2, 3], 2, "SAME"),
        ("stride 2 VALID", [1, 7, 7, 1], [3, 3, 1, 2], 2, "VALID"),
        ("stride 1 SAME", [2, 4, 5, 2], [2, 2, 2, 2], 1, "SAME"),
        ("stride 3 SAME", [1, 5, 4, 1], [2, 2, 1, 1], 3, "SAME"),
    ]):
        o = [(out_shape[1] + strides - 1) // strides, (out_shape[2] + strides - 1) // strides]
        if padding == "VALID":
            o = [(out_shape[1] - filt[0]) // strides + 1, (out_shape[2] - filt[1]) // strides + 1]
        dy = uniform([out_shape[0], o[0], o[1], filt[3]], 150 + k)
        case("Conv2DBackpropInput", name,
             [("input_sizes", i32(out_shape)), ("filter", uniform(filt, 160 + k)),
              ("out_backprop", dy)], const=("input_sizes", "filter"),
             strides=[1, strides, strides, 1], padding=padding)
    # MaxPool, AvgPool.
    for op in ["MaxPool", "AvgPool"]:
        arg = "input" if op == "MaxPool" else "value"
        for k, (name, inp, ksize, strides, padding) in enumerate([
            ("2x2 stride 2 VALID", [1, 4, 4, 2], 2, 2, "VALID"),
            ("3x3 stride 2 SAME", [1, 5, 5, 2], 3, 2, "SAME"),
            ("3x3 stride 1 SAME", [2, 4, 3, 1], 3, 1, "SAME"),
            ("2x2 stride 1 VALID", [1, 3, 5, 3], 2, 1, "VALID"),
            ("2x2 stride 2 SAME odd", [1, 5, 3, 1], 2, 2, "SAME"),
        ]):
            data = uniform(inp, 170 + k, -5, 5)
            case(op, name, [(arg, data)], ksize=[1, ksize, ksize, 1],
                 strides=[1, strides, strides, 1], padding=padding)
        case(op, "all negative SAME", [(arg, uniform([1, 3, 3, 1], 179, -5, -1))],
             ksize=[1, 3, 3, 1], strides=[1, 1, 1, 1], padding="SAME")
        case(op, "NaN and infinities", [(arg, f32([[NAN, 1, 2, -INF], [3, 4, INF, 5]],
                                                  [1, 2, 4, 1]))],
             ksize=[1, 2, 2, 1], strides=[1, 1, 2, 1], padding="VALID")
    # MatMul, BatchMatMulV2.
    for ta in [False, True]:
        for tb in [False, True]:
            a = uniform([4, 3] if ta else [3, 4], 180)
            b = uniform([5, 4] if tb else [4, 5], 181)
            case("MatMul", f"transpose_a={ta} transpose_b={tb}", [("a", a), ("b", b)],
                 const=("b",), transpose_a=ta, transpose_b=tb)
            case("MatMul", f"both inputs transpose_a={ta} transpose_b={tb}",
                 [("a", a), ("b", b)], transpose_a=ta, transpose_b=tb)
    case("MatMul", "1x1", [("a", f32([[2.0]])), ("b", f32([[-3.0]]))], const=("b",))
    for k, (name, xs, ys, adj_x, adj_y) in enumerate([
        ("[2,3,4]x[2,4,5]", [2, 3, 4], [2, 4, 5], False, False),
        ("broadcast [2,1,3,4]x[3,4,2]", [2, 1, 3, 4], [3, 4, 2], False, False),
        ("adj_x", [2, 4, 3], [2, 4, 5], True, False),
        ("adj_y", [2, 3, 4], [1, 5, 4], False, True),
        ("rank 2", [3, 4], [4, 2], False, False),
    ]):
        case("BatchMatMulV2", name, [("x", uniform(xs, 190 + k)), ("y", uniform(ys, 195 + k))],
             adj_x=adj_x, adj_y=adj_y)
    case("BatchMatMulV2", "constant y", [("x", uniform([2, 3, 4], 199)),
                                         ("y", uniform([4, 3], 200))], const=("y",))
    # FusedBatchNormV3 (inference).
    for k, eps in enumerate([1e-3, 1e-5, 0.1]):
        c = 3
        case("FusedBatchNormV3", f"epsilon {eps}",
             [("x", uniform([2, 3, 2, c], 210 + k, -3, 3)), ("scale", uniform([c], 211, 0.5, 2)),
              ("offset", uniform([c], 212)), ("mean", uniform([c], 213)),
              ("variance", uniform([c], 214, 0.01, 2))],
             const=("scale", "offset", "mean", "variance"), outputs=[0], epsilon=eps,
             is_training=False)
    # LRN.
    for k, (radius, bias, alpha, beta) in enumerate([(2, 1.0, 1e-4, 0.75), (1, 2.0, 0.5, 0.5),
                                                    (5, 1.0, 1.0, 1.0), (0, 0.5, 0.1, 0.25)]):
        case("LRN", f"radius {radius} bias {bias} alpha {alpha} beta {beta}",
             [("input", uniform([1, 2, 3, 6], 220 + k, -3, 3))], depth_radius=radius, bias=bias,
             alpha=alpha, beta=beta)


def graph_info_cases():
    """Rank and ShapeN: values known from the static shapes."""
    case("Rank", "[2, 3, 4]", [("input", uniform([2, 3, 4], 90, -1, 1))])
    case("Rank", "scalar", [("input", f32(1.5))])
    case("ShapeN", "two inputs", [("input", [uniform([2, 3], 91, -1, 1), uniform([4], 92, -1, 1)])],
         out_type=tf.int32)


def main():
    only = set(sys.argv[1:])
    unary_cases()
    binary_cases()
    reduction_cases()
    shape_cases()
    nn_cases()
    graph_info_cases()
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for op, cases in sorted(CASES.items()):
        if only and op not in only:
            continue
        path = os.path.join(OUT, f"{op}.json")
        with open(path, "w") as f:
            json.dump({"op": op, "cases": cases}, f, separators=(",", ":"), allow_nan=False)
            f.write("\n")
        total += os.path.getsize(path)
        print(f"{op}: {len(cases)} cases")
    print(f"{len(CASES)} ops, {sum(len(c) for c in CASES.values())} cases, {total} bytes")
    for line in SKIPPED:
        print("skipped (TensorFlow refused):", line)


if __name__ == "__main__":
    main()

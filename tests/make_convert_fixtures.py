"""Fixtures for `tfjsc convert` (tests/convert.rs), made with TensorFlow on a developer machine.

Run with the TensorFlow 2.21 + tensorflowjs 4.22 environment:

    /work/venv-tf/bin/python tests/make_convert_fixtures.py

Writes, under tests/fixtures/convert/ (small, committed):
- saved_model/      a Keras 3 CNN (conv + batch norm + relu6, depthwise, residual add, dense,
                    softmax) saved with tf.saved_model.save; plus tfjs/ (the Python converter's
                    output, the golden reference for node/attribute/weight comparison);
- sharded/          a SavedModel whose variables lie in several data shards;
- frozen/           frozen.pb: the same CNN frozen with convert_variables_to_constants_v2;
- session_bundle/   export.meta + export checkpoint written with tf.compat.v1 graph + Saver;
- session_bundle_v1/ the same kind of graph saved by a V1 Saver (write_version=V1, sharded=True,
                    variables on two devices): export.meta, export-00000-of-00002 and
                    export-00001-of-00002 (tensor slice tables), and the `checkpoint` state file;
                    dense1/kernel is partitioned in 3 column blocks (fixed_size_partitioner), so
                    it is saved as 3 slices of one tensor. TensorFlow's answer is computed after
                    restoring these files into a fresh graph;
- hub/              a TF Hub-style module directory (SavedModel with a "default" signature), and
                    hub.tar.gz, the same directory as a compressed archive;
- keras2/           a tf_keras (Keras 2) CNN whose graph has FusedBatchNormV3 after biased
                    convolutions and a LeakyReLU;
- tf1_saved_model/  a TF1-style SavedModel written with tf.compat.v1 simple_save;
- hub_tf1/          a TF1 Hub module (tfhub_module.pb + a SavedModel whose graph variants are the
                    empty tag set and {"train"}, "default" and "logits" signatures), written by
                    hand with tf.compat.v1 because tensorflow_hub 0.16 no longer has hub.Module;
                    hub_tf1.tar.gz, the same folder as a compressed archive;
- prelu/            Keras 3 PReLU after a convolution and a depthwise convolution;
- lstm/             Keras 3 LSTM(4) + Dense(2) on a (1, 5, 3) input: a While loop whose body reads
                    the LSTM's variables through captured resource inputs; plus tfjs/ (the Python
                    converter's output with --control_flow_v2=true, the golden reference);
- gather_loop/      a tf.while_loop whose body looks a token up in an embedding variable
                    (ResourceGather of a captured handle) and mixes it into the state;
- nested_loop/      a tf.while_loop whose body runs a second one, whose body calls a
                    tf.function reading a variable (the handle passed on through two loops and a
                    call); plus tfjs/ (the Python converter's output with --control_flow_v2=true);
- each with input_0.npy and expected_0.npy (TensorFlow's answer) and case.json.
The full-size MobileNetV2 and EfficientNetB0 SavedModels used for the measurements in
docs/convert.md are the ones `tests/make_fixtures.py --full` writes (saved_model/ beside their
input_0.npy and expected_0.npy); they are too large to commit.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import tensorflow as tf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "convert")
PYTHON_CONVERTER = [sys.executable, "-m", "tensorflowjs.converters.converter"]


def fresh(path):
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def write_tar_gz(folder, path):
    """The files of `folder` (a Hub module), at the archive's root, as the TF Hub serves them."""
    with tarfile.open(path, "w:gz") as archive:
        for name in sorted(os.listdir(folder)):
            archive.add(os.path.join(folder, name), arcname=name)


def write_case(directory, inputs, outputs, notes, input_format="tf_saved_model", **extra):
    for index, (name, value) in enumerate(inputs):
        np.save(os.path.join(directory, f"input_{index}.npy"), value)
    for index, (name, value) in enumerate(outputs):
        np.save(os.path.join(directory, f"expected_{index}.npy"), value)
    case = {
        "inputs": [{"name": n, "file": f"input_{i}.npy"} for i, (n, _) in enumerate(inputs)],
        "outputs": [{"name": n, "file": f"expected_{i}.npy"} for i, (n, _) in enumerate(outputs)],
        "notes": notes,
        "input_format": input_format,  # tfjsc convert --input_format (tests/tfjs_legacy_reference.mjs)
        **extra,
    }
    with open(os.path.join(directory, "case.json"), "w") as f:
        json.dump(case, f, indent=2)


def keras_cnn(seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), batch_size=1, name="input")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = keras.layers.BatchNormalization(name="dw_bn")(y)
    y = keras.layers.ReLU(6.0, name="dw_relu")(y)
    y = keras.layers.Conv2D(8, 1, padding="same", name="project")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.Conv2D(6, 3, padding="valid", activation="relu", name="head")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="logits")(x)
    model = keras.Model(inputs, outputs)
    # Batch-norm statistics away from the identity, so folding them matters.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.uniform(-0.5, 0.5, n).astype(np.float32))
            layer.moving_mean.assign(rng.uniform(-0.3, 0.3, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.uniform(-0.5, 0.5, layer.bias.shape).astype(np.float32))
    return model


class Module(tf.Module):
    """A Keras model wrapped for tf.saved_model.save with one fixed-shape signature."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([1, 12, 12, 3], tf.float32, name="input")])
    def serve(self, input):
        return {"output": self.model(input, training=False)}


def input_of(seed):
    return np.random.default_rng(seed).uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32)


def python_convert(source, destination, *flags):
    subprocess.run(PYTHON_CONVERTER + list(flags) + [source, destination], check=True)


def saved_model_fixture():
    directory = fresh(os.path.join(ROOT, "saved_model"))
    model = keras_cnn(1)
    module = Module(model)
    tf.saved_model.save(module, os.path.join(directory, "model"), signatures={"serving_default": module.serve})
    x = input_of(2)
    loaded = tf.saved_model.load(os.path.join(directory, "model"))
    y = loaded.signatures["serving_default"](input=tf.constant(x))["output"].numpy()
    python_convert(os.path.join(directory, "model"), os.path.join(directory, "tfjs"), "--input_format=tf_saved_model")
    write_case(directory, [("input", x)], [("Identity", y)], "Keras 3 CNN, tf.saved_model.save", model="model")
    return model, module


def sharded_fixture(model):
    directory = fresh(os.path.join(ROOT, "sharded"))
    module = Module(model)
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=2048)
    )
    tf.saved_model.save(module, os.path.join(directory, "model"), signatures={"serving_default": module.serve}, options=options)
    shards = [f for f in os.listdir(os.path.join(directory, "model", "variables")) if ".data-" in f]
    assert len(shards) > 1, shards
    x = input_of(3)
    y = tf.saved_model.load(os.path.join(directory, "model")).signatures["serving_default"](input=tf.constant(x))["output"].numpy()
    write_case(directory, [("input", x)], [("Identity", y)], f"same CNN, variables in {len(shards)} shards", model="model")


def frozen_fixture(module):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    directory = fresh(os.path.join(ROOT, "frozen"))
    function = module.serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(function)
    graph = frozen.graph.as_graph_def()
    with open(os.path.join(directory, "frozen.pb"), "wb") as f:
        f.write(graph.SerializeToString())
    output = frozen.outputs[0].name.split(":")[0]
    x = input_of(4)
    y = module.serve(tf.constant(x))["output"].numpy()
    write_case(directory, [("input", x)], [(output, y)], "the CNN frozen to a GraphDef", input_format="tf_frozen_model", model="frozen.pb", output_node_names=[output])


def session_bundle_fixture():
    directory = fresh(os.path.join(ROOT, "session_bundle"))
    v1 = tf.compat.v1
    graph = tf.Graph()
    rng = np.random.default_rng(5)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [1, 6], name="input")
        w1 = v1.Variable(rng.normal(size=(6, 8)).astype(np.float32), name="dense1/kernel")
        b1 = v1.Variable(rng.normal(size=(8,)).astype(np.float32), name="dense1/bias")
        w2 = v1.Variable(rng.normal(size=(8, 3)).astype(np.float32), name="dense2/kernel")
        h = tf.nn.relu(tf.matmul(x, w1) + b1, name="hidden")
        out = tf.identity(tf.matmul(h, w2), name="output")
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            saver.save(session, os.path.join(directory, "export"), write_meta_graph=True)
            value = rng.uniform(-1, 1, (1, 6)).astype(np.float32)
            expected = session.run(out, {x: value})
    os.remove(os.path.join(directory, "checkpoint"))
    write_case(directory, [("input", value)], [("output", expected)], "tf.compat.v1 graph + Saver (session bundle)", input_format="tf_session_bundle", model=".", output_node_names=["output"])


def session_bundle_v1_fixture():
    directory = fresh(os.path.join(ROOT, "session_bundle_v1"))
    v1 = tf.compat.v1
    rng = np.random.default_rng(11)
    kernel = rng.normal(size=(6, 10)).astype(np.float32)

    def part_of(full):
        # A partitioned variable's initializer is called once per part, with the part's offset.
        def initializer(shape, dtype=None, partition_info=None):
            offset = partition_info.var_offset if partition_info else [0] * len(shape)
            return tf.constant(full[tuple(slice(o, o + n) for o, n in zip(offset, shape))])

        return initializer

    graph = tf.Graph()
    config = v1.ConfigProto(device_count={"CPU": 2})
    with graph.as_default():
        x = v1.placeholder(tf.float32, [1, 6], name="input")
        with tf.device("/cpu:0"):
            w1 = v1.get_variable("dense1/kernel", shape=(6, 10), initializer=part_of(kernel),
                                 partitioner=v1.fixed_size_partitioner(3, axis=1))
        with tf.device("/cpu:1"):
            b1 = v1.get_variable("dense1/bias", initializer=rng.normal(size=(10,)).astype(np.float32))
            w2 = v1.get_variable("dense2/kernel", initializer=rng.normal(size=(10, 3)).astype(np.float32))
        h = tf.nn.relu(tf.matmul(x, w1) + b1, name="hidden")
        tf.identity(tf.matmul(h, w2), name="output")
        saver = v1.train.Saver(write_version=v1.train.SaverDef.V1, sharded=True, save_relative_paths=True)
        with v1.Session(graph=graph, config=config) as session:
            session.run(v1.global_variables_initializer())
            saver.save(session, os.path.join(directory, "export"), write_meta_graph=True)
    files = sorted(os.listdir(directory))
    assert files == ["checkpoint", "export-00000-of-00002", "export-00001-of-00002", "export.meta"], files
    # TensorFlow's answer from the files as written: a fresh graph restored from them.
    value = rng.uniform(-1, 1, (1, 6)).astype(np.float32)
    with tf.Graph().as_default() as restored, v1.Session(graph=restored, config=config) as session:
        v1.train.import_meta_graph(os.path.join(directory, "export.meta")).restore(
            session, os.path.join(directory, "export-?????-of-00002"))
        expected = session.run("output:0", {"input:0": value})
    write_case(directory, [("input", value)], [("output", expected)],
               "tf.compat.v1 graph saved by a V1 Saver in 2 shards, with a partitioned variable",
               input_format="tf_session_bundle", model=".", output_node_names=["output"])


def hub_fixture():
    directory = fresh(os.path.join(ROOT, "hub"))
    module_dir = os.path.join(directory, "module")
    model = keras_cnn(7)
    module = Module(model)
    tf.saved_model.save(module, module_dir, signatures={"default": module.serve})
    x = input_of(8)
    y = tf.saved_model.load(module_dir).signatures["default"](input=tf.constant(x))["output"].numpy()
    write_tar_gz(module_dir, os.path.join(directory, "hub.tar.gz"))
    write_case(directory, [("input", x)], [("Identity", y)], "TF Hub-style module: directory and .tar.gz", input_format="tf_hub", model="module")


def keras2_fixture():
    """tf_keras (Keras 2): FusedBatchNormV3 in the graph, LeakyReLU, a Dense with bias."""
    import tf_keras

    directory = fresh(os.path.join(ROOT, "keras2"))
    tf_keras.utils.set_random_seed(9)
    inputs = tf_keras.Input((10, 10, 3), batch_size=1, name="input")
    x = tf_keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    x = tf_keras.layers.LeakyReLU(0.1, name="leaky")(x)
    x = tf_keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", name="dw")(x)
    x = tf_keras.layers.BatchNormalization(name="dw_bn")(x)
    x = tf_keras.layers.ReLU(name="relu")(x)
    x = tf_keras.layers.Flatten(name="flatten")(x)
    outputs = tf_keras.layers.Dense(4, activation="relu", name="dense")(x)
    model = tf_keras.Model(inputs, outputs)
    rng = np.random.default_rng(10)
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n),
                               rng.uniform(-0.3, 0.3, n), rng.uniform(0.5, 2.0, n)])
        elif getattr(layer, "bias", None) is not None:
            weights = layer.get_weights()
            weights[-1] = rng.uniform(-0.5, 0.5, weights[-1].shape)
            layer.set_weights(weights)
    x = rng.uniform(-1, 1, (1, 10, 10, 3)).astype(np.float32)
    tf.saved_model.save(model, os.path.join(directory, "model"))
    loaded = tf.saved_model.load(os.path.join(directory, "model"))
    signature = loaded.signatures["serving_default"]
    key = list(signature.structured_outputs.keys())[0]
    y = signature(input=tf.constant(x))[key].numpy()
    write_case(directory, [("input", x)], [("Identity", y)], f"tf_keras (Keras 2) CNN: FusedBatchNormV3, LeakyReLU; signature output {key!r}", model="model")


def tf1_saved_model_fixture():
    """A TF1-style SavedModel (graph + Session + simple_save): no object graph, no functions."""
    directory = fresh(os.path.join(ROOT, "tf1_saved_model"))
    v1 = tf.compat.v1
    graph = tf.Graph()
    rng = np.random.default_rng(11)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [1, 6], name="x")
        w = v1.Variable(rng.normal(size=(6, 4)).astype(np.float32), name="w")
        b = v1.get_variable("b", initializer=rng.normal(size=(4,)).astype(np.float32), use_resource=True)
        y = tf.nn.relu(tf.matmul(x, w) + b, name="y")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            v1.saved_model.simple_save(session, os.path.join(directory, "model"), inputs={"x": x}, outputs={"y": y})
            value = rng.uniform(-1, 1, (1, 6)).astype(np.float32)
            expected = session.run(y, {x: value})
    write_case(directory, [("x", value)], [("y", expected)], "TF1 SavedModel (simple_save)", model="model")


def hub_tf1_fixture():
    """A TF1 Hub module as tensorflow_hub's native_module.py exports it: a SavedModel whose
    MetaGraphDefs are the graph variants (the empty tag set for inference, {"train"} here too),
    signatures by tensor name, variables saved under their names in the module graph, and
    tfhub_module.pb, a ModuleDef with format FORMAT_V3 (field 1 = 3)."""
    directory = fresh(os.path.join(ROOT, "hub_tf1"))
    module_dir = os.path.join(directory, "module")
    v1 = tf.compat.v1
    rng = np.random.default_rng(14)
    w1 = rng.normal(size=(5, 7)).astype(np.float32)
    b1 = rng.normal(size=(7,)).astype(np.float32)
    w2 = rng.normal(size=(7, 3)).astype(np.float32)
    value = rng.uniform(-1, 1, (1, 5)).astype(np.float32)  # tfjsc compile takes batch 1 for None
    builder = v1.saved_model.Builder(module_dir)
    for tags, training in [([], False), (["train"], True)]:
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, 5], name="x")
            # One TF1 reference variable and two resource variables, as modules hold either.
            kernel = v1.Variable(w1, name="dense/kernel")
            bias = v1.get_variable("dense/bias", initializer=b1, use_resource=True)
            head = v1.get_variable("head/kernel", initializer=w2, use_resource=True)
            hidden = tf.nn.relu(tf.matmul(x, kernel) + bias, name="hidden")
            if training:
                hidden = tf.nn.dropout(hidden, rate=0.5)
            logits = tf.matmul(hidden, head, name="logits")
            probabilities = tf.nn.softmax(logits, name="probabilities")
            info = v1.saved_model.utils.build_tensor_info
            signatures = {
                "default": v1.saved_model.signature_def_utils.build_signature_def(
                    {"x": info(x)}, {"default": info(probabilities)}),
                "logits": v1.saved_model.signature_def_utils.build_signature_def(
                    {"x": info(x)}, {"logits": info(logits)}),
            }
            with v1.Session(graph=graph) as session:
                session.run(v1.global_variables_initializer())
                if not tags:
                    builder.add_meta_graph_and_variables(session, tags, signature_def_map=signatures)
                    expected = session.run(probabilities, {x: value})
                else:
                    builder.add_meta_graph(tags, signature_def_map=signatures)
    builder.save()
    # ModuleDef { format: FORMAT_V3 }: field 1, varint 3.
    with open(os.path.join(module_dir, "tfhub_module.pb"), "wb") as f:
        f.write(bytes([0x08, 0x03]))
    write_tar_gz(module_dir, os.path.join(directory, "hub_tf1.tar.gz"))
    write_case(directory, [("x", value)], [("probabilities", expected)], "TF1 Hub module (tfhub_module.pb), empty tag set, signature default", input_format="tf_hub", model="module")


def prelu_fixture():
    """Keras 3 PReLU after convolutions: per-position alpha, and per-channel (shared_axes)."""
    import keras

    directory = fresh(os.path.join(ROOT, "prelu"))
    keras.utils.set_random_seed(12)
    inputs = keras.Input((8, 8, 3), batch_size=1, name="input")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.PReLU(name="prelu")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2], name="prelu_shared")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(13)
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.05, 0.4, layer.alpha.shape).astype(np.float32))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.uniform(-0.5, 0.5, layer.bias.shape).astype(np.float32))

    class PreluModule(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="input")])
        def serve(self, input):
            return {"output": self.model(input, training=False)}

    module = PreluModule(model)
    tf.saved_model.save(module, os.path.join(directory, "model"), signatures={"serving_default": module.serve})
    x = rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    y = module.serve(tf.constant(x))["output"].numpy()
    write_case(directory, [("input", x)], [("Identity", y)], "Keras 3 PReLU after convolutions", model="model")


def lstm_fixture():
    """A Keras 3 LSTM: its While body reads three variables captured as resource inputs."""
    import keras

    directory = fresh(os.path.join(ROOT, "lstm"))
    keras.utils.set_random_seed(20)
    inputs = keras.Input((5, 3), batch_size=1, name="input")
    x = keras.layers.LSTM(4, name="lstm")(inputs)
    x = keras.layers.Dense(2, name="dense")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(21)
    for weight in model.weights:
        weight.assign(rng.uniform(-0.5, 0.5, weight.shape).astype(np.float32))

    class LstmModule(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([1, 5, 3], tf.float32, name="input")])
        def serve(self, input):
            return {"output": self.model(input, training=False)}

    module = LstmModule(model)
    tf.saved_model.save(module, os.path.join(directory, "model"), signatures={"serving_default": module.serve})
    x = rng.uniform(-1, 1, (1, 5, 3)).astype(np.float32)
    loaded = tf.saved_model.load(os.path.join(directory, "model"))
    y = loaded.signatures["serving_default"](input=tf.constant(x))["output"].numpy()
    python_convert(os.path.join(directory, "model"), os.path.join(directory, "tfjs"),
                   "--input_format=tf_saved_model", "--control_flow_v2=true")
    # legacy_format: TF.js 0.x has no While op (tests/tfjs_legacy_reference.mjs skips the case).
    write_case(directory, [("input", x)], [("Identity", y)], "Keras 3 LSTM: While capturing variables", model="model",
               legacy_format=False)


def gather_loop_fixture():
    """A decoding loop: each step looks its token up in an embedding variable (ResourceGather of
    a captured handle in the While body) and mixes it into the state with a matrix variable."""
    directory = fresh(os.path.join(ROOT, "gather_loop"))
    rng = np.random.default_rng(22)

    class DecodeModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tf.Variable(rng.uniform(-1, 1, (10, 4)).astype(np.float32), name="embedding")
            self.mix = tf.Variable(rng.uniform(-0.5, 0.5, (4, 4)).astype(np.float32), name="mix")

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="state"),
                                      tf.TensorSpec([1], tf.int32, name="token")])
        def serve(self, state, token):
            def step(i, h, t):
                e = tf.gather(self.embedding, t)  # ResourceGather inside the loop
                h = tf.tanh(tf.matmul(h + e, self.mix))
                t = tf.math.floormod(t * 3 + 1, 10)
                return i + 1, h, t

            _, h, _ = tf.while_loop(lambda i, h, t: i < 4, step, [tf.constant(0), state, token])
            return {"output": h}

    module = DecodeModule()
    tf.saved_model.save(module, os.path.join(directory, "model"), signatures={"serving_default": module.serve})
    state = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
    token = np.array([7], dtype=np.int32)
    loaded = tf.saved_model.load(os.path.join(directory, "model"))
    y = loaded.signatures["serving_default"](state=tf.constant(state), token=tf.constant(token))["output"].numpy()
    write_case(directory, [("state", state), ("token", token)], [("Identity", y)],
               "tf.while_loop with an embedding lookup of a captured variable (ResourceGather)", model="model",
               legacy_format=False)


def nested_loop_fixture():
    """A loop in a loop's body, whose body calls a tf.function (a cell) that reads a variable:
    the captured handle is passed on through the inner loop and the call."""
    directory = fresh(os.path.join(ROOT, "nested_loop"))
    rng = np.random.default_rng(23)

    class NestedModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.mix = tf.Variable(rng.uniform(-0.5, 0.5, (4, 4)).astype(np.float32), name="mix")

        @tf.function
        def cell(self, h):
            return tf.tanh(tf.matmul(h, self.mix))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="state")])
        def serve(self, state):
            def step(i, h):
                _, h = tf.while_loop(lambda j, g: j < 2, lambda j, g: (j + 1, self.cell(g)), [tf.constant(0), h])
                return i + 1, h

            _, h = tf.while_loop(lambda i, h: i < 3, step, [tf.constant(0), state])
            return {"output": h}

    module = NestedModule()
    tf.saved_model.save(module, os.path.join(directory, "model"), signatures={"serving_default": module.serve})
    state = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
    loaded = tf.saved_model.load(os.path.join(directory, "model"))
    y = loaded.signatures["serving_default"](state=tf.constant(state))["output"].numpy()
    python_convert(os.path.join(directory, "model"), os.path.join(directory, "tfjs"),
                   "--input_format=tf_saved_model", "--control_flow_v2=true")
    write_case(directory, [("state", state)], [("Identity", y)],
               "a loop in a loop's body calling a tf.function that reads a variable", model="model",
               legacy_format=False)


def main():
    if sys.argv[1:] == ["lstm"]:  # only the LSTM fixture (the others stay as committed)
        lstm_fixture()
        return
    if sys.argv[1:] == ["session_bundle_v1"]:
        session_bundle_v1_fixture()
        return
    if sys.argv[1:] == ["gather_loop"]:
        gather_loop_fixture()
        return
    if sys.argv[1:] == ["nested_loop"]:
        nested_loop_fixture()
        return
    os.makedirs(ROOT, exist_ok=True)
    model, module = saved_model_fixture()
    sharded_fixture(model)
    frozen_fixture(module)
    session_bundle_fixture()
    session_bundle_v1_fixture()
    hub_fixture()
    keras2_fixture()
    tf1_saved_model_fixture()
    prelu_fixture()
    hub_tf1_fixture()
    lstm_fixture()
    gather_loop_fixture()
    nested_loop_fixture()


if __name__ == "__main__":
    main()

#!/usr/bin/env node
// TF.js reference outputs for benches/real_models.py: one graph model, all of its outputs.
//
//   node benches/real_models_tfjs.mjs MODEL.json INPUTS.json OUTDIR
//
// INPUTS.json: [{"name": "input", "file": "/path/x.npy"}, ...] (uint8 / bool / int64 inputs are
// given to TF.js as int32, its only integer dtype). Loads MODEL.json and its weight shards with
// tf.loadGraphModel through an IOHandler reading them from disk (as tests/tfjs_reference.mjs
// does), runs model.execute (model.executeAsync if the graph has dynamic ops) on the pure-JS
// "cpu" backend, and writes every output node to OUTDIR/out_<i>.npy (float32 or int32) plus
// OUTDIR/outputs.json: [{"name", "file", "dtype", "shape"}] in model.outputNodes order. Prints
// one JSON line: {"ok", "execute", "load_ms", "run_ms", "outputs"}.
//
// Needs @tensorflow/tfjs 4.x (tfjs-node is not required), found through TFJS_MODULES, NODE_PATH,
// ./node_modules or /work/tfjs-node/node_modules.

import fs from "node:fs";
import path from "node:path";

import { readNpy, writeNpy } from "../tests/npy.mjs";
import { diskHandler, tf } from "../tests/tfjs_disk.mjs";

async function main() {
  const [modelJson, inputsJson, outDir] = process.argv.slice(2);
  if (!outDir) {
    console.error("usage: node benches/real_models_tfjs.mjs MODEL.json INPUTS.json OUTDIR");
    process.exit(2);
  }
  await tf.setBackend("cpu");
  await tf.ready();
  let t0 = performance.now();
  const model = await tf.loadGraphModel(diskHandler(modelJson));
  const loadMs = performance.now() - t0;
  const feeds = {};
  for (const { name, file } of JSON.parse(fs.readFileSync(inputsJson, "utf8"))) {
    const x = readNpy(file);
    if (x.dtype === "float32") {
      feeds[name] = tf.tensor(x.data, x.shape, "float32");
    } else if (x.dtype === "float64") {
      feeds[name] = tf.tensor(Float32Array.from(x.data), x.shape, "float32");
    } else {
      feeds[name] = tf.tensor(Int32Array.from(x.data, Number), x.shape, "int32");
    }
  }
  const names = model.outputNodes;
  t0 = performance.now();
  let ys;
  let how = "execute";
  try {
    ys = model.execute(feeds, names);
  } catch (e) { // dynamic ops (control flow, NonMaxSuppression, Where, ...)
    if (!/executeAsync/.test(String(e && e.message))) throw e;
    how = "executeAsync";
    ys = await model.executeAsync(feeds, names);
  }
  if (!Array.isArray(ys)) ys = [ys];
  const listing = [];
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    const dtype = y.dtype === "float32" ? "float32" : "int32";
    const raw = await y.data();
    const data = dtype === "float32" ? Float32Array.from(raw) : Int32Array.from(raw, Number);
    const file = `out_${i}.npy`;
    writeNpy(path.join(outDir, file), { dtype, shape: y.shape, data });
    listing.push({ name: names[i], file, dtype, shape: y.shape, tfjs_dtype: y.dtype });
  }
  const runMs = performance.now() - t0;
  fs.writeFileSync(path.join(outDir, "outputs.json"), JSON.stringify(listing, null, 1) + "\n");
  tf.dispose([...Object.values(feeds), ...ys]);
  model.dispose();
  console.log(JSON.stringify({ ok: true, execute: how, load_ms: loadMs, run_ms: runMs,
                               outputs: listing }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});

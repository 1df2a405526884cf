#!/usr/bin/env node
// TF.js reference outputs for tfjsc fixtures.
//
// Loads <fixture>/model.json with tf.loadGraphModel through an IOHandler that reads model.json
// and its weight shards from disk, runs it on <fixture>/input_0.npy (or, for a fixture of several
// inputs, every input its case.json names) with the pure-JS "cpu"
// backend, and writes <fixture>/expected_tfjs_0.npy (float32 or int32, same shape as the
// output). Prints one JSON line per fixture: {"fixture", "shape", "dtype", "max_abs_vs_tf"}
// (max |TF.js - TF| against expected_0.npy when that file exists).
//
// Usage (needs @tensorflow/tfjs 4.x; tfjs-node is not required):
//   NODE_PATH=/work/tfjs-node/node_modules node tests/tfjs_reference.mjs tests/fixtures/NAME...
// NODE_PATH does not apply to ES-module imports, so the module is resolved through
// createRequire from NODE_PATH (or TFJS_MODULES, or the current directory).

import fs from "node:fs";
import path from "node:path";

import { readNpy, writeNpy } from "./npy.mjs";
import { diskHandler, tf } from "./tfjs_disk.mjs";

async function runFixture(dir) {
  const model = await tf.loadGraphModel(diskHandler(path.join(dir, "model.json")));
  // Every input case.json names (by its node name), or input_0.npy alone.
  const caseFile = path.join(dir, "case.json");
  const named = fs.existsSync(caseFile) ? JSON.parse(fs.readFileSync(caseFile, "utf8")).inputs : null;
  const files = named && named.length > 1 ? named : [{ name: null, file: "input_0.npy" }];
  const tensors = files.map(({ file }) => {
    const x = readNpy(path.join(dir, file));
    if (x.dtype !== "float32" && x.dtype !== "int32") throw new Error(`input dtype ${x.dtype}`);
    return tf.tensor(x.data, x.shape, x.dtype);
  });
  const input = files.length > 1
    ? Object.fromEntries(files.map(({ name }, i) => [name, tensors[i]]))
    : tensors[0];
  let y;
  try {
    y = model.execute(input);
  } catch (e) { // dynamic ops (control flow, NonMaxSuppression, Where, ...)
    if (!/executeAsync/.test(String(e && e.message))) throw e;
    y = await model.executeAsync(input);
  }
  const out = Array.isArray(y) ? y[0] : y;
  const dtype = out.dtype === "int32" ? "int32" : "float32";
  const data = dtype === "int32" ? Int32Array.from(out.dataSync()) : Float32Array.from(out.dataSync());
  writeNpy(path.join(dir, "expected_tfjs_0.npy"), { dtype, shape: out.shape, data });
  const res = { fixture: dir, shape: out.shape, dtype, max_abs_vs_tf: null };
  const expFile = path.join(dir, "expected_0.npy");
  if (fs.existsSync(expFile)) {
    const e = readNpy(expFile);
    if (e.shape.join(",") !== out.shape.join(",")) {
      throw new Error(`${dir}: TF.js shape [${out.shape}] vs TF [${e.shape}]`);
    }
    let m = 0;
    for (let i = 0; i < data.length; i++) {
      const d = Math.abs(Number(data[i]) - Number(e.data[i]));
      if (!(d <= m)) m = d; // NaN propagates
    }
    res.max_abs_vs_tf = m;
  }
  tf.dispose([...tensors, y]);
  model.dispose();
  return res;
}

async function main() {
  const dirs = process.argv.slice(2);
  if (!dirs.length) {
    console.error("usage: node tests/tfjs_reference.mjs FIXTURE_DIR...");
    process.exit(2);
  }
  await tf.setBackend("cpu");
  await tf.ready();
  for (const d of dirs) console.log(JSON.stringify(await runFixture(d)));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});

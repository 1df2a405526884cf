#!/usr/bin/env node
// TF.js 0.x check of `tfjsc convert --output_format=legacy`.
//
// For each case directory (default: every folder of tests/fixtures/convert), converts the case's
// model with `tfjsc convert --output_format=legacy` into a scratch folder, serves that folder on a
// loopback HTTP server, loads it with TF.js 0.x's own loader,
// tf.loadFrozenModel(".../web_model.pb", ".../weights_manifest.json") (fetching the
// graph, the manifest and the weight shards the way a browser would), runs it on the case's
// inputs with the pure-JS "cpu" backend, and compares every output with TensorFlow's answer.
// Prints one JSON line per case: {"case", "output", "shape", "max_abs", "max_ref", "relative"}
// (relative = max |TF.js - TF| / max |TF|); exits 1 if any case fails to convert, load or run,
// or if relative > 1e-4 (--tolerance=X to change), as tests/convert.rs requires of tfjsc.
//
// Case directories follow tests/fixtures/convert: case.json names the model ("model"), its
// "input_format" (default tf_saved_model), "output_node_names" if any, and the input and output
// .npy files by node name. A directory holding saved_model/saved_model.pb (the full-size models
// of `tests/make_fixtures.py --full`) is converted from that SavedModel.
//
// Usage (needs @tensorflow/tfjs 0.15.x, which bundles tfjs-converter 0.8.4, the last with
// loadFrozenModel; install it once with `npm install @tensorflow/tfjs@0.15.3` in /work/tfjs-legacy):
//   cargo build --release -p tfjsc
//   node tests/tfjs_legacy_reference.mjs [--tfjsc=PATH] [--tolerance=X] [CASE_DIR...] [-- CONVERT_FLAGS...]
// Flags after `--` go to `tfjsc convert` (e.g. -- --quantize_uint8='*'). The module is found
// through TFJS_LEGACY_MODULES, NODE_PATH, ./node_modules or /work/tfjs-legacy/node_modules, and
// must be TF.js 0.x (TF.js 1.0 removed loadFrozenModel).

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { readNpy } from "./npy.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const GRAPH_FILE = "web_model.pb";
const MANIFEST_FILE = "weights_manifest.json";

/// Runs `f` with console.log/warn silenced (TF.js 0.x greets Node users on load, and says so
/// when deprecation warnings are turned off), so that stdout is only the JSON lines.
function quietly(f) {
  const { log, warn } = console;
  console.log = console.warn = () => {};
  try {
    return f();
  } finally {
    Object.assign(console, { log, warn });
  }
}

function loadTf() {
  const roots = [process.env.TFJS_LEGACY_MODULES, ...(process.env.NODE_PATH || "").split(path.delimiter),
                 path.join(process.cwd(), "node_modules"), "/work/tfjs-legacy/node_modules"]
    .filter(Boolean);
  for (const root of roots) {
    let tf;
    try {
      tf = quietly(() => createRequire(path.join(path.resolve(root), "noop.js"))("@tensorflow/tfjs"));
    } catch (e) {
      if (e.code !== "MODULE_NOT_FOUND") throw e;
      continue;
    }
    if (typeof tf.loadFrozenModel === "function") return tf;
  }
  throw new Error("@tensorflow/tfjs 0.x (with loadFrozenModel) not found; " +
                  "npm install @tensorflow/tfjs@0.15.3 and set TFJS_LEGACY_MODULES to its node_modules");
}


/// A tensor TF.js 0.x can take (it has float32, int32 and bool; int64/float64 narrow as the
/// converter narrows weights).
function toTensor(tf, { dtype, shape, data }) {
  if (dtype === "float32" || dtype === "int32") return tf.tensor(data, shape, dtype);
  if (dtype === "float64") return tf.tensor(Float32Array.from(data), shape, "float32");
  if (dtype === "int64") return tf.tensor(Int32Array.from(data, Number), shape, "int32");
  if (dtype === "bool") return tf.tensor(data, shape, "bool");
  return tf.tensor(Int32Array.from(data), shape, "int32");
}

// ---- a loopback server for one folder -------------------------------------------------------
function serveFolder(folder) {
  const requested = [];
  const server = http.createServer((request, response) => {
    const name = decodeURIComponent(new URL(request.url, "http://localhost").pathname).slice(1);
    requested.push(name);
    const file = path.join(folder, name);
    if (name.includes("/") || name.includes("\\") || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      response.writeHead(404);
      response.end();
      return;
    }
    response.writeHead(200, { "Content-Type": "application/octet-stream" });
    response.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({ base: `http://127.0.0.1:${server.address().port}/`, requested,
                close: () => new Promise((done) => server.close(done)) });
    });
  });
}

// ---- conversion ------------------------------------------------------------------------------
function conversionOf(caseDir, kase) {
  const full = path.join(caseDir, "saved_model");
  if (fs.existsSync(path.join(full, "saved_model.pb"))) {
    return { input: full, flags: ["--input_format=tf_saved_model"] };
  }
  const flags = [`--input_format=${kase.input_format || "tf_saved_model"}`];
  if (kase.output_node_names) flags.push(`--output_node_names=${kase.output_node_names.join(",")}`);
  return { input: path.join(caseDir, kase.model), flags };
}

function convert(tfjsc, caseDir, kase, extraFlags, output) {
  const { input, flags } = conversionOf(caseDir, kase);
  // Extra flags first: a value-less --quantize_* directly before the paths would take one.
  execFileSync(tfjsc, ["convert", ...extraFlags, "--output_format=legacy", "--quiet", ...flags, input, output],
               { stdio: ["ignore", "ignore", "pipe"] });
}

async function runCase(tf, tfjsc, caseDir, extraFlags, tolerance) {
  const kase = JSON.parse(fs.readFileSync(path.join(caseDir, "case.json"), "utf8"));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "tfjs-legacy-"));
  const results = [];
  try {
    convert(tfjsc, caseDir, kase, extraFlags, scratch);
    const server = await serveFolder(scratch);
    let model;
    try {
      model = await tf.loadFrozenModel(server.base + GRAPH_FILE, server.base + MANIFEST_FILE);
    } finally {
      await server.close();
    }
    const shards = server.requested.filter((n) => n !== GRAPH_FILE && n !== MANIFEST_FILE);
    const feeds = {};
    for (const input of kase.inputs) {
      feeds[input.name] = toTensor(tf, readNpy(path.join(caseDir, input.file)));
    }
    const outputNames = kase.outputs.map((o) => o.name);
    let ys;
    try {
      ys = model.execute(feeds, outputNames);
    } catch (e) { // control flow and dynamic shapes need executeAsync
      if (!/executeAsync/.test(String(e && e.message))) throw e;
      ys = await model.executeAsync(feeds, outputNames);
    }
    ys = Array.isArray(ys) ? ys : [ys];
    kase.outputs.forEach((expected, index) => {
      const y = ys[index];
      const reference = readNpy(path.join(caseDir, expected.file));
      const actual = y.dataSync();
      if (reference.shape.join(",") !== y.shape.join(",")) {
        throw new Error(`${expected.name}: TF.js shape [${y.shape}] vs TF [${reference.shape}]`);
      }
      let maxAbs = 0;
      let maxRef = 0;
      for (let i = 0; i < actual.length; i++) {
        const want = Number(reference.data[i]);
        const d = Math.abs(Number(actual[i]) - want);
        if (!(d <= maxAbs)) maxAbs = d; // NaN propagates
        maxRef = Math.max(maxRef, Math.abs(want));
      }
      const relative = maxAbs / (maxRef || 1);
      results.push({ case: caseDir, output: expected.name, shape: y.shape, shards: shards.length,
                     max_abs: maxAbs, max_ref: maxRef, relative, ok: relative <= tolerance });
    });
    tf.dispose(ys);
    tf.dispose(Object.values(feeds));
    model.dispose();
  } catch (e) {
    const stderr = e && e.stderr ? String(e.stderr).trim() : "";
    results.push({ case: caseDir, ok: false, error: stderr || String(e && e.message ? e.message : e) });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return results;
}

async function main() {
  const args = process.argv.slice(2);
  const dash = args.indexOf("--");
  const extraFlags = dash >= 0 ? args.slice(dash + 1) : [];
  const own = dash >= 0 ? args.slice(0, dash) : args;
  let tfjsc = process.env.TFJSC || path.join(REPO, "target", "release", "tfjsc");
  let tolerance = 1e-4;
  const cases = [];
  for (const arg of own) {
    if (arg.startsWith("--tfjsc=")) tfjsc = arg.slice("--tfjsc=".length);
    else if (arg.startsWith("--tolerance=")) tolerance = Number(arg.slice("--tolerance=".length));
    else if (arg.startsWith("--")) throw new Error(`unknown flag ${arg}`);
    else cases.push(arg);
  }
  if (!cases.length) {
    const root = path.join(REPO, "tests", "fixtures", "convert");
    for (const name of fs.readdirSync(root).sort()) {
      const caseFile = path.join(root, name, "case.json");
      if (!fs.existsSync(caseFile)) continue;
      // A case whose ops TF.js 0.x lacks (the LSTM's While) says so.
      if (JSON.parse(fs.readFileSync(caseFile, "utf8")).legacy_format === false) {
        console.error(`skipping ${name}: not for the legacy format (case.json)`);
        continue;
      }
      cases.push(path.join(root, name));
    }
  }
  if (!fs.existsSync(tfjsc)) throw new Error(`${tfjsc} not found (cargo build --release -p tfjsc, or --tfjsc=PATH)`);
  const tf = loadTf();
  quietly(() => tf.disableDeprecationWarnings()); // loadFrozenModel is deprecated in 0.15
  tf.setBackend("cpu");
  quietly(() => tf.scalar(0).dispose()); // the CPU backend's first tensor prints a Node.js tip
  let failed = 0;
  for (const caseDir of cases) {
    for (const result of await runCase(tf, tfjsc, caseDir, extraFlags, tolerance)) {
      if (!result.ok) failed++;
      console.log(JSON.stringify({ tfjs: tf.version_converter, ...result }));
    }
  }
  if (failed) {
    console.error(`${failed} failure(s) (tolerance ${tolerance} x max|TF|)`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(2);
});

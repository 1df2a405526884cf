// TF.js in Node without tfjs-node, for the reference scripts (tests/tfjs_reference.mjs,
// benches/real_models_tfjs.mjs): @tensorflow/tfjs found through TFJS_MODULES, NODE_PATH,
// ./node_modules or /work/tfjs-node/node_modules (NODE_PATH does not apply to ES-module imports,
// so it is resolved through createRequire), and an IOHandler reading a graph model's model.json
// and weight shards from disk.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

function loadTf() {
  const roots = [process.env.TFJS_MODULES, ...(process.env.NODE_PATH || "").split(path.delimiter),
                 path.join(process.cwd(), "node_modules"), "/work/tfjs-node/node_modules"]
    .filter(Boolean);
  for (const root of roots) {
    try {
      return createRequire(path.join(path.resolve(root), "noop.js"))("@tensorflow/tfjs");
    } catch (e) {
      if (e.code !== "MODULE_NOT_FOUND") throw e;
    }
  }
  throw new Error("@tensorflow/tfjs not found (set TFJS_MODULES or NODE_PATH to a node_modules "
                  + "containing it)");
}

/** The @tensorflow/tfjs module. */
export const tf = loadTf();


// ---- IOHandler reading model.json + shards from a directory --------------------------------
export function diskHandler(modelJsonPath) {
  const dir = path.dirname(modelJsonPath);
  return {
    async load() {
      const mj = JSON.parse(fs.readFileSync(modelJsonPath, "utf8"));
      const weightSpecs = [];
      const parts = [];
      for (const group of mj.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) parts.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(parts);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return {
        modelTopology: mj.modelTopology,
        format: mj.format,
        generatedBy: mj.generatedBy,
        convertedBy: mj.convertedBy,
        signature: mj.signature,
        userDefinedMetadata: mj.userDefinedMetadata,
        modelInitializer: mj.modelInitializer,
        weightSpecs,
        weightData,
      };
    },
  };
}

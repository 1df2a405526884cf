// .npy files (version 1.0/2.0, little-endian, C order) for the TF.js check scripts
// (tests/tfjs_reference.mjs, tests/tfjs_legacy_reference.mjs): read float32 / int32 / float64 /
// int64 / uint8 / bool, write float32 / int32.

import fs from "node:fs";

const DTYPES = {
  "<f4": ["float32", Float32Array],
  "<i4": ["int32", Int32Array],
  "<f8": ["float64", Float64Array],
  "<i8": ["int64", BigInt64Array],
  "|u1": ["uint8", Uint8Array],
  "|b1": ["bool", Uint8Array],
};

export function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.readUInt32BE(0) !== 0x934e554d || buf.toString("latin1", 4, 6) !== "PY") {
    throw new Error(`${file}: not an .npy file`);
  }
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString("latin1", hstart, hstart + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: Fortran order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map((s) => s.trim())
    .filter((s) => s.length).map(Number);
  const kind = DTYPES[descr];
  if (!kind) throw new Error(`${file}: unsupported dtype ${descr}`);
  const [dtype, Ctor] = kind;
  const n = shape.reduce((a, b) => a * b, 1);
  const start = hstart + hlen;
  const bytes = buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + start + n * Ctor.BYTES_PER_ELEMENT);
  return { dtype, shape, data: new Ctor(bytes) };
}

export function writeNpy(file, { dtype, shape, data }) {
  const descr = { float32: "<f4", int32: "<i4" }[dtype];
  if (!descr) throw new Error(`writeNpy: unsupported dtype ${dtype}`);
  const shp = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shp}, }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const pre = Buffer.alloc(10);
  pre.writeUInt32BE(0x934e554d, 0);
  pre.write("PY", 4, "latin1");
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, "latin1"), body]));
}

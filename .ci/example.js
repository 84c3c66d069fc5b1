#!/usr/bin/env node
// The install checks' example: a tiny base and two experts as F32
// safetensors files, and the task_arithmetic result expected for them.
//   example.js make DIR      writes base/a/b.safetensors and expected.json
//   example.js check DIR OUT compares OUT (a merged .safetensors) with expected.json
const fs = require("fs");
const path = require("path");

const LAMBDA = 0.5;
const shapes = { "layer.weight": [3, 4], "layer.bias": [4] };

function write(file, tensors) {
  let offset = 0;
  const header = {};
  for (const [k, v] of Object.entries(tensors)) {
    header[k] = { dtype: "F32", shape: shapes[k], data_offsets: [offset, offset + v.length * 4] };
    offset += v.length * 4;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const data = Buffer.concat(Object.values(tensors).map((v) => Buffer.from(Float32Array.from(v).buffer)));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}

function read(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString());
  const out = {};
  for (const [k, h] of Object.entries(header)) {
    if (k === "__metadata__") continue;
    if (h.dtype !== "F32") throw new Error(`${file}: ${k} is ${h.dtype}, expected F32`);
    const [s, e] = h.data_offsets;
    const body = buf.subarray(8 + n + s, 8 + n + e);
    out[k] = Array.from({ length: body.length / 4 }, (_, i) => body.readFloatLE(i * 4));
  }
  return out;
}

// Values exact in float32: k/8 for small integers k.
const values = (seed, len) => Array.from({ length: len }, (_, i) => (((i * 7 + seed * 13) % 17) - 8) / 8);

const [cmd, dir, out] = process.argv.slice(2);
if (cmd === "make") {
  fs.mkdirSync(dir, { recursive: true });
  const models = {};
  for (const [name, seed] of [["base", 1], ["a", 2], ["b", 3]]) {
    models[name] = {};
    for (const [k, shape] of Object.entries(shapes)) models[name][k] = values(seed + k.length, shape.reduce((x, y) => x * y, 1));
    write(path.join(dir, `${name}.safetensors`), models[name]);
  }
  // task_arithmetic: base + λ Σ (expert − base), in float64.
  const expected = {};
  for (const k of Object.keys(shapes)) {
    expected[k] = models.base[k].map((b, i) => b + LAMBDA * (models.a[k][i] - b + (models.b[k][i] - b)));
  }
  fs.writeFileSync(path.join(dir, "expected.json"), JSON.stringify({ lambda: LAMBDA, tensors: expected }));
} else if (cmd === "check") {
  const { tensors } = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
  const got = read(out);
  for (const [k, want] of Object.entries(tensors)) {
    if (!got[k] || got[k].length !== want.length) throw new Error(`${out}: ${k} missing or of the wrong size`);
    want.forEach((w, i) => {
      if (Math.abs(got[k][i] - w) > 1e-6 * Math.max(1, Math.abs(w))) throw new Error(`${out}: ${k}[${i}] = ${got[k][i]}, expected ${w}`);
    });
  }
  if (Object.keys(got).length !== Object.keys(tensors).length) throw new Error(`${out}: unexpected tensors ${Object.keys(got)}`);
  console.log(`example: ${out} matches the float64 task_arithmetic reference`);
} else {
  console.error("usage: example.js make DIR | check DIR OUT");
  process.exit(2);
}

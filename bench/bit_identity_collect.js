// The statistics collector of bench/bit_identity.sh's progressive merges
// (--stats-command 'node bench/bit_identity_collect.js {model} {keys} {expert} {out}').
// Writes, for the group's linear and norm weights, Σ x xᵀ / Σ x² of rows made
// from the weights of the partially merged model {model} (so that a byte of
// difference in that model changes the statistics), in float64.
const fs = require("fs");
const [model, keysFile, expert, out] = process.argv.slice(2);
const buf = fs.readFileSync(model);
const hlen = Number(buf.readBigUInt64LE(0));
const header = JSON.parse(buf.subarray(8, 8 + hlen).toString());
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function half(b) { const s = b & 0x8000 ? -1 : 1, e = (b >> 10) & 31, m = b & 1023; return e === 0 ? s * m * 2 ** -24 : e === 31 ? NaN : s * (1 + m / 1024) * 2 ** (e - 15); }
function read(key) {
  const { dtype, shape, data_offsets: [a, b] } = header[key], d = buf.subarray(8 + hlen + a, 8 + hlen + b);
  const n = shape.reduce((x, y) => x * y, 1), v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (dtype === "F32") v[i] = d.readFloatLE(4 * i);
    else if (dtype === "BF16") { u32[0] = d.readUInt16LE(2 * i) << 16; v[i] = f32[0]; }
    else if (dtype === "F16") v[i] = half(d.readUInt16LE(2 * i));
    else throw new Error(`${model}: ${key}: unexpected dtype ${dtype}`);
  }
  return { shape, v };
}
// A model-wide term: the sum of every float of the partially merged model.
let total = 0;
for (const k of Object.keys(header)) if (k !== "__metadata__") total += read(k).v.reduce((x, y) => x + y, 0);
const tensors = [];
const put = (name, shape, data) => tensors.push([name, shape, Buffer.from(Float64Array.from(data).buffer)]);
const salt = [...expert].reduce((x, c) => x + c.charCodeAt(0), 0);
for (const key of fs.readFileSync(keysFile, "utf8").split("\n").filter((k) => k.endsWith(".weight"))) {
  const { shape, v } = read(key), m = key.slice(0, -".weight".length);
  const width = shape.length === 2 ? shape[1] : shape[0], rows = shape.length === 2 ? shape[0] : 1;
  // Rows: the weight's own rows (of width `width`), shifted by the model-wide term.
  const x = (r, i) => v[r * width + i] + 1e-3 * total + 1e-2 * Math.sin(salt + r + 7 * i);
  if (shape.length === 2) {
    const g = new Float64Array(width * width);
    for (let r = 0; r < rows; r++) for (let i = 0; i < width; i++) { const xi = x(r, i); for (let j = 0; j < width; j++) g[i * width + j] += xi * x(r, j); }
    put(`${m}.input_gram`, [width, width], g);
  } else {
    put(`${m}.norm_sq_sum`, [width], Array.from({ length: width }, (_, i) => x(0, i) ** 2));
  }
  put(`${m}.input_count`, [1], [rows]);
}
const h = {}; let off = 0;
for (const [k, shape, b] of tensors) { h[k] = { dtype: "F64", shape, data_offsets: [off, off + b.length] }; off += b.length; }
let hb = Buffer.from(JSON.stringify(h)); hb = Buffer.concat([hb, Buffer.alloc((8 - (hb.length % 8)) % 8, 0x20)]);
const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(hb.length));
fs.writeFileSync(out, Buffer.concat([len, hb, ...tensors.map((t) => t[2])]));

// Generates base + 5 experts (bf16, f32, f16, an int and an empty tensor, odd shapes) for bench/bit_identity.sh.
const fs = require("fs"), path = require("path");
const dir = process.argv[2], T = 5;
fs.mkdirSync(dir, { recursive: true });
let s = 12345;
const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
const gauss = () => rnd() + rnd() + rnd() - 1.5;
const keys = [
  { name: "a.weight", shape: [1531, 1103], dtype: "BF16" },
  { name: "b.weight", shape: [257, 129], dtype: "F32" },
  { name: "c.weight", shape: [1000, 333], dtype: "F16" },
  { name: "d.bias", shape: [13], dtype: "BF16" },
  { name: "e.empty", shape: [0, 4], dtype: "F32" },
  { name: "f.ids", shape: [7], dtype: "I64" },
  { name: "g.weight", shape: [2048, 2049], dtype: "BF16" },
];
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function enc(dtype, v) {
  if (dtype === "F32") { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; }
  if (dtype === "BF16") { f32[0] = v; const u = u32[0]; const r = (u + 0x7fff + ((u >> 16) & 1)) >>> 16; const b = Buffer.alloc(2); b.writeUInt16LE(r & 0xffff); return b; }
  if (dtype === "F16") { const b = Buffer.alloc(2); b.writeUInt16LE(toHalf(v)); return b; }
}
function toHalf(v) { // via Float16 rounding approximation (inputs just need to be valid halves)
  f32[0] = v; const x = u32[0]; const sign = (x >>> 16) & 0x8000; let e = ((x >>> 23) & 0xff) - 127 + 15; let m = (x >>> 13) & 0x3ff;
  if (e <= 0) return sign; if (e >= 31) return sign | 0x7bff; return sign | (e << 10) | m;
}
function tensorBytes(k, gen) {
  const n = k.shape.reduce((a, b) => a * b, 1);
  if (k.dtype === "I64") { const b = Buffer.alloc(8 * n); for (let i = 0; i < n; i++) b.writeBigInt64LE(BigInt(i * 3)); return b; }
  const size = { F32: 4, BF16: 2, F16: 2 }[k.dtype]; const b = Buffer.alloc(size * n);
  for (let i = 0; i < n; i++) enc(k.dtype, gen(i)).copy(b, i * size);
  return b;
}
function write(file, tensors) {
  const header = {}; let off = 0;
  for (const [k, spec, data] of tensors) { header[k] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [off, off + data.length] }; off += data.length; }
  let h = Buffer.from(JSON.stringify(header)); const pad = (8 - (h.length % 8)) % 8; h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, ...tensors.map((t) => t[2])]));
}
const baseVals = {};
write(path.join(dir, "base.safetensors"), keys.map((k) => { const vals = []; const d = tensorBytes(k, (i) => (vals[i] = gauss() * 0.05)); baseVals[k.name] = vals; return [k.name, k, d]; }));
for (let t = 0; t < T; t++)
  write(path.join(dir, `expert_${t}.safetensors`), keys.map((k) => [k.name, k, tensorBytes(k, (i) => baseVals[k.name][i] + gauss() * 0.003 * (1 + t) + (rnd() < 0.01 ? 0.02 : 0))]));

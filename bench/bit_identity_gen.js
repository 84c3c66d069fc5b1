// Generates the inputs of bench/bit_identity.sh in DIR:
// - base + 5 experts (bf16, f32, f16, an int and an empty tensor, odd shapes);
// - layered/: a small two-block model (linear and norm weights) with 3 experts and a
//   statistics file per expert (F64 Grams, expert 1's in F32, expert 2's lacking
//   blocks.1.fc so that the mean fallback runs), for regmean, lot and drift;
// - mergekit YAML files for every mergekit:* method, in mergekit's own form
//   (breadcrumbs_*: read only by builds that have them).
// The statistics are Σ x xᵀ of seeded rows computed here in float64 (inputs only:
// both builds read the same files).
// Usage: node bench/bit_identity_gen.js DIR
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

// The layered model: blocks.N.* give progressive merges one group per block; the
// weights of equal shape in a block (fc/proj, proj/out) share a batched solve.
const layered = [
  { name: "embed.weight", shape: [200, 128], dtype: "F32" },
  { name: "blocks.0.norm.weight", shape: [128], dtype: "F32" },
  { name: "blocks.0.fc.weight", shape: [384, 128], dtype: "BF16" },
  { name: "blocks.0.fc.bias", shape: [384], dtype: "BF16" },
  { name: "blocks.0.proj.weight", shape: [384, 128], dtype: "BF16" },
  { name: "blocks.1.norm.weight", shape: [384], dtype: "F32" },
  { name: "blocks.1.fc.weight", shape: [128, 384], dtype: "F16" },
  { name: "blocks.1.proj.weight", shape: [128, 384], dtype: "F16" },
  { name: "blocks.1.out.weight", shape: [128, 384], dtype: "F32" },
  { name: "head.weight", shape: [64, 128], dtype: "F32" },
];
const L = path.join(dir, "layered");
fs.mkdirSync(L, { recursive: true });
const lbase = {};
write(path.join(L, "base.safetensors"), layered.map((k) => { const v = []; const d = tensorBytes(k, (i) => (v[i] = (k.name.endsWith("norm.weight") ? 1 : 0) + gauss() * 0.05)); lbase[k.name] = v; return [k.name, k, d]; }));
for (let t = 0; t < 3; t++) {
  write(path.join(L, `expert_${t}.safetensors`), layered.map((k) => [k.name, k, tensorBytes(k, (i) => lbase[k.name][i] + gauss() * 0.01 * (1 + t))]));
  const stats = [];
  const f = (name, dtype, vals) => {
    const spec = { name, shape: vals.shape, dtype };
    const b = Buffer.alloc((dtype === "F64" ? 8 : 4) * vals.data.length);
    vals.data.forEach((v, i) => (dtype === "F64" ? b.writeDoubleLE(v, i * 8) : b.writeFloatLE(v, i * 4)));
    stats.push([name, spec, b]);
  };
  const dtype = t === 1 ? "F32" : "F64";
  for (const k of layered) {
    const m = k.name.slice(0, -".weight".length);
    if (!k.name.endsWith(".weight") || (t === 2 && m === "blocks.1.fc")) continue;
    const width = k.shape.length === 2 ? k.shape[1] : k.shape[0], rows = 3 * width;
    const x = new Float64Array(rows * width).map(() => gauss() * (1 + t));
    if (k.shape.length === 2) {
      const g = new Float64Array(width * width);
      for (let r = 0; r < rows; r++) for (let i = 0; i < width; i++) { const xi = x[r * width + i]; for (let j = 0; j < width; j++) g[i * width + j] += xi * x[r * width + j]; }
      f(`${m}.input_gram`, dtype, { shape: [width, width], data: g });
    } else {
      const sq = new Float64Array(width);
      for (let r = 0; r < rows; r++) for (let i = 0; i < width; i++) sq[i] += x[r * width + i] ** 2;
      f(`${m}.norm_sq_sum`, dtype, { shape: [width], data: sq });
    }
    f(`${m}.input_count`, "F64", { shape: [1], data: [rows] });
  }
  write(path.join(L, `expert_${t}.stats.safetensors`), stats);
}

// mergekit's form: the base among the models, per-model weights and densities, gradients.
// Densities are filter lists that keep e.empty whole: mergekit refuses a top-k of 0 entries.
const models = (p = true) => "models:\n  - model: base.safetensors\n" + [0, 1, 2, 3].map((t) => `  - model: expert_${t}.safetensors\n    parameters: {weight: ${[1, 0.5, 0.8, 0.3][t]}${p ? `, density: [{filter: e.empty, value: 1}, {value: ${[0.2, 0.3, 0.5, 0.9][t]}}]` : ""}}\n`).join("");
const yaml = {
  linear: "merge_method: linear\n" + models(false) + "dtype: bfloat16\n",
  task_arithmetic: "merge_method: task_arithmetic\nbase_model: base.safetensors\n" + models(false) + "parameters: {lambda: 0.7, normalize: true}\n",
  ties: "merge_method: ties\nbase_model: base.safetensors\n" + models(true) + "parameters: {lambda: 1.0}\nout_dtype: float16\n",
  ties_exact: "merge_method: ties\nbase_model: base.safetensors\n" + models(true) + "parameters: {topk_ties: exact_k, normalize: false}\n",
  dare_linear: "merge_method: dare_linear\nbase_model: base.safetensors\n" + models(true) + "parameters: {seed: 7}\n",
  breadcrumbs: "merge_method: breadcrumbs\nbase_model: base.safetensors\n" + models(true) + "parameters: {gamma: 0.05, rescale: true}\n",
  breadcrumbs_ties: "merge_method: breadcrumbs_ties\nbase_model: base.safetensors\n" + models(true) + "parameters: {lambda: 0.8, normalize: true}\n",
  dare_ties: "merge_method: dare_ties\nbase_model: base.safetensors\n" + models(false) + "parameters: {lambda: 0.9, rescale: false, density: [{filter: a.weight, value: 0.1}, {value: [0.2, 0.8]}]}\ndtype: float32\n",
};
// module granularity: forward order of the layered model's modules.
fs.writeFileSync(path.join(L, "module_order.txt"), ["embed", "blocks.0.norm", "blocks.0.fc", "blocks.0.proj", "blocks.1.norm", "blocks.1.fc", "blocks.1.proj", "blocks.1.out", "head"].join("\n") + "\n");
for (const [name, text] of Object.entries(yaml)) fs.writeFileSync(path.join(dir, `mk_${name}.yaml`), text);

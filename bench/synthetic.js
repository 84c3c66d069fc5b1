#!/usr/bin/env node
/**
 * Generates synthetic checkpoints for benchmarks: a base and N experts
 * (expert = base + small noise), bf16 by default, in LLM or ViT-B/32 shapes.
 * Values come from a counter-based generator, so any model of the set can be
 * written without reading another.
 *
 *   node bench/synthetic.js --dir /tmp/bench --experts 8 --gb 2 [--shape llm|vit] [--dtype BF16|F32]
 */
const fs = require("fs");
const path = require("path");
const { SafetensorsWriter } = require("../dist/safetensors/writer");
const { arg } = require("./common");


/** Tensor list of a Llama-like model of about `gb` GB at 2 bytes per parameter. */
function llmShapes(gb) {
  const d = 4096, ff = 11008, vocab = 32000;
  const block = 4 * d * d + 3 * d * ff + 2 * d;
  const blocks = Math.max(1, Math.ceil(((gb * 1e9) / 2 - 2 * vocab * d) / block));
  const t = [["model.embed_tokens.weight", [vocab, d]]];
  for (let b = 0; b < blocks; b++) {
    const p = `model.layers.${b}.`;
    for (const n of ["q_proj", "k_proj", "v_proj", "o_proj"]) t.push([`${p}self_attn.${n}.weight`, [d, d]]);
    t.push([`${p}mlp.gate_proj.weight`, [ff, d]], [`${p}mlp.up_proj.weight`, [ff, d]], [`${p}mlp.down_proj.weight`, [d, ff]]);
    t.push([`${p}input_layernorm.weight`, [d]], [`${p}post_attention_layernorm.weight`, [d]]);
  }
  t.push(["model.norm.weight", [d]], ["lm_head.weight", [vocab, d]]);
  return t;
}

/** ViT-B/32 (CLIP visual) shapes: 12 blocks of width 768. */
function vitShapes() {
  const d = 768;
  const t = [["visual.conv1.weight", [d, 3, 32, 32]], ["visual.class_embedding", [d]], ["visual.positional_embedding", [50, d]]];
  t.push(["visual.ln_pre.weight", [d]], ["visual.ln_pre.bias", [d]]);
  for (let b = 0; b < 12; b++) {
    const p = `visual.transformer.resblocks.${b}.`;
    t.push([`${p}attn.in_proj_weight`, [3 * d, d]], [`${p}attn.in_proj_bias`, [3 * d]]);
    t.push([`${p}attn.out_proj.weight`, [d, d]], [`${p}attn.out_proj.bias`, [d]]);
    t.push([`${p}ln_1.weight`, [d]], [`${p}ln_1.bias`, [d]], [`${p}ln_2.weight`, [d]], [`${p}ln_2.bias`, [d]]);
    t.push([`${p}mlp.c_fc.weight`, [4 * d, d]], [`${p}mlp.c_fc.bias`, [4 * d]]);
    t.push([`${p}mlp.c_proj.weight`, [d, 4 * d]], [`${p}mlp.c_proj.bias`, [d]]);
  }
  t.push(["visual.ln_post.weight", [d]], ["visual.ln_post.bias", [d]], ["visual.proj", [d, 512]]);
  return t;
}

// splitmix64-style hash of (seed, index) to a uniform in [-0.5, 0.5), in 32-bit arithmetic.
function noise(seed, i) {
  let x = (Math.imul(i, 0x9e3779b1) ^ Math.imul(seed + 0x7f4a7c15, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x / 4294967296 - 0.5;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toBf16(v) {
  f32[0] = v;
  const u = u32[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

async function writeModel(file, shapes, dtype, seed, expertSeed) {
  const tensors = shapes.map(([key, shape]) => ({ key, shape, dtype }));
  const w = await SafetensorsWriter.create(file, `${file}.part`, tensors, { format: "pt" });
  const CH = 1 << 20;
  let salt = 0;
  for (const [key, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = shape.length === 1 && /norm|ln_/.test(key);
    salt += 1;
    for (let s = 0; s < n; s += CH) {
      const m = Math.min(CH, n - s);
      const out = dtype === "BF16" ? new Uint16Array(m) : new Float32Array(m);
      for (let i = 0; i < m; i++) {
        const idx = s + i;
        let v = (isNorm ? 1 : 0) + 0.04 * noise(seed + salt, idx);
        if (expertSeed !== undefined) v += 0.004 * noise(expertSeed * 7919 + salt, idx);
        out[i] = dtype === "BF16" ? toBf16(v) : v;
      }
      await w.write(key, new Uint8Array(out.buffer));
    }
  }
  await w.finish();
}

async function main() {
  const dir = arg("dir");
  if (!dir) throw new Error("--dir is required");
  const experts = Number(arg("experts", "8"));
  const dtype = arg("dtype", "BF16");
  const shapes = arg("shape", "llm") === "vit" ? vitShapes() : llmShapes(Number(arg("gb", "2")));
  fs.mkdirSync(dir, { recursive: true });
  const files = [["base.safetensors", undefined], ...Array.from({ length: experts }, (_, t) => [`expert_${t}.safetensors`, t + 1])];
  for (const [name, e] of files) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) continue; // reuse an earlier run's files
    const t0 = Date.now();
    await writeModel(file, shapes, dtype, 1, e);
    console.log(`${file}: ${(fs.statSync(file).size / 1e9).toFixed(2)} GB in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});

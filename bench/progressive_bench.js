#!/usr/bin/env node
/**
 * What progressive merging costs besides the collector: a ViT-B-shaped F32
 * checkpoint (patch embedding, `--blocks` blocks of qkv 2304×768, proj 768×768,
 * fc1 3072×768, fc2 768×3072 and two LayerNorms, final norm, head), `--tasks`
 * experts with statistics, merged with lot the usual way and progressively.
 * The progressive collector returns each expert's ready statistics file, so
 * the progressive figures are the engine's own: partial checkpoint writes, the
 * closed forms per group, the final copy. Prints a markdown table.
 *
 *   node bench/progressive_bench.js [--blocks 12] [--tasks 4] [--dir /tmp]
 */
const fs = require("fs");
const os = require("os");
const path = require("path");
const dist = process.env.TASKMERGE_DIST || path.join(__dirname, "..", "dist");
const { merge, GramAccumulator } = require(path.join(dist, "index"));
const { arg } = require("./common");

const BLOCKS = Number(arg("blocks", "12"));
const TASKS = Number(arg("tasks", "4"));
const D = 768, F = 3072;

function shapes() {
  const s = [["patch_embed.proj.weight", [D, 768]], ["cls_token", [1, 1, D]], ["pos_embed", [1, 50, D]]];
  for (let b = 0; b < BLOCKS; b++) {
    const p = `blocks.${b}.`;
    s.push([p + "norm1.weight", [D]], [p + "norm1.bias", [D]], [p + "attn.qkv.weight", [3 * D, D]], [p + "attn.qkv.bias", [3 * D]],
      [p + "attn.proj.weight", [D, D]], [p + "attn.proj.bias", [D]], [p + "norm2.weight", [D]], [p + "norm2.bias", [D]],
      [p + "mlp.fc1.weight", [F, D]], [p + "mlp.fc1.bias", [F]], [p + "mlp.fc2.weight", [D, F]], [p + "mlp.fc2.bias", [D]]);
  }
  s.push(["norm.weight", [D]], ["norm.bias", [D]], ["head.weight", [10, D]]);
  return s;
}

let seed = 1;
function randn(n, scale) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    a[i] = ((seed / 4294967296) - 0.5) * scale;
  }
  return a;
}

function writeCheckpoint(file, tensors) {
  const header = {};
  let off = 0;
  for (const [k, shape, data] of tensors) {
    header[k] = { dtype: "F32", shape, data_offsets: [off, off + data.byteLength] };
    off += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = fs.openSync(file, "w");
  fs.writeSync(fd, len);
  fs.writeSync(fd, json);
  for (const [, , data] of tensors) fs.writeSync(fd, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  fs.closeSync(fd);
}

async function main() {
  const dir = fs.mkdtempSync(path.join(arg("dir", os.tmpdir()), "tm-progbench-"));
  try {
    const s = shapes();
    const numel = (sh) => sh.reduce((a, b) => a * b, 1);
    const base = s.map(([k, sh]) => [k, sh, randn(numel(sh), 1)]);
    writeCheckpoint(path.join(dir, "base.safetensors"), base);
    const experts = [];
    for (let t = 0; t < TASKS; t++) {
      const file = path.join(dir, `task${t}.safetensors`);
      writeCheckpoint(file, base.map(([k, sh, v]) => [k, sh, v.map((x, i) => x + 0.01 * Math.sin(i + t))]));
      const acc = new GramAccumulator();
      for (const [k, sh] of s) {
        if (!k.endsWith(".weight")) continue;
        const m = k.slice(0, -".weight".length);
        if (sh.length === 2) await acc.add(m, randn(256 * sh[1], 1), sh[1]);
        else await acc.addNorm(m, randn(256 * sh[0], 1), sh[0]);
      }
      await acc.save(path.join(dir, `task${t}.stats.safetensors`), { dtype: "f32" });
      experts.push({ path: file, stats: path.join(dir, `task${t}.stats.safetensors`) });
    }
    const common = { base: path.join(dir, "base.safetensors") };
    const t0 = Date.now();
    await merge({ ...common, experts, method: "lot", out: path.join(dir, "usual.safetensors") });
    const usual = (Date.now() - t0) / 1000;
    const t1 = Date.now();
    const r = await merge({
      ...common, experts: experts.map((e) => e.path), method: { name: "lot", progressive: true }, out: path.join(dir, "progressive.safetensors"),
      collectStats: ({ expert }) => path.join(dir, `${expert}.stats.safetensors`),
    });
    const prog = (Date.now() - t1) / 1000;
    const d = r.details.progressive;
    const mb = fs.statSync(common.base).size / 1e6;
    console.log(`ViT-B-shaped, ${BLOCKS} blocks (${mb.toFixed(0)} MB F32), ${TASKS} experts, ${os.cpus().length} CPUs\n`);
    console.log("| merge | total s | closed forms s | partial checkpoint + output writes s | collector s | groups | collector runs |");
    console.log("|---|---|---|---|---|---|---|");
    console.log(`| lot | ${usual.toFixed(2)} | | | | | |`);
    console.log(`| lot progressive | ${prog.toFixed(2)} | ${d.mergeSeconds.toFixed(2)} | ${d.writeSeconds.toFixed(2)} | ${d.collectSeconds.toFixed(2)} | ${d.groups.length} | ${d.collectorRuns} |`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

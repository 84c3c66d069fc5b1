#!/usr/bin/env node
/**
 * LOT solve benchmark: per linear layer, the accumulation A = Σt Gt,
 * Bᵀ = Σt Tt Gt (T float32 experts and float32 Grams, float64 maths) and the
 * solve T* = Bᵀ A⁻¹ (Cholesky), timed through the native ops the merge uses,
 * next to the dgemm / dsyrk GFLOP/s measured in the same run. Prints a
 * markdown table.
 *
 *   node bench/lot_bench.js [--vit-blocks 12] [--vit-tasks 8] [--llama-tasks 2] [--only vit|llama]
 *                           [--solver auto|cholesky|eigh] [--builtin] [--json out.json]
 *
 * Shapes: ViT-B/32 blocks (768→2304 qkv, 768→768 out, 768→3072 fc1, 3072→768
 * fc2) and one Llama-7B block (q,k,v,o 4096→4096; gate, up 4096→11008; down
 * 11008→4096). Blocks share shapes, so per-solve times are averaged over them.
 * Grams are symmetric diagonally dominant (positive definite; the timing does
 * not depend on the values). Uses dist/ (or TASKMERGE_DIST) and TASKMERGE_ADDON like the CLI.
 */
const path = require("path");
const os = require("os");
const { runOp, nativeInfo } = require(path.join(process.env.TASKMERGE_DIST || path.join(__dirname, "..", "dist"), "native"));
const { arg, flag } = require("./common");


const linalg = flag("builtin") ? "builtin" : undefined;
const solver = arg("solver", "auto");

/** Deterministic pseudo-random float32 values in [-0.5, 0.5) (xorshift). */
function fill(arr, seed, scale) {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < arr.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    arr[i] = ((x >>> 0) / 4294967296 - 0.5) * scale;
  }
  return arr;
}

/** A symmetric, diagonally dominant n×n float32 Gram (positive definite). */
function makeGram(n, seed) {
  const G = new Float32Array(n * n);
  let x = (seed * 2246822519) >>> 0 || 1;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < i; j++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const v = (x >>> 0) / 4294967296 - 0.5;
      G[i * n + j] = v;
      G[j * n + i] = v;
    }
  for (let i = 0; i < n; i++) G[i * n + i] = n * (1 + (i % 5) * 0.1);
  return G;
}

const bytes = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const sec = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

async function peak() {
  const n = 2048;
  const A = fill(new Float64Array(n * n), 1, 1), B = fill(new Float64Array(n * n), 2, 1);
  await runOp("linalg_gemm", { m: n, n, k: n, A, B, linalg }); // warm-up (thread pools)
  const g = await runOp("linalg_gemm", { m: n, n, k: n, A, B, linalg });
  const s = await runOp("linalg_syrk", { n, k: n, X: A, linalg });
  return { dgemm: (2 * n ** 3) / g.seconds / 1e9, dsyrk: (n ** 3) / s.seconds / 1e9 };
}

/** One layer [out,in] merged from T experts; returns seconds of accumulation and solve. */
async function layer(out, inn, T, grams, seed) {
  const base = fill(new Float32Array(out * inn), seed, 0.1);
  const A = Buffer.alloc(inn * inn * 8);
  const BT = Buffer.alloc(out * inn * 8);
  let acc = 0;
  for (let t = 0; t < T; t++) {
    const expert = Float32Array.from(base);
    const noise = fill(new Float32Array(out * inn), seed + 97 * (t + 1), 0.01);
    for (let i = 0; i < expert.length; i++) expert[i] += noise[i];
    const t0 = process.hrtime.bigint();
    await runOp("gram_products_accumulate", {
      out, in: inn, base: bytes(base), baseDtype: "F32", expert: bytes(expert), expertDtype: "F32",
      gram: bytes(grams[t % grams.length]), gramDtype: "F32", A, BT, linalg,
    });
    acc += sec(t0);
  }
  const result = Buffer.alloc(out * inn * 4);
  const t0 = process.hrtime.bigint();
  const r = await runOp("gram_solve", {
    out, in: inn, A: [A], BT: [BT], solver, ridge: 1e-6, rcond: inn * 2 ** -23, base: [bytes(base)], baseDtypes: ["F32"],
    lambda: 1, result: [result], resultDtypes: ["F32"], linalg,
  });
  return { acc, solve: sec(t0), eigh: r.eigh[0] === 1 };
}

async function model(name, shapes, blocks, T, perBlock) {
  const rows = [];
  const gramCache = new Map();
  for (const [label, out, inn] of shapes) {
    // Grams differ per task; the same per-width set serves every layer and block.
    if (!gramCache.has(inn)) {
      gramCache.clear(); // keep one width's Grams in memory at a time
      gramCache.set(inn, Array.from({ length: Math.min(T, 2) }, (_, t) => makeGram(inn, 11 + t)));
    }
    let acc = 0, solve = 0, eigh = false;
    for (let b = 0; b < blocks; b++) {
      const r = await layer(out, inn, T, gramCache.get(inn), 1000 * b + out + inn);
      acc += r.acc;
      solve += r.solve;
      eigh ||= r.eigh;
      process.stderr.write(`${name} block ${b} ${label} ${out}x${inn}: accumulate ${r.acc.toFixed(2)} s, solve ${r.solve.toFixed(2)} s\n`);
    }
    const accFlop = T * 2 * out * inn * inn;
    const solveFlop = inn ** 3 / 3 + 2 * out * inn * inn;
    rows.push({ model: name, layer: label, out, in: inn, tasks: T, blocks, count: perBlock[label] ?? 1, acc: acc / blocks, solve: solve / blocks,
      accGflops: accFlop / (acc / blocks) / 1e9, solveGflops: solveFlop / (solve / blocks) / 1e9, eigh });
  }
  return rows;
}

async function main() {
  const info = nativeInfo();
  // The machine may be shared: measure the reference rate before and after, keep the better.
  const p0 = await peak();
  const only = arg("only");
  const rows = [];
  if (only !== "llama") {
    const T = Number(arg("vit-tasks", 8));
    const blocks = Number(arg("vit-blocks", 12));
    rows.push(...(await model("ViT-B/32", [["attn.qkv", 2304, 768], ["attn.out_proj", 768, 768], ["mlp.fc1", 3072, 768], ["mlp.fc2", 768, 3072]], blocks, T, {})));
  }
  if (only !== "vit") {
    const T = Number(arg("llama-tasks", 2));
    rows.push(...(await model("Llama-7B", [["q/k/v/o_proj", 4096, 4096], ["gate/up_proj", 11008, 4096], ["down_proj", 4096, 11008]], 1, T,
      { "q/k/v/o_proj": 4, "gate/up_proj": 2 })));
  }
  const p1 = await peak();
  const p = { dgemm: Math.max(p0.dgemm, p1.dgemm), dsyrk: Math.max(p0.dsyrk, p1.dsyrk) };
  const lines = [
    `LOT solve benchmark — ${info.blas} (${linalg ? "forced built-in" : "default"}), ${info.threads} threads, ${os.cpus()[0].model}, solver ${solver}`,
    `dgemm 2048³: ${p.dgemm.toFixed(1)} GFLOP/s (before ${p0.dgemm.toFixed(1)}, after ${p1.dgemm.toFixed(1)}); ` +
      `dsyrk 2048: ${p.dsyrk.toFixed(1)} GFLOP/s (before ${p0.dsyrk.toFixed(1)}, after ${p1.dsyrk.toFixed(1)}); % columns use the better`,
    "",
    "| model | layer | out×in | tasks | blocks | accumulate s/layer | GFLOP/s | % dgemm | solve s/layer | GFLOP/s | % dgemm | total s/layer |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.model} | ${r.layer} | ${r.out}×${r.in} | ${r.tasks} | ${r.blocks} | ${r.acc.toFixed(3)} | ${r.accGflops.toFixed(1)} | ${((100 * r.accGflops) / p.dgemm).toFixed(0)}% | ${r.solve.toFixed(3)}${r.eigh ? " (eigh)" : ""} | ${r.solveGflops.toFixed(1)} | ${((100 * r.solveGflops) / p.dgemm).toFixed(0)}% | ${(r.acc + r.solve).toFixed(3)} |`),
    "",
    ...[...new Set(rows.map((r) => r.model))].map((m) => {
      const rs = rows.filter((r) => r.model === m);
      const block = rs.reduce((a, r) => a + r.count * (r.acc + r.solve), 0);
      return `${m}: ${block.toFixed(1)} s per block of ${rs.reduce((a, r) => a + r.count, 0)} linear layers (${rs[0].tasks} tasks)`;
    }),
    "",
    "accumulate FLOPs = tasks·2·out·in² (Tt Gt products); solve FLOPs = in³/3 (Cholesky) + 2·out·in² (two triangular solves).",
  ];
  console.log(lines.join("\n"));
  const json = arg("json");
  if (json) require("fs").writeFileSync(json, JSON.stringify({ info, peak: p, rows }, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

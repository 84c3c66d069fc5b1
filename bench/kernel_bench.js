#!/usr/bin/env node
// Throughput of the streaming kernels on in-memory bf16 chunks (no I/O): how
// many entries per second each op handles with the addon's threads, against
// the rate the read-once floor delivers them; CPU time per entry (all
// threads) is the figure that survives a busy machine. Usage:
//   node bench/kernel_bench.js [--experts 8] [--mib 32] [--repeats 5]
"use strict";
const { arg, median } = require("./common");
const { allocState, freeState, runOp } = require("../dist/native");

async function withStates(sizes, fn) {
  const states = await Promise.all(sizes.map((b) => allocState(b)));
  try {
    return await fn(...states);
  } finally {
    await freeState(...states);
  }
}

const T = Number(arg("experts", 8));
const n = (Number(arg("mib", 32)) << 20) / 2;
const repeats = Number(arg("repeats", 5));

function bf16(seed, scale) {
  // Deterministic normal-ish bf16 values (sum of uniforms), rounded by truncation.
  const b = Buffer.alloc(n * 2);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  let s = seed >>> 0;
  const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
  for (let i = 0; i < n; i++) {
    f[0] = (rnd() + rnd() + rnd() - 1.5) * scale;
    b.writeUInt16LE(u[0] >>> 16, 2 * i);
  }
  return b;
}

const base = bf16(1, 0.05);
const experts = [];
for (let t = 0; t < T; t++) {
  const e = bf16(100 + t, 0.002);
  for (let i = 0; i < n; i++) {
    const f = new Float32Array(new Uint32Array([base.readUInt16LE(2 * i) << 16]).buffer)[0] +
      new Float32Array(new Uint32Array([e.readUInt16LE(2 * i) << 16]).buffer)[0];
    e.writeUInt16LE(new Uint32Array(new Float32Array([f]).buffer)[0] >>> 16, 2 * i);
  }
  experts.push(e);
}
const chunk = { n, offset: 0, base, baseDtype: "BF16", experts, expertDtypes: experts.map(() => "BF16") };
const out = Buffer.alloc(n * 2);
const thr = new Array(T).fill(0x3b000000);

const cases = {
  task_arithmetic: () => runOp("task_arithmetic", { ...chunk, out, outDtype: "BF16", coeffs: new Array(T).fill(0.3) }),
  // Fresh zeroed state buffers per call, as a selection allocates them.
  "magnitude_hist L0": () => withStates([T * 32768 * 8], (hist) => runOp("magnitude_hist", { ...chunk, level: 0, hist })),
  "magnitude_hist L1+signs": () => withStates([T * 65536 * 8, T * 65536 * 8], (hist, signDiff) => runOp("magnitude_hist", {
    ...chunk, level: 1, hist, prefix: thr.map((b) => b >>> 16), signDiff, multiCap: 1 << 20,
  })),
  ties_merge: () => runOp("ties_merge", { ...chunk, out, outDtype: "BF16", trim: "magnitude", thresholds: thr, majority: 1, merge: "mean", lambda: 1 }),
  consensus_ta: () => runOp("consensus", { ...chunk, out, outDtype: "BF16", kind: "sum", tallLambda: 0.4, lambda: 0.3, k: 2 }),
  tall_compress: () => runOp("tall_compress", {
    ...chunk, kind: "sum", tau: Buffer.alloc(n * 2), tauDtype: "BF16", lambdas: new Array(T).fill(0.4),
    masks: experts.map(() => Buffer.alloc(n / 8)),
  }),
  consensus_ties: () => runOp("consensus", {
    ...chunk, out, outDtype: "BF16", kind: "ties", trim: "magnitude", thresholds: thr, majority: 1, tallLambda: 0.4, lambda: 1, k: 2,
  }),
  "tall_compress ties": () => runOp("tall_compress", {
    ...chunk, kind: "ties", trim: "magnitude", thresholds: thr, majority: 1, tau: Buffer.alloc(n * 2), tauDtype: "BF16",
    lambdas: new Array(T).fill(0.4), masks: experts.map(() => Buffer.alloc(n / 8)),
  }),
  // The masks pass after a λ grid: τMTL read back from the bundle.
  tall_mask: () => runOp("tall_mask", { ...chunk, tau: out, tauDtype: "BF16", lambdas: new Array(T).fill(0.4), masks: experts.map(() => Buffer.alloc(n / 8)) }),
};

(async () => {
  const only = arg("only", "");
  console.log(`| op | ms per chunk (median of ${repeats}) | M entries/s | input GB/s | CPU ns per entry |`);
  console.log("|---|---|---|---|---|");
  for (const [name, fn] of Object.entries(cases)) {
    if (only && !name.includes(only)) continue;
    await fn();
    const times = [];
    const cpus = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      await fn();
      const c = process.cpuUsage(c0);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      cpus.push((c.user + c.system) / 1e3);
    }
    const ms = median(times);
    const cpu = median(cpus);
    console.log(`| ${name} | ${ms.toFixed(1)} | ${(n / ms / 1e3).toFixed(0)} | ${((T + 1) * n * 2 / ms / 1e6).toFixed(2)} | ${(cpu * 1e6 / n).toFixed(1)} |`);
  }
})();

#!/usr/bin/env node
/**
 * The event loop's delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution)
 * while taskmerge works in-process, through the library API of dist/:
 *
 *   1. inspect() of a file with a ~14 MB header of metadata keys;
 *   2. inspect() of a file with 200,000 tensors (~14 MB header);
 *   3. a merge (task_arithmetic, 3 experts, F32, 16 keys of 1M entries).
 *
 * Target: max delay under 20 ms. Usage: node bench/event_loop_bench.js
 * [--metadata-keys N] [--tensors N] [--merge-keys N] [--runs R]. Uses dist/
 * (or TASKMERGE_DIST); writes its inputs to a temporary directory it removes.
 */
const fs = require("fs");
const os = require("os");
const path = require("path");
const { monitorEventLoopDelay } = require("perf_hooks");
const { arg, median } = require("./common");

const DIST = path.resolve(process.env.TASKMERGE_DIST || path.join(__dirname, "..", "dist"));
const { inspect, merge } = require(DIST);

const META_KEYS = Number(arg("metadata-keys", 450_000));
const TENSORS = Number(arg("tensors", 200_000));
const MERGE_KEYS = Number(arg("merge-keys", 16));
const RUNS = Number(arg("runs", 3));

/** A safetensors file from header members and data, written by hand. */
function writeFile(file, members, data) {
  let json = `{${members.join(",")}}`;
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = fs.openSync(file, "w");
  fs.writeSync(fd, len);
  fs.writeSync(fd, json);
  for (const d of data) fs.writeSync(fd, d);
  fs.closeSync(fd);
  return 8 + Buffer.byteLength(json);
}

function metadataFile(file) {
  const meta = [];
  for (let i = 0; i < META_KEYS; i++) meta.push(`"layer.${i}.note":"value of key ${i}"`);
  return writeFile(file, [`"__metadata__":{${meta.join(",")}}`, `"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}`], [Buffer.alloc(16)]);
}

function tensorsFile(file) {
  const members = [];
  for (let i = 0; i < TENSORS; i++) members.push(`"model.layers.${i}.w":{"dtype":"F32","shape":[1],"data_offsets":[${4 * i},${4 * i + 4}]}`);
  return writeFile(file, members, [Buffer.alloc(4 * TENSORS)]);
}

function modelFile(file, seed) {
  const n = 1 << 20;
  const members = [];
  const data = [];
  for (let k = 0; k < MERGE_KEYS; k++) {
    members.push(`"blocks.${k}.weight":{"dtype":"F32","shape":[1024,1024],"data_offsets":[${4 * n * k},${4 * n * (k + 1)}]}`);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.001 + seed + k);
    data.push(Buffer.from(a.buffer));
  }
  return writeFile(file, members, data);
}

/** Runs fn with the delay monitor on; returns wall ms and delay stats (ms). */
async function measure(fn) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  // Give the histogram its first sample before the work starts.
  await new Promise((r) => setTimeout(r, 20));
  h.enable();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  h.disable();
  return { wall, max: h.max / 1e6, p99: h.percentile(99) / 1e6, mean: h.mean / 1e6 };
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tm-elbench-"));
  try {
    const metaPath = path.join(dir, "metadata.safetensors");
    const tensPath = path.join(dir, "tensors.safetensors");
    const metaHeader = metadataFile(metaPath);
    const tensHeader = tensorsFile(tensPath);
    const base = path.join(dir, "base.safetensors");
    modelFile(base, 0);
    const experts = [1, 2, 3].map((s) => {
      const p = path.join(dir, `e${s}.safetensors`);
      modelFile(p, s);
      return p;
    });
    const cases = [
      [`inspect, ${(metaHeader / 1e6).toFixed(1)} MB header (${META_KEYS} metadata keys)`, () => inspect(metaPath)],
      [`inspect, ${(tensHeader / 1e6).toFixed(1)} MB header (${TENSORS} tensors)`, () => inspect(tensPath)],
      [`merge task_arithmetic, 3 experts × ${MERGE_KEYS} keys × 1M F32`, async () => {
        const out = path.join(dir, "out.safetensors");
        fs.rmSync(out, { force: true });
        await merge({ base, experts, method: "task_arithmetic", out });
      }],
    ];
    console.log(`node ${process.version}, ${os.cpus().length} CPUs, ${RUNS} runs each (median of wall / max / p99 delay)`);
    console.log("| case | wall ms | max delay ms | p99 delay ms | mean delay ms |");
    console.log("|---|---|---|---|---|");
    for (const [name, fn] of cases) {
      const rs = [];
      for (let r = 0; r < RUNS; r++) rs.push(await measure(fn));
      const m = (k) => median(rs.map((x) => x[k])).toFixed(1);
      const worst = Math.max(...rs.map((x) => x.max)).toFixed(1);
      console.log(`| ${name} | ${m("wall")} | ${m("max")} (worst ${worst}) | ${m("p99")} | ${m("mean")} |`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

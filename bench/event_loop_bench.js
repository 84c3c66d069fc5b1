#!/usr/bin/env node
/**
 * The event loop's delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution)
 * while taskmerge works in-process, through the library API of dist/:
 *
 *   1. inspect() of a file with a 14 MB header of metadata keys (issue 11's case);
 *   2. inspect() of a file with 450,000 metadata keys (~18.7 MB header);
 *   3. inspect() of a file with 200,000 tensors (~16.4 MB header);
 *   4. inspect() of the largest header still read on the main thread (just
 *      under the worker threshold, OFF_THREAD.bytes of header_thread.ts);
 *   5. a merge (task_arithmetic, 3 experts, F32, 16 keys of 1M entries);
 *
 * then, for the threshold, the wall time of one header read on the main
 * thread (parseHeader) and in a worker (readHeaderInWorker) at a few sizes.
 *
 * Target: max delay under 20 ms. Usage: node bench/event_loop_bench.js
 * [--header-mb MB] [--metadata-keys N] [--tensors N] [--merge-keys N]
 * [--runs R]. Uses dist/ (or TASKMERGE_DIST); writes its inputs to a
 * temporary directory it removes.
 */
const fs = require("fs");
const os = require("os");
const path = require("path");
const { monitorEventLoopDelay } = require("perf_hooks");
const { arg, median } = require("./common");

const DIST = path.resolve(process.env.TASKMERGE_DIST || path.join(__dirname, "..", "dist"));
const { inspect, merge } = require(DIST);
const { parseHeader } = require(path.join(DIST, "safetensors", "header.js"));
// A build from before the header worker (to compare with) has no header_thread.js: no threshold table then.
const thread = fs.existsSync(path.join(DIST, "safetensors", "header_thread.js"))
  ? require(path.join(DIST, "safetensors", "header_thread.js"))
  : { OFF_THREAD: { bytes: 1 << 20 }, readHeaderInWorker: null };
const { OFF_THREAD, readHeaderInWorker } = thread;

const HEADER_MB = Number(arg("header-mb", 14));
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

/** Metadata keys, `keys` of them or as many as make a header of `bytes`. */
function metadataFile(file, { keys = Infinity, bytes = Infinity }) {
  const meta = [];
  let size = 0;
  for (let i = 0; i < keys && size < bytes; i++) {
    meta.push(`"layer.${i}.note":"value of key ${i}"`);
    size += meta[i].length + 1;
  }
  return writeFile(file, [`"__metadata__":{${meta.join(",")}}`, `"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}`], [Buffer.alloc(16)]);
}

/** `n` tensors, or as many as make a header of `bytes`. */
function tensorsFile(file, { n = Infinity, bytes = Infinity }) {
  const members = [];
  let size = 0;
  for (let i = 0; i < n && size < bytes; i++) {
    members.push(`"model.layers.${i}.w":{"dtype":"F32","shape":[1],"data_offsets":[${4 * i},${4 * i + 4}]}`);
    size += members[i].length + 1;
  }
  return writeFile(file, members, [Buffer.alloc(4 * members.length)]);
}

/** The header bytes of a file written by writeFile. */
function headerOf(file) {
  const b = fs.readFileSync(file);
  return { json: b.subarray(8, 8 + Number(b.readBigUInt64LE(0))), size: b.length };
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

/**
 * CPU ms the main thread has used (Linux: its schedstat), or null. On a shared
 * machine a long delay may be time the main thread spent waiting for a CPU;
 * the CPU it used in its longest turn is what a quiet machine would show.
 */
const SCHEDSTAT = `/proc/${process.pid}/task/${process.pid}/schedstat`;
const mainCpuMs = fs.existsSync(SCHEDSTAT) ? () => Number(fs.readFileSync(SCHEDSTAT, "utf8").split(" ")[0]) / 1e6 : null;

/** Runs fn with the delay monitor on; returns wall ms, delay stats (ms) and the most main-thread CPU in one turn. */
async function measure(fn) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  // Give the histogram its first sample before the work starts.
  await new Promise((r) => setTimeout(r, 20));
  let cpu = mainCpuMs?.();
  let turnCpu = 0;
  const tick = mainCpuMs && setInterval(() => {
    const now = mainCpuMs();
    turnCpu = Math.max(turnCpu, now - cpu);
    cpu = now;
  }, 1);
  h.enable();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  h.disable();
  if (tick) clearInterval(tick);
  return { wall, max: h.max / 1e6, p99: h.percentile(99) / 1e6, mean: h.mean / 1e6, turnCpu: mainCpuMs ? turnCpu : NaN };
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tm-elbench-"));
  try {
    const mbPath = path.join(dir, "metadata-mb.safetensors");
    const metaPath = path.join(dir, "metadata.safetensors");
    const tensPath = path.join(dir, "tensors.safetensors");
    const smallPath = path.join(dir, "below-threshold.safetensors");
    const mbHeader = metadataFile(mbPath, { bytes: HEADER_MB * 1e6 - 100 });
    const metaHeader = metadataFile(metaPath, { keys: META_KEYS });
    const tensHeader = tensorsFile(tensPath, { n: TENSORS });
    const smallHeader = tensorsFile(smallPath, { bytes: OFF_THREAD.bytes - 200 });
    const base = path.join(dir, "base.safetensors");
    modelFile(base, 0);
    const experts = [1, 2, 3].map((s) => {
      const p = path.join(dir, `e${s}.safetensors`);
      modelFile(p, s);
      return p;
    });
    const mb = (n) => (n / 1e6).toFixed(1);
    const cases = [
      [`inspect, ${mb(mbHeader)} MB header of metadata keys`, () => inspect(mbPath)],
      [`inspect, ${mb(metaHeader)} MB header (${META_KEYS} metadata keys)`, () => inspect(metaPath)],
      [`inspect, ${mb(tensHeader)} MB header (${TENSORS} tensors)`, () => inspect(tensPath)],
      [`inspect, ${mb(smallHeader)} MB header (tensors; main thread, under the ${OFF_THREAD.bytes}-byte threshold)`, () => inspect(smallPath)],
      [`merge task_arithmetic, 3 experts × ${MERGE_KEYS} keys × 1M F32`, async () => {
        const out = path.join(dir, "out.safetensors");
        fs.rmSync(out, { force: true });
        await merge({ base, experts, method: "task_arithmetic", out });
      }],
    ];
    console.log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)}, ${RUNS} runs each (medians, worst run in brackets)`);
    console.log("| case | wall ms | max delay ms | p99 delay ms | mean delay ms | main-thread CPU in its longest turn, ms |");
    console.log("|---|---|---|---|---|---|");
    for (const [name, fn] of cases) {
      const rs = [];
      for (let r = 0; r < RUNS; r++) rs.push(await measure(fn));
      const m = (k) => median(rs.map((x) => x[k])).toFixed(1);
      const worst = Math.max(...rs.map((x) => x.max)).toFixed(1);
      const worstCpu = Math.max(...rs.map((x) => x.turnCpu)).toFixed(1);
      console.log(`| ${name} | ${m("wall")} | ${m("max")} (worst ${worst}) | ${m("p99")} | ${m("mean")} | ${m("turnCpu")} (worst ${worstCpu}) |`);
    }
    if (readHeaderInWorker) await thresholdTable(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Wall ms of one header read on the main thread and in a worker, by header size (median of RUNS). */
async function thresholdTable(dir) {
  console.log("");
  console.log("| header (tensors) | main thread ms | worker ms |");
  console.log("|---|---|---|");
  for (const bytes of [1 << 18, 1 << 20, 1 << 22]) {
    const file = path.join(dir, `t${bytes}.safetensors`);
    tensorsFile(file, { bytes });
    const { json, size } = headerOf(file);
    const time = async (read) => {
      const ts = [];
      for (let r = 0; r < RUNS; r++) {
        const t0 = performance.now();
        await read(Buffer.from(json));
        ts.push(performance.now() - t0);
      }
      return median(ts).toFixed(1);
    };
    const here = await time((b) => parseHeader(b, size, file));
    const there = await time((b) => readHeaderInWorker(b, size, file));
    console.log(`| ${(json.length / 1e6).toFixed(2)} MB | ${here} | ${there} |`);
    fs.rmSync(file);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

#!/usr/bin/env node
/**
 * Streaming methods benchmark: wall time and input GB/s of each streamed CLI run (average,
 * task_arithmetic, TIES, DARE, consensus merges and `taskmerge compress`) on a
 * base + N experts, next to the read-once floor of bench/common.js (every
 * input read once, cold), measured alternately in the same run with the
 * inputs' page cache dropped before every measurement.
 * Peak RSS comes from /usr/bin/time. Global TIES reads a ~2M-entry-per-task
 * sample, then streams the inputs twice (the sampled-window pass for the exact
 * thresholds and the majority sign, then the merge).
 *
 *   node bench/synthetic.js --dir /work/benchdata/llm8x2g --experts 8 --gb 2
 *   node bench/stream_bench.js --dir /work/benchdata/llm8x2g --experts 8 --repeats 3
 *
 * --runs "merge ties --density 0.2;compress;compress --tau ties" picks the runs;
 * TASKMERGE_CLI / TASKMERGE_ADDON select another build (default dist/, build/).
 */
const fs = require("fs");
const os = require("os");
const path = require("path");
const { arg, median, evict, timed, readOnceFloor } = require("./common");

const root = path.join(__dirname, "..");

const dir = arg("dir", "/work/benchdata/llm8x2g");
const experts = Number(arg("experts", "8"));
const repeats = Number(arg("repeats", "3"));
const runsArg = arg("runs", "merge average;merge task_arithmetic;merge ties --density 0.2;merge ties --density 0.2 --scope tensor;merge dare_ties;merge consensus_ta;compress;compress --tau ties");
const runs = runsArg.split(";").map((s) => s.trim()).filter(Boolean);
const outDir = arg("out-dir", dir);
const report = arg("report", path.join(root, "bench", "out", "stream_bench.md"));
const cli = process.env.TASKMERGE_CLI ?? path.join(root, "dist", "cli", "main.js");
const addonPath = process.env.TASKMERGE_ADDON ?? path.join(root, "build", "Release", "taskmerge.node");

const inputs = [path.join(dir, "base.safetensors"), ...Array.from({ length: experts }, (_, t) => path.join(dir, `expert_${t}.safetensors`))];
for (const f of inputs) if (!fs.existsSync(f)) throw new Error(`${f} is missing: generate it with bench/synthetic.js`);
const inputBytes = inputs.reduce((s, f) => s + fs.statSync(f).size, 0);

/** One CLI run under /usr/bin/time: wall seconds, peak RSS bytes and its --json report. */
function runCli(words, out) {
  const [command, ...rest] = words;
  const argv = [process.execPath, cli, command, "--base", inputs[0], ...inputs.slice(1).flatMap((e) => ["--expert", e])];
  if (command === "merge") argv.push("--method");
  argv.push(...rest, "--out", out, "--json");
  const r = timed(argv, { TASKMERGE_ADDON: addonPath });
  if (r.error) throw new Error(`${words.join(" ")} failed: ${r.error}`);
  return { seconds: r.wall, rss: r.rss, report: JSON.parse(r.stdout) };
}

const gb = (b) => (b / 1e9).toFixed(2);

async function main() {
  const addon = require(addonPath).info();
  const rows = [];
  for (const r of runs) {
    const words = r.split(/\s+/);
    const floors = [];
    const times = [];
    for (let i = 0; i < repeats; i++) {
      floors.push(readOnceFloor(inputs).wall);
      const out = path.join(outDir, `bench-stream-${process.pid}${words[0] === "merge" ? ".safetensors" : ""}`);
      evict(inputs);
      times.push(runCli(words, out));
      fs.rmSync(out, { recursive: true, force: true });
      console.error(`${r}: run ${i + 1}: ${times[i].seconds.toFixed(2)} s, read-once ${floors[i].toFixed(2)} s, peak RSS ${gb(times[i].rss)} GB`);
    }
    const wall = median(times.map((x) => x.seconds));
    const floor = median(floors);
    const ratio = times[0].report.ratio;
    rows.push({ run: r, wall, floor, rss: Math.max(...times.map((x) => x.rss)), all: times.map((x) => x.seconds), extra: ratio ? `compression ${ratio.toFixed(2)}x` : "" });
  }
  const lines = [
    `Inputs: base + ${experts} experts, ${gb(inputBytes)} GB in all (${dir}); ${repeats} runs each, medians; page cache dropped for the inputs before every measurement.`,
    `Machine: ${os.cpus()[0]?.model ?? "unknown CPU"}, ${os.cpus().length} cores, ${gb(os.totalmem())} GB RAM; Node ${process.version}; addon: ${addon.threads} threads.`,
    "",
    "| run | wall (s) | read inputs once (s) | wall / read-once | input GB/s | read-once GB/s | peak RSS (GB) | runs (s) | note |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows.map((x) => `| ${x.run} | ${x.wall.toFixed(2)} | ${x.floor.toFixed(2)} | ${(x.wall / x.floor).toFixed(2)} | ${gb(inputBytes / x.wall)} | ${gb(inputBytes / x.floor)} | ${gb(x.rss)} | ${x.all.map((s) => s.toFixed(2)).join(", ")} | ${x.extra} |`),
  ];
  fs.mkdirSync(path.dirname(report), { recursive: true });
  fs.writeFileSync(report, lines.join("\n") + "\n");
  console.log(lines.join("\n"));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});

#!/usr/bin/env node
/**
 * Streaming methods benchmark: wall time of each streamed CLI run (average,
 * task_arithmetic, TIES, DARE, consensus merges and `taskmerge compress`) on a
 * base + N experts, next to the time
 * to read the same inputs once, measured alternately in the same run with the
 * inputs' page cache dropped before every measurement (dd iflag=nocache).
 * Peak RSS comes from /usr/bin/time. Global TIES streams the inputs 3 times
 * (two exact-threshold histogram passes, the second also summing the elected
 * signs for the majority sign, then the merge).
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
const { spawn, spawnSync } = require("child_process");

const root = path.join(__dirname, "..");
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};

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

function evict(files) {
  for (const f of files) spawnSync("dd", [`if=${f}`, "iflag=nocache", "count=0", "status=none"]);
}

/** The floor: every input read once, all files concurrently, 8 MB reads. */
async function readOnce() {
  const t0 = process.hrtime.bigint();
  await Promise.all(
    inputs.map(async (f) => {
      const fh = await fs.promises.open(f, "r");
      const buf = Buffer.allocUnsafe(8 << 20);
      try {
        for (let pos = 0; ; ) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          if (!bytesRead) break;
          pos += bytesRead;
        }
      } finally {
        await fh.close();
      }
    }),
  );
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** One CLI run under /usr/bin/time: wall seconds, peak RSS bytes and stdout. */
function runCli(words, out) {
  const [command, ...rest] = words;
  const args = ["-f", "TASKMERGE_MAXRSS_KB=%M", process.execPath, cli, command, "--base", inputs[0]];
  for (const e of inputs.slice(1)) args.push("--expert", e);
  if (command === "merge") args.push("--method");
  args.push(...rest, "--out", out, "--json");
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn("/usr/bin/time", args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TASKMERGE_ADDON: addonPath } });
    let err = "";
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const m = /TASKMERGE_MAXRSS_KB=(\d+)/.exec(err);
      if (code !== 0 || !m) return reject(new Error(`${words.join(" ")} failed (${code}): ${err}`));
      resolve({ seconds, rss: Number(m[1]) * 1024, report: JSON.parse(stdout) });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const gb = (b) => (b / 1e9).toFixed(2);

async function main() {
  const addon = require(addonPath).info();
  const rows = [];
  for (const r of runs) {
    const words = r.split(/\s+/);
    const floors = [];
    const times = [];
    for (let i = 0; i < repeats; i++) {
      evict(inputs);
      floors.push(await readOnce());
      const out = path.join(outDir, `bench-stream-${process.pid}${words[0] === "merge" ? ".safetensors" : ""}`);
      evict(inputs);
      times.push(await runCli(words, out));
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
    "| run | wall (s) | read inputs once (s) | wall / read-once | peak RSS (GB) | runs (s) | note |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((x) => `| ${x.run} | ${x.wall.toFixed(2)} | ${x.floor.toFixed(2)} | ${(x.wall / x.floor).toFixed(2)} | ${gb(x.rss)} | ${x.all.map((s) => s.toFixed(2)).join(", ")} | ${x.extra} |`),
  ];
  fs.mkdirSync(path.dirname(report), { recursive: true });
  fs.writeFileSync(report, lines.join("\n") + "\n");
  console.log(lines.join("\n"));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});

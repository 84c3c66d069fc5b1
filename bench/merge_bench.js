#!/usr/bin/env node
/**
 * Streaming merge benchmark against the physical floor: for each method, the
 * wall time of a full CLI merge of a base and N experts, next to the time to
 * read the same input files once, measured alternately in the same run with
 * the page cache dropped for the inputs before every measurement (dd
 * iflag=nocache), so both start cold. Peak RSS comes from /usr/bin/time.
 *
 *   node bench/synthetic.js --dir /work/benchdata/llm8x2g --experts 8 --gb 2
 *   node bench/merge_bench.js --dir /work/benchdata/llm8x2g --experts 8 --repeats 3
 *
 * Extra method options: --methods "average;task_arithmetic;ties --density 0.2"
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
const methods = arg("methods", "average;task_arithmetic").split(";").map((s) => s.trim()).filter(Boolean);
const outDir = arg("out-dir", dir);
const report = arg("report", path.join(root, "bench", "out", "merge_bench.md"));

const inputs = [path.join(dir, "base.safetensors"), ...Array.from({ length: experts }, (_, t) => path.join(dir, `expert_${t}.safetensors`))];
for (const f of inputs) if (!fs.existsSync(f)) throw new Error(`${f} is missing: generate it with bench/synthetic.js`);
const inputBytes = inputs.reduce((s, f) => s + fs.statSync(f).size, 0);

/** Drops the inputs' pages from the page cache (no root needed: dd's nocache). */
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
        let pos = 0;
        for (;;) {
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

/** One CLI merge as a child process under /usr/bin/time: wall seconds and peak RSS bytes. */
function runMerge(methodArgs, out) {
  const cli = path.join(root, "dist", "cli", "main.js");
  const args = ["-f", "TASKMERGE_MAXRSS_KB=%M", process.execPath, cli, "merge", "--base", inputs[0]];
  for (const e of inputs.slice(1)) args.push("--expert", e);
  args.push("--method", ...methodArgs, "--out", out, "--quiet");
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn("/usr/bin/time", args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const m = /TASKMERGE_MAXRSS_KB=(\d+)/.exec(err);
      if (code !== 0 || !m) return reject(new Error(`merge failed (${code}): ${err}`));
      resolve({ seconds, rss: Number(m[1]) * 1024 });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const gb = (b) => (b / 1e9).toFixed(2);

async function main() {
  const addon = require(path.join(root, "build", "Release", "taskmerge.node")).info();
  const rows = [];
  for (const m of methods) {
    const methodArgs = m.split(/\s+/);
    const floors = [];
    const runs = [];
    for (let r = 0; r < repeats; r++) {
      evict(inputs);
      floors.push(await readOnce());
      const out = path.join(outDir, `bench-merged-${process.pid}.safetensors`);
      evict(inputs);
      runs.push(await runMerge(methodArgs, out));
      fs.rmSync(out, { force: true });
      console.error(`${m}: run ${r + 1}: merge ${runs[r].seconds.toFixed(2)} s, read-once ${floors[r].toFixed(2)} s, peak RSS ${gb(runs[r].rss)} GB`);
    }
    const wall = median(runs.map((x) => x.seconds));
    const floor = median(floors);
    rows.push({ method: m, wall, floor, ratio: wall / floor, rss: Math.max(...runs.map((x) => x.rss)), all: runs.map((x) => x.seconds) });
  }
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const lines = [
    `Inputs: base + ${experts} experts, ${gb(inputBytes)} GB in all (${dir}); ${repeats} runs per method, medians; page cache dropped for the inputs before every measurement.`,
    `Machine: ${cpu}, ${os.cpus().length} cores, ${gb(os.totalmem())} GB RAM; Node ${process.version}; addon: ${addon.blas}, ${addon.threads} threads.`,
    "",
    "| method | merge wall (s) | read inputs once (s) | ratio | read rate in merge (GB/s) | peak RSS (GB) | runs (s) |",
    "|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.method} | ${r.wall.toFixed(2)} | ${r.floor.toFixed(2)} | ${r.ratio.toFixed(2)} | ${gb(inputBytes / r.wall)} | ${gb(r.rss)} | ${r.all.map((x) => x.toFixed(2)).join(", ")} |`,
    ),
  ];
  fs.mkdirSync(path.dirname(report), { recursive: true });
  fs.writeFileSync(report, lines.join("\n") + "\n");
  console.log(lines.join("\n"));
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});

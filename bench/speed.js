#!/usr/bin/env node
/**
 * Merge speed and memory on synthetic checkpoints (bench/synthetic.js): every method the
 * library registers, each run as a child process of the real CLI under /usr/bin/time -v
 * (wall time, peak RSS), against the read-once floor (reading every input once) and against
 * bench/torch_peer.py (PyTorch, load everything then compute) on the same files.
 *
 *   npm run bench:speed -- [--gb 2 | --gb 0.9,2] [--experts 8] [--sets llm,vit] [--dir DATA] [--methods a,b]
 *                          [--no-peer] [--keep-data] [--append] [--render]
 *
 * Page cache: before every timed run (floor included) the input files are evicted from the
 * page cache with posix_fadvise(POSIX_FADV_DONTNEED) after fsync, so every run starts cold.
 * Writes bench/out/speed.md and bench/out/speed.json.
 */
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawnSync } = require("child_process");
const { arg, flag, evict, timed, readOnceFloor } = require("./common");

const ROOT = path.join(__dirname, "..");
const DIST = path.resolve(process.env.TASKMERGE_DIST || path.join(ROOT, "dist"));
const PY = process.env.PYTHON || "/usr/bin/python3";
const CLI = path.join(DIST, "cli", "main.js");
const tm = require(path.join(DIST, "index.js"));

const OUT = path.resolve(arg("out", path.join(ROOT, "bench", "out")));
const DATA = path.resolve(arg("dir", path.join(OUT, "speed-data")));
const GBS = arg("gb", "2").split(",").map(Number); // LLM-shaped sizes, GB per checkpoint
const EXPERTS = Number(arg("experts", "8"));
const SETS = arg("sets", "llm,vit").split(",");
const ONLY = arg("methods") ? arg("methods").split(",") : null;
const PEER_METHODS = ["average", "task_arithmetic", "ties", "dare_linear", "dare_ties"];
const COMPARE = new Set(["average", "task_arithmetic", "ties"]); // deterministic: outputs must agree

const log = (m) => console.log(`[speed ${new Date().toISOString().slice(11, 19)}] ${m}`);
const fileSize = (f) => fs.statSync(f).size;

function memAvailable() {
  const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync("/proc/meminfo", "utf8"));
  return m ? Number(m[1]) * 1024 : os.freemem();
}

/** Synthetic LLM statistics would be GBs per expert: stats methods run on the ViT set only. */
function makeSet(name, gb) {
  const dir = path.join(DATA, name === "llm" ? `llm-${gb}gb-${EXPERTS}x` : `vit-${EXPERTS}x`);
  const gen = ["--dir", dir, "--experts", String(EXPERTS), "--shape", name, ...(name === "llm" ? ["--gb", String(gb)] : [])];
  const r = spawnSync(process.execPath, [path.join(__dirname, "synthetic.js"), ...gen], { stdio: "inherit" });
  if (r.status !== 0) throw new Error(`synthetic.js ${gen.join(" ")} failed`);
  const base = path.join(dir, "base.safetensors");
  const experts = Array.from({ length: EXPERTS }, (_, t) => path.join(dir, `expert_${t}.safetensors`));
  let stats = null;
  if (name === "vit" && tm.listMethods().some((m) => m.needsStats && (!ONLY || ONLY.includes(m.name)))) {
    stats = experts.map((e) => e.replace(/\.safetensors$/, ".stats.safetensors"));
    const s = spawnSync(PY, [path.join(__dirname, "synthetic_stats.py"), "--base", base, ...stats.flatMap((p) => ["--out", p])], { stdio: "inherit" });
    if (s.status !== 0) throw new Error("synthetic_stats.py failed");
  }
  return { name: name === "llm" ? `llm-${gb}GB` : name, dir, base, experts, stats, bytes: [base, ...experts].reduce((a, f) => a + fileSize(f), 0) };
}

function compare(a, b) {
  const r = spawnSync(PY, [path.join(__dirname, "torch_peer.py"), "--compare", a, b], { encoding: "utf8" });
  return r.status === 0 ? JSON.parse(r.stdout) : { error: r.stderr.trim().split("\n").at(-1) };
}

/** Rough peak of the PyTorch peer: every input in memory, plus float32 work arrays. */
function peerNeed(set, method) {
  const params = (fileSize(set.base) - 1e6) / 2; // bf16 inputs
  const flat = ["ties", "dare_linear", "dare_ties"].includes(method) ? 4 : 0.1; // [T,N] f32 matrices alive at once
  return set.bytes + flat * EXPERTS * params * 4 + params * 8;
}

function runSet(set) {
  const work = path.join(OUT, "speed-work");
  fs.mkdirSync(work, { recursive: true });
  const fl = readOnceFloor([set.base, ...set.experts]);
  log(`${set.name}: ${(set.bytes / 1e9).toFixed(2)} GB of inputs, read-once floor ${fl.wall.toFixed(2)} s`);
  const rows = [];
  const methods = tm.listMethods().filter((m) => !ONLY || ONLY.includes(m.name));
  for (const m of methods) {
    const row = { method: m.name };
    rows.push(row);
    if (m.needsStats && !set.stats) {
      row.skipped = "needs statistics (synthetic ones exist for the ViT set only)";
      continue;
    }
    const out = path.join(work, `${set.name}-${m.name}.safetensors`);
    const args = ["merge", "--base", set.base, ...set.experts.flatMap((e) => ["--expert", e]), "--method", m.name, "--out", out, "--quiet"];
    if (m.needsStats) args.push(...set.stats.flatMap((s) => ["--stats", s]));
    evict([set.base, ...set.experts, ...(m.needsStats ? set.stats : [])]);
    const r = timed([process.execPath, CLI, ...args]);
    Object.assign(row, { taskmerge: r });
    log(`${set.name} ${m.name}: ${r.error ?? `${r.wall.toFixed(2)} s, ${(r.rss / 2 ** 20).toFixed(0)} MiB`}`);
    if (!flag("no-peer") && PEER_METHODS.includes(m.name)) {
      const need = peerNeed(set, m.name);
      const avail = memAvailable();
      if (need > 0.8 * avail) {
        row.peerSkipped = `needs ~${(need / 2 ** 30).toFixed(1)} GiB, ${(avail / 2 ** 30).toFixed(1)} GiB available`;
      } else {
        const pout = path.join(work, `${set.name}-${m.name}.peer.safetensors`);
        evict([set.base, ...set.experts]);
        const p = timed([PY, path.join(__dirname, "torch_peer.py"), "--method", m.name, "--base", set.base, ...set.experts.flatMap((e) => ["--expert", e]), "--out", pout]);
        if (!p.error) p.phases = JSON.parse(p.stdout.trim().split("\n").at(-1));
        row.peer = p;
        log(`${set.name} ${m.name} (torch): ${p.error ?? `${p.wall.toFixed(2)} s, ${(p.rss / 2 ** 20).toFixed(0)} MiB`}`);
        if (!p.error && !r.error && COMPARE.has(m.name)) row.diff = compare(out, pout);
        fs.rmSync(pout, { force: true });
      }
    }
    fs.rmSync(out, { force: true });
  }
  return { set: set.name, dir: set.dir, files: 1 + set.experts.length, bytes: set.bytes, floor: fl, rows };
}

function markdown(res) {
  const s = (x) => (x === undefined ? "–" : x.toFixed(1));
  const mib = (x) => (x ? (x / 2 ** 20).toFixed(0) : "–");
  const L = [`## Merge speed and memory (${res.date}, ${res.cpus} CPUs, ${(res.memTotal / 2 ** 30).toFixed(0)} GiB RAM, taskmerge ${res.version}, ${res.addon})`, ""];
  L.push(
    `Command: \`${res.command}\`. Each merge is one child process of the CLI (\`taskmerge merge ... --quiet\`, default parameters) or of ` +
      "`bench/torch_peer.py` (PyTorch " + res.torch + ", CPU, loads every checkpoint then computes; TIES/DARE over one flattened [T, N] matrix as research code does). " +
      "Wall time includes process start and writing the output; peak RSS from `/usr/bin/time -v`. Before every run, the floor included, the input files are evicted " +
      "from this machine's page cache (fsync, then dd iflag=nocache: posix_fadvise DONTNEED), so every run starts with the same cold guest cache; " +
      "the virtual disk's host may still cache, which is why the floor can exceed the raw disk speed. " +
      "Read-once floor: one process reading every input file once, 16 MiB at a time, sequentially and all files at once; the faster counts.",
    "",
  );
  for (const set of res.sets) {
    L.push(`### ${set.set.startsWith("llm") ? `LLM-shaped (Llama-like, bf16), ${set.files - 1} experts` : `ViT-B/32-shaped (CLIP visual, bf16), ${set.files - 1} experts`}: ${(set.bytes / 1e9).toFixed(2)} GB of inputs`, "");
    if (set.command !== res.command) L.push(`Measured by \`${set.command}\` at ${set.date}.`, "");
    L.push(
      `Read-once floor: ${set.floor.wall.toFixed(2)} s (${(set.bytes / 1e9 / set.floor.wall).toFixed(2)} GB/s; sequential ${set.floor.sequential.toFixed(2)} s, ` +
        `all files at once ${set.floor.parallel.toFixed(2)} s; the faster is the floor).`,
      "",
    );
    L.push("| method | taskmerge s | × floor | taskmerge peak RSS MiB | PyTorch s | PyTorch peak RSS MiB | PyTorch / taskmerge time | PyTorch / taskmerge memory | max abs diff vs PyTorch (elements differing) |");
    L.push("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (const r of set.rows) {
      if (r.skipped) {
        L.push(`| ${r.method} | skipped: ${r.skipped} | | | | | | | |`);
        continue;
      }
      const t = r.taskmerge, p = r.peer;
      const ok = t && !t.error;
      const pok = p && !p.error;
      const peerCell = p ? (p.error ? `failed (${p.error})` : s(p.wall)) : r.peerSkipped ? `not run: ${r.peerSkipped}` : "–";
      const ulp = r.diff && r.diff.max_ulp !== undefined ? `, max ${r.diff.max_ulp} ulp` : "";
      const diff = r.diff ? (r.diff.error ? r.diff.error : `${r.diff.max_abs_diff.toPrecision(3)} (${r.diff.differing} of ${r.diff.elements}${ulp})`) : "–";
      L.push(
        `| ${r.method} | ${ok ? s(t.wall) : `failed (${t.error})`} | ${ok ? (t.wall / set.floor.wall).toFixed(2) : "–"} | ${ok ? mib(t.rss) : "–"} | ${peerCell} | ${pok ? mib(p.rss) : "–"} | ${ok && pok ? (p.wall / t.wall).toFixed(2) : "–"} | ${ok && pok ? (p.rss / t.rss).toFixed(1) : "–"} | ${diff} |`,
      );
    }
    L.push("");
  }
  return L.join("\n");
}

function main() {
  fs.mkdirSync(OUT, { recursive: true });
  if (flag("render")) {
    // rewrite speed.md from speed.json (no runs)
    fs.writeFileSync(path.join(OUT, "speed.md"), markdown(JSON.parse(fs.readFileSync(path.join(OUT, "speed.json"), "utf8"))));
    return log(`wrote ${path.join(OUT, "speed.md")}`);
  }
  const torch = spawnSync(PY, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" }).stdout.trim() || "not available";
  let addon = "";
  try {
    const file = process.env.TASKMERGE_ADDON || path.join(ROOT, "build", "Release", "taskmerge.node");
    const info = require(file).info();
    addon = `${info.threads} native threads, ${info.blas}`;
  } catch {
    /* informational only */
  }
  const res = {
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC", cpus: os.cpus().length, memTotal: os.totalmem(),
    version: tm.VERSION, torch, addon: addon || "native CPU addon", command: `node bench/speed.js ${process.argv.slice(2).join(" ")}`.trim(), sets: [],
  };
  const prev = path.join(OUT, "speed.json");
  if (flag("append") && fs.existsSync(prev)) {
    // keep the sets of an earlier run (e.g. the ViT set) and add this run's
    const old = JSON.parse(fs.readFileSync(prev, "utf8"));
    res.sets = old.sets.map((x) => ({ ...x, command: x.command ?? old.command, date: x.date ?? old.date }));
  }
  for (const [name, gb] of SETS.flatMap((n) => (n === "llm" ? GBS.map((g) => [n, g]) : [[n]]))) {
    const set = makeSet(name, gb);
    res.sets.push({ ...runSet(set), command: res.command, date: res.date });
    fs.writeFileSync(path.join(OUT, "speed.json"), JSON.stringify(res, null, 1));
    fs.writeFileSync(path.join(OUT, "speed.md"), markdown(res));
    if (!flag("keep-data") && !arg("dir")) fs.rmSync(set.dir, { recursive: true, force: true });
  }
  fs.rmSync(path.join(OUT, "speed-work"), { recursive: true, force: true });
  log(`wrote ${path.join(OUT, "speed.md")}`);
}

try {
  main();
} catch (e) {
  console.error(`bench/speed: ${e.message}`);
  process.exit(1);
}

#!/usr/bin/env node
/**
 * Merge quality on the Fashion-MNIST zoo (bench/zoo/train_zoo.py; CLIP-like: merged
 * encoders, each task scored through its own frozen head): every method the library
 * registers (listMethods(), so new methods join automatically), LOT and RegMean both with
 * the experts' statistics and progressively (statistics of each layer group collected
 * through the partially merged encoder by bench/zoo/collect.py), hyper-parameters chosen
 * on the validation split only, then accuracy on each task's test split.
 *
 *   npm run bench:quality [-- --zoo bench/zoo/out --out bench/out --val-limit 1000 --methods a,b]
 *
 * Writes bench/out/quality.md and bench/out/quality.json. Environment: TASKMERGE_DIST
 * (compiled library, default dist/), TASKMERGE_ADDON, PYTHON (default /usr/bin/python3).
 */
const fs = require("fs");
const net = require("net");
const path = require("path");
const { spawn, spawnSync } = require("child_process");
const readline = require("readline");

const ROOT = path.join(__dirname, "..");
const DIST = path.resolve(process.env.TASKMERGE_DIST || path.join(ROOT, "dist"));
const PY = process.env.PYTHON || "/usr/bin/python3";
const tm = require(path.join(DIST, "index.js"));
const { arg } = require("./common");
const CLI = path.join(DIST, "cli", "main.js");
const COLLECT = path.join(ROOT, "bench", "zoo", "collect.py");

const ZOO = path.resolve(arg("zoo", path.join(ROOT, "bench", "zoo", "out")));
const OUT = path.resolve(arg("out", path.join(ROOT, "bench", "out")));
const VAL_LIMIT = Number(arg("val-limit", "1000")); // val examples per task for the grid search
const TEST_LIMIT = Number(arg("test-limit", "0")); // 0: the whole test split (smoke runs use less)
const ONLY = arg("methods") ? arg("methods").split(",") : null;
// One grid for every method with a `lambda`: covers task-arithmetic-style defaults (0.3)
// and disjoint-mean / least-squares ones (1.0).
const LAMBDAS = (arg("lambdas") || "0.1,0.2,0.3,0.4,0.5,0.6,0.8,1,1.2,1.5").split(",").map(Number);
const EVAL_THREADS = arg("eval-threads", "1"); // torch threads of the evaluator (2 spin-wait on a busy machine)
const ALPHAS = [0.5, 0.8, 0.95, 1]; // RegMean's off-diagonal scaling (its paper tunes it on validation)
const TALL_LAMBDAS = [0.2, 0.3, 0.4, 0.5, 0.6]; // SPEC default grid

/** One long-lived evaluator (data stays loaded); requests answered in order. */
class Evaluator {
  constructor() {
    this.child = spawn(PY, [path.join(ROOT, "bench", "zoo", "evaluate.py"), "--zoo", ZOO, "--serve", "--threads", EVAL_THREADS], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.waiting = [];
    readline.createInterface({ input: this.child.stdout }).on("line", (l) => this.waiting.shift()(JSON.parse(l)));
    this.child.on("exit", (code) => {
      for (const w of this.waiting.splice(0)) w({ error: `evaluator exited (${code})` });
    });
  }
  async eval(model, split, tasks, limit = 0) {
    const r = await new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(JSON.stringify({ model, split, tasks, limit }) + "\n");
    });
    if (r.error) throw new Error(`evaluate ${model}: ${r.error}`);
    return r.accuracy;
  }
  close() {
    this.child.stdin.end();
  }
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const log = (m) => console.log(`[quality ${new Date().toISOString().slice(11, 19)}] ${m}`);

function cli(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
// `X --help` of an unknown X prints the root help with exit 0, so read the command list
const hasCommand = (name) => new RegExp(`^\\s+${name}\\b`, "m").test(cli(["--help"]).stdout.split(/^Commands:/m)[1] || "");

/** Candidate parameter sets of a method: a lambda grid when it has one (alpha for RegMean), else its defaults. */
function grid(method) {
  const names = method.params.map((p) => p.name);
  if (names.includes("lambda")) return LAMBDAS.map((lambda) => ({ lambda }));
  if (method.name === "regmean" && names.includes("alpha")) return ALPHAS.map((alpha) => ({ alpha }));
  return [{}];
}

/** The runs of a method: statistics methods once with the experts' statistics and, when the
 * build has it, once progressive; others once. */
function variants(method) {
  if (!method.needsStats) return [{ name: method.name, progressive: false }];
  const out = [{ name: `${method.name} (expert statistics)`, progressive: false }];
  if (method.params.some((p) => p.name === "progressive")) out.push({ name: `${method.name} (progressive)`, progressive: true });
  return out;
}

/** bench/zoo/collect.py --serve: torch and the calibration images stay loaded; requests over a Unix socket. */
class CollectServer {
  constructor(socket) {
    this.socket = socket;
    this.child = spawn(PY, [COLLECT, "--zoo", ZOO, "--serve", "--socket", socket], { stdio: ["pipe", "pipe", "inherit"] });
    this.ready = new Promise((resolve, reject) => {
      readline.createInterface({ input: this.child.stdout }).once("line", resolve);
      this.child.once("exit", (code) => reject(new Error(`collect server exited (${code})`)));
    });
    this.seconds = 0;
    this.runs = 0;
  }
  /** The library's collectStats callback: the group's statistics on the partial checkpoint. */
  async collect({ model, expert, keys, out }) {
    await this.ready;
    const t = Date.now();
    const res = await new Promise((resolve, reject) => {
      const s = net.createConnection(this.socket);
      let data = "";
      s.on("data", (d) => (data += d));
      s.on("end", () => resolve(JSON.parse(data)));
      s.on("error", reject);
      s.write(JSON.stringify({ model, expert, keys, out }) + "\n");
    });
    this.seconds += (Date.now() - t) / 1000;
    this.runs++;
    if (res.error) throw new Error(`collect ${expert}: ${res.error}`);
    return out;
  }
  /** The same collector as a CLI --stats-command. */
  command() {
    return `${PY} ${COLLECT} --zoo ${ZOO} --socket ${this.socket} --model {model} --expert {expert} --keys {keys} --out {out}`;
  }
  close() {
    this.child.stdin.end();
  }
}

async function main() {
  const zoo = JSON.parse(fs.readFileSync(path.join(ZOO, "zoo.json"), "utf8"));
  const tasks = zoo.tasks;
  const base = path.join(ZOO, zoo.files.base);
  const experts = tasks.map((t) => ({ path: path.join(ZOO, zoo.files.experts[t]), name: t, stats: path.join(ZOO, zoo.files.stats[t]) }));
  const work = path.join(OUT, "quality-work");
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const ev = new Evaluator();
  const t0 = Date.now();
  const rows = [];

  // references: the base encoder with every task's head (zero-shot), each expert on its own task
  const baseTest = await ev.eval(base, "test", tasks, TEST_LIMIT);
  const expertTest = {};
  for (const e of experts) expertTest[e.name] = (await ev.eval(e.path, "test", [e.name], TEST_LIMIT))[e.name];
  rows.push({ name: "zero-shot (base encoder + task heads)", test: baseTest, params: {} });
  rows.push({ name: "individual experts", test: expertTest, params: {} });
  log(`zero-shot mean ${mean(Object.values(baseTest)).toFixed(4)}, experts mean ${mean(Object.values(expertTest)).toFixed(4)}`);

  const methods = tm.listMethods().filter((m) => !ONLY || ONLY.includes(m.name));
  const drift = hasCommand("drift");
  const collector = methods.some((m) => variants(m).some((v) => v.progressive)) ? new CollectServer(path.join(work, "collect.sock")) : null;
  for (const m of methods) {
    for (const v of variants(m)) {
      const tried = [];
      let best = null;
      for (const params of grid(m)) {
        const out = path.join(work, `${m.name}-${v.progressive ? "p" : "e"}-${tried.length}.safetensors`);
        const spec = m.needsStats && !v.progressive ? experts : experts.map(({ stats, ...e }) => e);
        const method = { name: m.name, ...params, ...(v.progressive ? { progressive: true } : {}) };
        const ts = Date.now();
        const c0 = collector ? collector.seconds : 0;
        const report = await tm.merge({ base, experts: spec, method, out, ...(v.progressive ? { collectStats: (req) => collector.collect(req) } : {}) });
        const mergeS = (Date.now() - ts) / 1000;
        const collectS = collector ? collector.seconds - c0 : 0;
        const val = mean(Object.values(await ev.eval(out, "val", tasks, VAL_LIMIT)));
        tried.push({ params, val });
        if (!best || val > best.val) {
          if (best) fs.rmSync(best.out, { force: true });
          best = { params, val, out, mergeS, collectS, report };
        } else fs.rmSync(out, { force: true });
      }
      const test = await ev.eval(best.out, "test", tasks, TEST_LIMIT);
      const row = { name: v.name, method: m.name, progressive: v.progressive, params: best.params, val: best.val, test, tried, mergeSeconds: best.mergeS };
      if (v.progressive) {
        row.collectSeconds = best.collectS;
        row.progress = best.report.details?.progressive;
        row.cli = cliCheck(base, experts, m.name, best.params, best.out, collector, work);
        row.note = `one merge ${best.mergeS.toFixed(1)} s, of which ${best.collectS.toFixed(1)} s in the collector; ` + row.cli;
      }
      if (drift) row.drift = runDrift(base, experts, best.out);
      rows.push(row);
      fs.rmSync(best.out, { force: true });
      log(`${v.name} ${JSON.stringify(best.params)}: val ${best.val.toFixed(4)} test ${mean(Object.values(test)).toFixed(4)}`);
    }
  }
  if (collector) collector.close();

  if (hasCommand("compress") && hasCommand("extract") && (!ONLY || ONLY.includes("tall_masks"))) rows.push(await tallMasks(ev, base, experts, tasks, work));
  ev.close();

  const result = { zoo: ZOO, tasks, valLimit: VAL_LIMIT, testLimit: TEST_LIMIT, lambdas: LAMBDAS, alphas: ALPHAS, seconds: (Date.now() - t0) / 1000, rows, expertTest, driftCommand: drift };
  fs.writeFileSync(path.join(OUT, "quality.json"), JSON.stringify(result, null, 1));
  fs.writeFileSync(path.join(OUT, "quality.md"), markdown(result, zoo));
  fs.rmSync(work, { recursive: true, force: true });
  log(`wrote ${path.join(OUT, "quality.md")} in ${result.seconds.toFixed(0)} s`);
}

/** The chosen progressive merge again through the CLI with collect.py as --stats-command: the same bytes? */
function cliCheck(base, experts, method, params, libraryOut, collector, work) {
  const out = path.join(work, "cli-check.safetensors");
  const flags = Object.entries(params).flatMap(([k, v]) => [`--${k.replace(/_/g, "-")}`, String(v)]);
  const t = Date.now();
  const r = cli(["merge", "--base", base, ...experts.flatMap((e) => ["--expert", e.path]), "--method", method, ...flags, "--progressive", "--stats-command", collector.command(), "--out", out, "--quiet"]);
  const s = ((Date.now() - t) / 1000).toFixed(1);
  if (r.code !== 0) return `CLI --stats-command run failed: ${(r.stderr.trim().split("\n").pop() || "").slice(0, 200)}`;
  const same = Buffer.compare(fs.readFileSync(out), fs.readFileSync(libraryOut)) === 0;
  fs.rmSync(out, { force: true });
  return `the same merge through the CLI (--progressive --stats-command bench/zoo/collect.py, ${s} s) wrote ${same ? "byte-identical" : "DIFFERENT"} output`;
}

/** TALL masks: one bundle per tall_lambda; each task's reconstruction on its own task. */
async function tallMasks(ev, base, experts, tasks, work) {
  const tried = [];
  let best = null;
  for (const lam of TALL_LAMBDAS) {
    const bundle = path.join(work, `bundle-${lam}`);
    const r = cli(["compress", "--base", base, ...experts.flatMap((e) => ["--expert", e.path]), "--tall-lambda", String(lam), "--out", bundle]);
    if (r.code !== 0) throw new Error(`compress failed: ${r.stderr.trim()}`);
    const val = {};
    for (const t of tasks) {
      const out = path.join(work, `tall-${t}.safetensors`);
      const x = cli(["extract", "--bundle", bundle, "--task", t, "--base", base, "--out", out]);
      if (x.code !== 0) throw new Error(`extract ${t} failed: ${x.stderr.trim()}`);
      val[t] = (await ev.eval(out, "val", [t], VAL_LIMIT))[t];
    }
    tried.push({ params: { tall_lambda: lam }, val: mean(Object.values(val)) });
    if (!best || tried.at(-1).val > best.val) best = { lam, val: tried.at(-1).val, bundle };
  }
  const test = {};
  for (const t of tasks) {
    const out = path.join(work, `tall-${t}.safetensors`);
    cli(["extract", "--bundle", best.bundle, "--task", t, "--base", base, "--out", out]);
    test[t] = (await ev.eval(out, "test", [t], TEST_LIMIT))[t];
  }
  const bytes = (d) => fs.readdirSync(d).reduce((s, f) => s + fs.statSync(path.join(d, f)).size, 0);
  log(`tall_masks ${best.lam}: val ${best.val.toFixed(4)} test ${mean(Object.values(test)).toFixed(4)}`);
  return {
    name: "TALL masks (compress + extract, per-task model)", params: { tall_lambda: best.lam }, val: best.val, test, tried,
    note: `bundle ${(bytes(best.bundle) / 1e6).toFixed(2)} MB vs ${((experts.length * fs.statSync(experts[0].path).size) / 1e6).toFixed(2)} MB of experts`,
  };
}

/** Feature drift of a merged model from `taskmerge drift --json`: totals only (layers are long). */
function runDrift(base, experts, merged) {
  const args = ["drift", "--base", base, ...experts.flatMap((e) => ["--expert", e.path]), ...experts.flatMap((e) => ["--stats", e.stats]), "--merged", merged, "--json"];
  const r = cli(args);
  if (r.code !== 0) return { error: r.stderr.trim().split("\n")[0] };
  const j = JSON.parse(r.stdout);
  return { total: j.total, baseTotal: j.baseTotal, ratio: j.baseTotal > 0 ? j.total / j.baseTotal : null, tasks: Object.fromEntries(j.totals.map((t) => [t.task, t.ratio])), skipped: j.skipped.length };
}

function markdown(r, zoo) {
  const pct = (x) => (x === undefined ? "–" : (100 * x).toFixed(1));
  const exp = r.expertTest;
  const lines = [];
  lines.push(`## Merge quality: Fashion-MNIST zoo (${r.tasks.length} tasks)`);
  lines.push("");
  lines.push(
    `Setting (CLIP-like, as in the merging papers): a pre-LN transformer encoder (dim ${zoo.model.dim}, depth ${zoo.model.depth}, ${zoo.model.heads} heads) ` +
      `pre-trained on the original images (${zoo.sizes.pretrain_steps} batches of ${zoo.sizes.batch}); per task a linear head fitted on frozen base features ` +
      `(${zoo.sizes.head_samples} training images, L2 chosen on validation) and then frozen; each expert is the encoder fine-tuned through its task's frozen head ` +
      `(learning rate ${zoo.sizes.ft_lr}, ${zoo.sizes.ft_steps} batches of ${zoo.sizes.batch}). Merges combine encoders; each task is scored with its own head. ` +
      `Tasks: ${r.tasks.join(", ")}. Hyper-parameters chosen by mean validation accuracy only (first ${r.valLimit || "all"} validation examples per task, held out from training); ` +
      `test: ${r.testLimit ? `first ${r.testLimit}` : `all ${zoo.sizes.test}`} test images per task. Statistics: ${zoo.sizes.stats_samples} calibration images per task (training split), ` +
      `through each expert ("expert statistics") or, progressive, through the partially merged encoder group by group (bench/zoo/collect.py). ` +
      `Lambda grid: ${r.lambdas.join(", ")}; RegMean alpha grid: ${(r.alphas || []).join(", ")}; other parameters at their defaults. ` +
      `Run time ${r.seconds.toFixed(0)} s; the zoo itself (\`npm run bench:zoo\`, seed ${zoo.seed}, ${zoo.threads} torch thread) took ${Math.round(zoo.seconds)} s.`,
  );
  lines.push("");
  lines.push("Absolute test accuracy (%):");
  lines.push("");
  lines.push(`| method | chosen | ${r.tasks.join(" | ")} | mean | normalized |`);
  lines.push(`|---|---|${r.tasks.map(() => "---:").join("|")}|---:|---:|`);
  for (const row of r.rows) {
    const accs = r.tasks.map((t) => row.test[t]);
    const norm = mean(r.tasks.map((t) => row.test[t] / exp[t]));
    const chosen = Object.entries(row.params).map(([k, v]) => `${k}=${v}`).join(" ") || "–";
    lines.push(`| ${row.name} | ${chosen} | ${accs.map(pct).join(" | ")} | **${pct(mean(accs))}** | ${pct(norm)} |`);
  }
  lines.push("");
  lines.push("Normalized accuracy (merged / individual expert, %):");
  lines.push("");
  lines.push(`| method | ${r.tasks.join(" | ")} | mean |`);
  lines.push(`|---|${r.tasks.map(() => "---:").join("|")}|---:|`);
  for (const row of r.rows.filter((x) => x.name !== "individual experts")) {
    const n = r.tasks.map((t) => row.test[t] / exp[t]);
    lines.push(`| ${row.name} | ${n.map(pct).join(" | ")} | ${pct(mean(n))} |`);
  }
  lines.push("");
  lines.push("Validation grid (mean validation accuracy %, per candidate):");
  lines.push("");
  for (const row of r.rows.filter((x) => x.tried && x.tried.length > 1))
    lines.push(`- ${row.name}: ${row.tried.map((t) => `${Object.values(t.params).join(",")}→${pct(t.val)}`).join(", ")}`);
  for (const row of r.rows.filter((x) => x.note)) lines.push(`- ${row.name}: ${row.note}`);
  for (const row of r.rows.filter((x) => x.progress)) {
    const p = row.progress;
    const groups = p.groups.map((g) => (Array.isArray(g.keys) ? `${g.name} (${g.keys.join(", ")})` : `${g.name} (${g.keys} keys)`));
    lines.push(
      `- ${row.name}: ${p.granularity} groups in merge order: ${groups.join("; ")}; ${p.collectorRuns} collector runs; ` +
        `${p.collectSeconds.toFixed(1)} s collecting, ${p.mergeSeconds.toFixed(1)} s merging, ${p.writeSeconds.toFixed(1)} s writing (engine's report)`,
    );
  }
  lines.push("");
  if (r.driftCommand) {
    lines.push(
      "Feature drift of the chosen merge (`taskmerge drift`: Σ over layers of tr((W−Wt) Gt (W−Wt)ᵀ) for linear layers and Σ st (w−wt)² for norms, " +
        "from the same 64-sample statistics), as a ratio to the unmerged base's drift (lower is better; 1 = no closer to the experts than the base):",
    );
    lines.push("");
    lines.push(`| method | total drift | ratio to base | ${r.tasks.join(" | ")} |`);
    lines.push(`|---|---:|---:|${r.tasks.map(() => "---:").join("|")}|`);
    const g = (x) => (typeof x === "number" ? x.toPrecision(3) : "–");
    for (const row of r.rows.filter((x) => x.drift)) {
      const d = row.drift;
      if (d.error) lines.push(`| ${row.name} | error: ${d.error} | | ${r.tasks.map(() => "").join(" | ")} |`);
      else lines.push(`| ${row.name} | ${g(d.total)} | ${g(d.ratio)} | ${r.tasks.map((t) => g(d.tasks[t])).join(" | ")} |`);
    }
  } else {
    lines.push("Feature drift: `taskmerge drift` is not available in this build; not measured.");
  }
  lines.push("");
  return lines.join("\n");
}

// --render: rewrite quality.md from an existing quality.json (after a change to the report's layout)
const run = process.argv.includes("--render")
  ? async () => {
      const result = JSON.parse(fs.readFileSync(path.join(OUT, "quality.json"), "utf8"));
      const zoo = JSON.parse(fs.readFileSync(path.join(result.zoo, "zoo.json"), "utf8"));
      fs.writeFileSync(path.join(OUT, "quality.md"), markdown(result, zoo));
    }
  : main;
run().catch((e) => {
  console.error(`bench/quality: ${e.stack || e.message}`);
  process.exit(1);
});

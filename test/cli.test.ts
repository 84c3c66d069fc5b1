/**
 * The command line as users meet it, run as a child process: help and
 * version, exit codes, progress on a terminal and in logs, --quiet, --json,
 * --dry-run, the output directory (copied files, taskmerge.json, model card)
 * and SIGINT/SIGTERM stopping a run with no output left.
 */
import * as fs from "fs";
import * as path from "path";
import { spawn, spawnSync } from "child_process";
import YAML from "yaml";
import { CLI, CliResult, makeZoo, readSafetensors, readHeader, runCli, tmpDir, listTree, KeySpec, smallModel, writeSafetensors } from "./helpers/fixtures";

const VERSION = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8")).version;

/** Bytes each float key is read (base + experts) and each non-float key (base) in one pass. */
function inputBytes(dir: string, T: number, ext = ".safetensors"): number {
  const load = (name: string) => readSafetensors(path.join(dir, `${name}${ext}`));
  const base = load("base");
  const experts = Array.from({ length: T }, (_, i) => load(`task${i}`));
  let n = 0;
  for (const [k, t] of Object.entries(base)) {
    n += t.data.length;
    if (["F64", "F32", "F16", "BF16"].includes(t.dtype)) for (const e of experts) n += e[k].data.length;
  }
  return n;
}

describe("help, version, exit codes", () => {
  test("--version and -V print the package version first, then the addon", async () => {
    for (const flag of ["--version", "-V"]) {
      const r = await runCli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.split("\n")[0]).toBe(VERSION);
      expect(r.stdout.split("\n")[1]).toMatch(/^addon: /);
    }
  });

  test("every command has --help with examples", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain("Examples:");
    const commands = top.stdout
      .split("Commands:")[1]
      .split("\n")
      .map((l) => /^  (\w[\w-]*)/.exec(l)?.[1])
      .filter((c): c is string => !!c && c !== "help");
    expect(commands).toEqual(expect.arrayContaining(["merge", "inspect"]));
    const helps = await Promise.all(commands.map((c) => runCli([c, "--help"])));
    helps.forEach((h, i) => {
      expect({ command: commands[i], code: h.code, hasExamples: /^Examples?:\n  taskmerge /m.test(h.stdout) }).toEqual({
        command: commands[i], code: 0, hasExamples: true,
      });
    });
    const viaHelp = await runCli(["help", "merge"]);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toContain("--dry-run");
  });

  test("usage errors exit 2, failures exit 1, each with one line on stderr", async () => {
    const dir = tmpDir();
    makeZoo(dir, { T: 2 });
    const b = path.join(dir, "base.safetensors");
    const e = [path.join(dir, "task0.safetensors"), path.join(dir, "task1.safetensors")];
    const out = path.join(dir, "out.safetensors");
    const cases: [string[], number, RegExp][] = [
      [["merge"], 2, /--base is required/],
      [["merge", "--base", b, "--expert", e[0], "--method", "average"], 2, /--out is required/],
      [["merge", "--bogus"], 2, /unknown option '--bogus'/],
      [["frobnicate"], 2, /unknown command 'frobnicate'/],
      [["merge", "--base", b, "--expert", e[0], "--method", "task_arithmetic", "--lambda", "abc", "--out", out], 2, /parameter 'lambda'/],
      [["merge", "--base", b, "--expert", e[0], "--method", "nope", "--out", out], 2, /unknown method 'nope'/],
      [["merge", "--base", b, "--expert", e[0], "--expert", e[1], "--stats", e[0], "--method", "average", "--out", out], 2, /--stats given 1 times for 2 experts/],
      [["merge", "--base", b, "--expert", e[0], "--method", "average", "--out", e[0]], 2, /the output .*task0\.safetensors is also an input/],
      [["merge", "--base", b, "--expert", e[0], "--method", "average", "--out", dir], 2, /the output .* contains an input \(.*base\.safetensors\)/],
      [["merge", "--base", path.join(dir, "missing.safetensors"), "--expert", e[0], "--method", "average", "--out", out], 1, /checkpoint not found.*missing\.safetensors/],
      [["merge", "--base", b, "--expert", e[0], "--method", "average", "--out", path.join(dir, "no", "such", "out.safetensors")], 1, /parent directory does not exist/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((r, i) => {
      const [args, code, re] = cases[i];
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(re);
      expect(r.stderr.split("\n").filter((l) => l && !l.startsWith("(run with --help")).length).toBe(1);
    });
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe("progress and reports", () => {
  let dir: string;
  let args: string[];
  beforeAll(() => {
    dir = tmpDir();
    makeZoo(dir, { T: 2 });
    args = ["merge", "--base", path.join(dir, "base.safetensors"), "--expert", path.join(dir, "task0.safetensors"),
      "--expert", path.join(dir, "task1.safetensors"), "--method", "average"];
  });

  test("plain progress lines when stderr is not a terminal, then a summary", async () => {
    const r = await runCli([...args, "--out", path.join(dir, "plain.safetensors")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toMatch(/\x1b\[/);
    expect(r.stderr).toMatch(/^merge: 0\.0% \| 0\/9 tensors \| 0 B\/[\d.]+ \S?B \| .*ETA/m);
    expect(r.stderr).toMatch(/^merge: 100\.0% \| 9\/9 tensors \| .* \| ETA 0s$/m);
    expect(r.stderr).toMatch(/^merged 9 tensors with average into .*plain\.safetensors in [\d.]+ s \(read .*, wrote .*, peak memory .*\)$/m);
  });

  const hasScript = spawnSync("script", ["--version"]).status === 0;
  (hasScript ? test : test.skip)(
    `a progress bar on a terminal (through a pseudo-terminal from util-linux 'script')${hasScript ? "" : " — skipped: 'script' not found"}`,
    async () => {
      const out = path.join(dir, "tty.safetensors");
      const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
      const cmd = [process.execPath, CLI, ...args, "--out", out].map(q).join(" ");
      const r = await new Promise<string>((resolve, reject) => {
        const child = spawn("script", ["-qec", cmd, "/dev/null"], { env: { ...process.env, TASKMERGE_CHUNK_ELEMS: "8" } });
        let text = "";
        child.stdout.on("data", (d) => (text += d));
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`script exited ${code}: ${text}`))));
      });
      expect(r).toMatch(/\x1b\[/); // cursor control: a redrawn bar, not lines
      expect(r).toMatch(/merge\s+\[█+\] 100% \| 9\/9 tensors \| [\d.]+ \S?B\/[\d.]+ \S?B \| [\d.]+ \S?B\/s \| ETA 0s/);
      expect(r).toContain("merged 9 tensors with average");
      expect(fs.existsSync(out)).toBe(true);
    },
  );

  test("--quiet prints nothing on success", async () => {
    const r = await runCli([...args, "--quiet", "--out", path.join(dir, "quiet.safetensors")]);
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
  });

  test("--json: the final report on stdout, machine-readable", async () => {
    const out = path.join(dir, "json");
    const r = await runCli([...args, "--json", "-q", "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const rep = JSON.parse(r.stdout);
    const written = readSafetensors(out);
    expect(rep).toMatchObject({
      taskmerge: VERSION, method: "average", params: {}, out, tensors: 9, base: args[2], experts: [args[4], args[6]], dtype: null,
      bytesRead: inputBytes(dir, 2),
      bytesWritten: Object.values(written).reduce((n, t) => n + t.data.length, 0),
    });
    expect(rep.seconds).toBeGreaterThanOrEqual(0);
    expect(rep.peakMemoryBytes).toBeGreaterThan(10e6); // maxRSS of a Node process, in bytes
    expect(rep.peakMemoryBytes).toBeLessThan(4e9);
    // The method's details are the ones recorded beside the output.
    expect(rep.details).toEqual(JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8")).details);
  });

  test("--json carries the method's own report (TIES thresholds), as taskmerge.json does", async () => {
    const out = path.join(dir, "json-ties");
    const r = await runCli([...args.slice(0, -1), "ties", "--density", "0.3", "--json", "-q", "--out", out]);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep).toMatchObject({ method: "ties", params: { density: 0.3 } });
    expect(JSON.stringify(rep.details)).toMatch(/threshold/i);
    expect(rep.details).toEqual(JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8")).details);
  });
});

describe("--dry-run", () => {
  test("checks the inputs, prints the plan and writes nothing; the plan matches the real run", async () => {
    const dir = tmpDir();
    makeZoo(dir, { T: 2, layout: "dir" });
    fs.writeFileSync(path.join(dir, "base", "config.json"), "{}");
    const args = ["merge", "--base", path.join(dir, "base"), "--expert", path.join(dir, "task0"), "--expert", path.join(dir, "task1"),
      "--method", "task_arithmetic", "--lambda", "0.5", "--dtype", "bf16", "--out", path.join(dir, "out")];
    const before = listTree(dir);
    const [text, json] = await Promise.all([runCli([...args, "--dry-run"]), runCli([...args, "--dry-run", "--json"])]);
    expect(listTree(dir)).toEqual(before);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^dry run: all inputs checked; nothing was written$/m);
    expect(text.stdout).toMatch(/^method +task_arithmetic \(lambda=0\.5\)$/m);
    expect(text.stdout).toMatch(/9 tensors, 7 merged and 2 copied from the base/);
    expect(text.stdout).toMatch(/^keys +embed\.weight +BF16 +\[16, 8\] +merge +256 B$/m);
    expect(text.stdout).toMatch(/… and 3 more/);
    expect(text.stdout).toMatch(/copied from the base: config\.json/);
    expect(text.stdout).toMatch(/^I\/O +reads [\d.]+ \S?B per pass over the inputs, writes [\d.]+ \S?B$/m);
    expect(text.stdout).toMatch(/^memory +~.* peak \(estimate: streaming buffers .*, runtime .*\)$/m);

    expect(json.code).toBe(0);
    const plan = JSON.parse(json.stdout);
    expect(plan).toMatchObject({ dryRun: true, method: "task_arithmetic", params: { lambda: 0.5 } });
    expect(plan.tensors).toHaveLength(9);
    expect(plan.tensors.filter((t: { dtype: string }) => t.dtype === "BF16")).toHaveLength(7);
    expect(plan.io).toMatchObject({ bytesPerPass: inputBytes(dir, 2, ""), statisticsBytes: 0 });
    expect(plan.out.copied).toEqual(["config.json"]);
    // The estimate covers at least the double-buffered chunks of the largest tensor (fc1: 256 elements, 3 F32 inputs).
    expect(plan.memory.buffers).toBeGreaterThanOrEqual(2 * 256 * 4 * 3);
    expect(plan.memory.peakBytes).toBe(plan.memory.buffers + plan.memory.statistics + plan.memory.runtime);

    const real = await runCli([...args, "-q"]);
    expect(real.code).toBe(0);
    const file = path.join(dir, "out", "model.safetensors");
    expect(plan.out.files).toEqual([{ name: "model.safetensors", bytes: fs.statSync(file).size }]);
    expect(plan.io.bytesWritten).toBe(fs.statSync(file).size);
  });

  test("a dry run fails like the merge would: differing shapes, naming key and file, exit 1", async () => {
    const dir = tmpDir();
    const keys = smallModel();
    makeZoo(dir, { T: 1, keys });
    const other = tmpDir();
    const bad: KeySpec[] = keys.map((k) => (k.name === "blocks.0.mlp.fc1.weight" ? { ...k, shape: [32, 9] } : k));
    makeZoo(other, { T: 1, keys: bad });
    const r = await runCli(["merge", "--dry-run", "--base", path.join(dir, "base.safetensors"), "--expert", path.join(other, "task0.safetensors"),
      "--method", "average", "--out", path.join(dir, "out.safetensors")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/shapes or dtypes differ from the base: "blocks\.0\.mlp\.fc1\.weight" \[32,9\] vs base \[32,8\].*task0\.safetensors/);
    expect(fs.existsSync(path.join(dir, "out.safetensors"))).toBe(false);
  });
});

describe("output directory", () => {
  test("copies the base's non-weight files, writes taskmerge.json and a model card whose config reproduces the merge", async () => {
    const dir = tmpDir();
    makeZoo(dir, { T: 2, layout: "dir" });
    const baseDir = path.join(dir, "base");
    fs.writeFileSync(path.join(baseDir, "config.json"), '{"model_type": "toy"}');
    fs.writeFileSync(path.join(baseDir, "tokenizer.json"), '{"vocab": {}}');
    fs.writeFileSync(path.join(baseDir, "README.md"), "# the base model's own card\n");
    fs.writeFileSync(path.join(baseDir, "pytorch_model.bin"), "weights in another format");
    const out = path.join(dir, "merged");
    const args = ["merge", "--base", baseDir, "--expert", path.join(dir, "task0"), "--expert", path.join(dir, "task1"),
      "--method", "task_arithmetic", "--lambda", "0.25", "--dtype", "f16", "--out", out, "-q"];
    const r = await runCli(args);
    expect(r.code).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(["README.md", "config.json", "model.safetensors", "taskmerge.json", "tokenizer.json"]);
    expect(fs.readFileSync(path.join(out, "tokenizer.json"))).toEqual(fs.readFileSync(path.join(baseDir, "tokenizer.json")));
    // --dtype f16: config.json says so.
    expect(JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"))).toEqual({ model_type: "toy", torch_dtype: "float16" });

    const manifest = JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));
    expect(manifest).toEqual({
      taskmerge: VERSION, method: "task_arithmetic", params: { lambda: 0.25 }, base: baseDir, dtype: "F16",
      experts: [{ name: "task0", path: path.join(dir, "task0"), weight: 1 }, { name: "task1", path: path.join(dir, "task1"), weight: 1 }],
      details: {},
      files: ["README.md", "config.json", "model.safetensors", "taskmerge.json", "tokenizer.json"],
    });

    const card = fs.readFileSync(path.join(out, "README.md"), "utf8");
    const front = YAML.parse(card.split("---\n")[1]);
    expect(front).toEqual({ tags: ["merge", "taskmerge", "task_arithmetic"] });
    expect(card).toContain("- Base: `../base`");
    expect(card).toContain(`merged with taskmerge ${VERSION} using the **task_arithmetic** method`);
    expect(card).toContain("| lambda | 0.25 |");
    expect(card).toContain("| task0 | `../task0` | 1 | — |");
    expect(card).not.toContain(dir);
    expect(card).toContain("Output dtype of float tensors: F16.");
    // The card's merge.yaml, run as a config, gives the same bytes.
    const yaml = /```yaml\n([\s\S]*?)```/.exec(card)![1];
    fs.writeFileSync(path.join(out, "merge.yaml"), yaml);
    const again = await runCli(["merge", "--config", path.join(out, "merge.yaml"), "--out", path.join(dir, "again"), "-q"]);
    expect(again.stderr).toBe("");
    expect(again.code).toBe(0);
    expect(fs.readFileSync(path.join(dir, "again", "model.safetensors"))).toEqual(fs.readFileSync(path.join(out, "model.safetensors")));
    expect(readHeader(path.join(out, "model.safetensors"))["embed.weight"].dtype).toBe("F16");
  });
});

describe("signals", () => {
  /** A run long enough to interrupt: a 1M-element tensor streamed in 16-element chunks (values do not matter here). */
  function bigZoo(): string {
    const dir = tmpDir();
    ["base", "task0", "task1"].forEach((name, t) => {
      const w = new Float32Array(1 << 20).map((_, i) => ((i * 2654435761 + t) % 1000) / 1000);
      writeSafetensors(path.join(dir, `${name}.safetensors`), {
        w: { dtype: "F32", shape: [1024, 1024], data: Buffer.from(w.buffer) },
        ids: { dtype: "I64", shape: [4], data: Buffer.alloc(32) },
      });
    });
    return dir;
  }

  function interrupt(args: string[], sig: NodeJS.Signals): Promise<CliResult & { sawProgress: boolean }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, TASKMERGE_CHUNK_ELEMS: "16" } });
      let stdout = "";
      let stderr = "";
      let sent = false;
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => {
        stderr += d;
        // Signal once the merge pass is under way (its first progress line), plus a moment.
        if (!sent && /^merge: /m.test(stderr)) {
          sent = true;
          setTimeout(() => child.kill(sig), 150);
        }
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 60000);
      child.on("error", reject);
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, sawProgress: sent });
      });
    });
  }

  test.each([
    ["SIGINT", 130, "out"],
    ["SIGTERM", 143, "out.safetensors"],
  ] as const)("%s midway stops the run, exits %d and leaves nothing at the output path (%s)", async (sig, code, name) => {
    const dir = bigZoo();
    const before = listTree(dir);
    const out = path.join(dir, name);
    const r = await interrupt(["merge", "--base", path.join(dir, "base.safetensors"), "--expert", path.join(dir, "task0.safetensors"),
      "--expert", path.join(dir, "task1.safetensors"), "--method", "average", "--out", out], sig);
    expect(r.sawProgress).toBe(true);
    expect(r.stderr).not.toContain("merged ");
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(new RegExp(`^taskmerge: interrupted by ${sig}; no output was written$`, "m"));
    expect(fs.existsSync(out)).toBe(false);
    expect(listTree(dir)).toEqual(before); // no temporary file or directory left either
  });
});

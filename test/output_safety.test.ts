/**
 * taskmerge never touches what it did not write: which outputs it replaces,
 * inputs that alias the output (symlinks, hard links, shards, statistics,
 * bundle files), a replacement killed between its two renames, leftovers of
 * killed runs, the per-output lock, and a signal during the final rename.
 */
import * as fs from "fs";
import * as path from "path";
import { spawn, spawnSync } from "child_process";
import { merge, extract, compress, planMerge, GramAccumulator } from "../lib";
import { OutputSlot } from "../lib/out_path/slot";
import { CHECKPOINT_DIR } from "../lib/out_path/owned";
import { makeZoo, runCli, tmpDir, listTree, readSafetensors, CliResult, Zoo, ROOT } from "./helpers/fixtures";

const SIGNAL_AT_STEP = path.join(ROOT, "test", "helpers", "signal_at_step.js");

/** Every file under `dir` with its bytes, to show nothing changed. */
const snapshot = (dir: string) =>
  Object.fromEntries(listTree(dir).map((f) => {
    const p = path.join(dir, f);
    return [f, fs.lstatSync(p).isFile() ? fs.readFileSync(p).toString("hex") : "dir"];
  }));

/** A pid that surely belongs to no process: one that has just exited. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!;

const oneErrorLine = (r: CliResult, re: RegExp) => {
  expect(r.stderr).toMatch(re);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
};

function zoo(): { dir: string; z: Zoo; args: (out: string, method?: string) => string[] } {
  const dir = tmpDir("safety-");
  const z = makeZoo(dir, { T: 2 });
  const args = (out: string, method = "average") =>
    ["merge", "--base", z.base.path, "--expert", z.experts[0].path, "--expert", z.experts[1].path, "--method", method, "--out", out, "-q"];
  return { dir, z, args };
}

/** Runs the CLI in a child that sends itself `sig` at `step` of replacing a directory. */
function runSignalAtStep(step: string, sig: string, args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SIGNAL_AT_STEP, step, sig, ...args]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe("only taskmerge's own outputs are replaced", () => {
  test("a directory holding anything else is left alone, and the run fails before reading any input", async () => {
    const { dir, args } = zoo();
    const out = path.join(dir, "mine");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "notes.txt"), "my notes");
    // A base that is not even a checkpoint: the output check must come first.
    fs.writeFileSync(path.join(dir, "garbage.safetensors"), "not safetensors");
    const before = snapshot(dir);
    const bad = args(out);
    bad[2] = path.join(dir, "garbage.safetensors");
    const r = await runCli(bad);
    expect(r.code).toBe(1);
    oneErrorLine(r, /output directory exists and is not a taskmerge output \(no taskmerge\.json\); refusing to replace it/);
    expect(snapshot(dir)).toEqual(before);
  });

  test("--out . and a merge.yaml with out: . destroy nothing", async () => {
    const { dir, z } = zoo();
    // The config in a project directory of its own (inputs elsewhere), so only the output check can stop it.
    const proj = path.join(dir, "proj");
    fs.mkdirSync(proj);
    const cfg = path.join(proj, "merge.yaml");
    fs.writeFileSync(cfg, `base: ${z.base.path}\nexperts: [${z.experts[0].path}, ${z.experts[1].path}]\nmethod: average\nout: .\n`);
    const before = snapshot(dir);
    const viaConfig = await runCli(["merge", "--config", cfg, "-q"], { cwd: ROOT });
    expect(viaConfig.code).toBe(1);
    oneErrorLine(viaConfig, /not a taskmerge output \(no taskmerge\.json\); refusing to replace it \(file .*proj\)/);
    const viaFlag = await runCli(["merge", "--base", z.base.path, "--expert", z.experts[0].path, "--method", "average", "--out", ".", "-q"], { cwd: dir });
    expect(viaFlag.code).toBe(2);
    oneErrorLine(viaFlag, /the output \. contains an input/);
    expect(snapshot(dir)).toEqual(before);
    // Even an empty working directory is not replaced (the shell would be left in a deleted one).
    const empty = path.join(dir, "empty");
    fs.mkdirSync(empty);
    const inEmpty = await runCli(["merge", "--base", z.base.path, "--expert", z.experts[0].path, "--method", "average", "--out", ".", "-q"], { cwd: empty });
    expect(inEmpty.code).toBe(1);
    oneErrorLine(inEmpty, /output is the current directory/);
    expect(fs.readdirSync(empty)).toEqual([]);
  });

  test("a previous output is replaced whole; one with a foreign file is not", async () => {
    const { dir, z } = zoo();
    const out = path.join(dir, "merged");
    const experts = z.experts.map((e) => e.path);
    await merge({ base: z.base.path, experts, method: "average", out });
    const manifest = JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));
    expect(manifest.files).toEqual([...fs.readdirSync(out)].sort());
    await merge({ base: z.base.path, experts, method: { name: "task_arithmetic", lambda: 0.5 }, out });
    expect(JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8")).method).toBe("task_arithmetic");
    fs.writeFileSync(path.join(out, "notes.txt"), "mine");
    await expect(merge({ base: z.base.path, experts, method: "average", out })).rejects.toThrow(/holds notes\.txt, which taskmerge did not write; refusing/);
    expect(fs.readFileSync(path.join(out, "notes.txt"), "utf8")).toBe("mine");
    // A dry run refuses it the same way.
    await expect(planMerge({ base: z.base.path, experts, method: "average", out })).rejects.toThrow(/holds notes\.txt/);
    fs.renameSync(path.join(out, "notes.txt"), path.join(out, "line\nbreak"));
    await expect(merge({ base: z.base.path, experts, method: "average", out })).rejects.toThrow(/^output directory holds "line\\nbreak", which/);
    fs.rmSync(path.join(out, "line\nbreak"));
    // A taskmerge.json without its file list (an older taskmerge's) is not enough to replace the directory.
    const { files: _files, ...older } = JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));
    fs.writeFileSync(path.join(out, "taskmerge.json"), JSON.stringify(older));
    await expect(merge({ base: z.base.path, experts, method: "average", out })).rejects.toThrow(/taskmerge\.json lists no files/);
    expect(fs.existsSync(path.join(out, "model.safetensors"))).toBe(true);
    // An empty directory is fine to fill.
    const empty = path.join(dir, "empty");
    fs.mkdirSync(empty);
    await merge({ base: z.base.path, experts, method: "average", out: empty });
    expect(fs.existsSync(path.join(empty, "model.safetensors"))).toBe(true);
  });

  test("an existing file is replaced only when it is a safetensors file; a symlink is not replaced", async () => {
    const { dir, z } = zoo();
    const experts = z.experts.map((e) => e.path);
    const text = path.join(dir, "notes.safetensors");
    fs.writeFileSync(text, "{ these are my notes, not weights }");
    await expect(merge({ base: z.base.path, experts, method: "average", out: text })).rejects.toThrow(/not a safetensors file; refusing to replace it/);
    expect(fs.readFileSync(text, "utf8")).toBe("{ these are my notes, not weights }");
    const old = path.join(dir, "old.safetensors");
    fs.copyFileSync(z.base.path, old);
    await merge({ base: z.base.path, experts, method: "average", out: old });
    expect(fs.readFileSync(old).equals(fs.readFileSync(z.base.path))).toBe(false);
    // Statistics files are outputs too: GramAccumulator.save replaces only a safetensors file.
    const g = new GramAccumulator();
    await g.add("m", Float32Array.of(1, 2), 2);
    await expect(g.save(text)).rejects.toThrow(/not a safetensors file; refusing/);
    expect(fs.readFileSync(text, "utf8")).toBe("{ these are my notes, not weights }");
    const link = path.join(dir, "link.safetensors");
    fs.symlinkSync(old, link);
    await expect(merge({ base: z.base.path, experts, method: "average", out: link })).rejects.toThrow(/symbolic link; refusing/);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
  });

  test("extract and compress: a foreign directory is left alone, also one that holds bundle.json", async () => {
    const { dir, z } = zoo();
    const experts = z.experts.map((e) => e.path);
    const bundle = path.join(dir, "bundle");
    await compress({ base: z.base.path, experts, out: bundle });
    await compress({ base: z.base.path, experts, out: bundle, tallLambda: 0.3 }); // its own bundle: replaced
    expect(JSON.parse(fs.readFileSync(path.join(bundle, "bundle.json"), "utf8")).tasks[0].lambda).toBe(0.3);
    fs.writeFileSync(path.join(bundle, "keep.txt"), "x");
    await expect(compress({ base: z.base.path, experts, out: bundle })).rejects.toThrow(/holds keep\.txt, which taskmerge did not write/);
    expect(fs.readFileSync(path.join(bundle, "keep.txt"), "utf8")).toBe("x");
    fs.rmSync(path.join(bundle, "keep.txt"));
    const mine = path.join(dir, "mine");
    fs.mkdirSync(mine);
    fs.writeFileSync(path.join(mine, "keep.txt"), "x");
    await expect(extract({ bundle, task: "task0", base: z.base.path, out: mine })).rejects.toThrow(/not a taskmerge output/);
    expect(fs.readdirSync(mine)).toEqual(["keep.txt"]);
  });
});

describe("an output that is an input is refused, however it is named", () => {
  test("a symlinked directory alias, a hard link and a shard's hard link", async () => {
    const { dir, z, args } = zoo();
    const alias = path.join(dir, "alias");
    fs.symlinkSync(dir, alias);
    const before = snapshot(dir);
    const viaAlias = await runCli(args(path.join(alias, "task0.safetensors")));
    expect(viaAlias.code).toBe(2);
    oneErrorLine(viaAlias, /is also an input .*task0\.safetensors/);
    const hard = path.join(dir, "hard.safetensors");
    fs.linkSync(z.experts[1].path, hard);
    const viaLink = await runCli(args(hard));
    expect(viaLink.code).toBe(2);
    oneErrorLine(viaLink, /is also an input/);
    fs.rmSync(hard);
    expect(snapshot(dir)).toEqual(before);
    // A shard of a sharded checkpoint, known only once its index is read.
    const sz = makeZoo(tmpDir("safety-sharded-"), { T: 1, layout: "sharded" });
    const shard = path.join(sz.base.path, "model-00002-of-00002.safetensors");
    const out = path.join(dir, "x.safetensors");
    fs.linkSync(shard, out);
    const bytes = fs.readFileSync(shard);
    await expect(merge({ base: sz.base.path, experts: [sz.experts[0].path], method: "average", out })).rejects.toThrow(/is also an input/);
    expect(fs.readFileSync(shard).equals(bytes)).toBe(true);
  });

  test("a statistics file, and extract over its base or a bundle file", async () => {
    const { dir, z } = zoo();
    const experts = z.experts.map((e) => e.path);
    const stats = path.join(dir, "s.safetensors");
    fs.copyFileSync(z.base.path, stats);
    fs.symlinkSync(dir, path.join(dir, "alias"));
    await expect(
      merge({ base: z.base.path, experts: [{ path: experts[0], stats }, { path: experts[1], stats }], method: "regmean", out: path.join(dir, "alias", "s.safetensors") }),
    ).rejects.toThrow(/is also an input/);
    const bundle = path.join(dir, "bundle");
    await compress({ base: z.base.path, experts, out: bundle });
    const before = snapshot(dir);
    await expect(extract({ bundle, task: "task0", base: z.base.path, out: z.base.path })).rejects.toThrow(/is also an input/);
    await expect(extract({ bundle, task: "task0", base: z.base.path, out: path.join(dir, "alias", "bundle", "tau.safetensors") })).rejects.toThrow(/is also an input/);
    await expect(extract({ bundle, task: "task0", base: z.base.path, out: bundle })).rejects.toThrow(/is also an input/);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe("replacing a directory survives a kill between its renames", () => {
  test("killed after the old output moved aside: the next run puts it back", async () => {
    const { dir, z, args } = zoo();
    const out = path.join(dir, "merged");
    await merge({ base: z.base.path, experts: z.experts.map((e) => e.path), method: "average", out });
    const old = snapshot(out);
    const r = await runSignalAtStep("old-moved-aside", "SIGKILL", args(out, "task_arithmetic"));
    expect(r.signal).toBe("SIGKILL");
    expect(fs.existsSync(out)).toBe(false); // the window the swap cannot close
    const slot = await OutputSlot.claim(out, CHECKPOINT_DIR);
    await slot.release();
    expect(slot.reclaimed.some((l) => /^restored .*merged from .*\.merged\.tmp-\d+-[0-9a-f]+\.old, where a run \(pid \d+\) killed while replacing it/.test(l))).toBe(true);
    expect(slot.reclaimed.some((l) => /^removed .*\.merged\.tmp-\d+-[0-9a-f]+ \(.*\), left by a killed run/.test(l))).toBe(true);
    expect(snapshot(out)).toEqual(old);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(".merged"))).toEqual([]);
  });

  test("killed after the new output took its place: the next run removes the old one and says so", async () => {
    const { dir, z, args } = zoo();
    const out = path.join(dir, "merged");
    await merge({ base: z.base.path, experts: z.experts.map((e) => e.path), method: "average", out, maxShardSize: "1KB" });
    const r = await runSignalAtStep("new-in-place", "SIGKILL", args(out));
    expect(r.signal).toBe("SIGKILL");
    expect(fs.existsSync(path.join(out, "model.safetensors"))).toBe(true); // the new, unsharded output
    const again = await runCli(args(out));
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/^taskmerge: removed .*\.merged\.tmp-\d+-[0-9a-f]+\.old \(.* KB\), left by a killed run \(pid \d+\)$/m);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(".merged"))).toEqual([]);
  });

  test("SIGINT during the final rename exits 130, not 0, with the output complete", async () => {
    const { dir, z, args } = zoo();
    const out = path.join(dir, "merged");
    await merge({ base: z.base.path, experts: z.experts.map((e) => e.path), method: "average", out, maxShardSize: "1KB" });
    const r = await runSignalAtStep("old-moved-aside", "SIGINT", args(out));
    expect(r.code).toBe(130);
    oneErrorLine(r, /^taskmerge: interrupted by SIGINT; it came as the run was finishing, and its output is complete$/m);
    // The new output (one file; the old one had shards), whole.
    expect(fs.readdirSync(out).sort()).toEqual(JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8")).files);
    expect(fs.existsSync(path.join(out, "model.safetensors.index.json"))).toBe(false);
    expect(Object.keys(readSafetensors(out)).sort()).toEqual(Object.keys(z.base.raw).sort());
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(".merged"))).toEqual([]);
  });
});

describe("leftovers of killed runs and the lock", () => {
  test("stale temporaries of dead pids are removed and reported; a live run's are kept", async () => {
    const { dir, z } = zoo();
    const out = path.join(dir, "o.safetensors");
    const [p1, p2] = [deadPid(), deadPid()];
    const dead = path.join(dir, `.o.safetensors.tmp-${p1}-0a1b2c3d`);
    const deadDir = path.join(dir, `.o.safetensors.tmp-${p2}-deadbeef`);
    const live = path.join(dir, `.o.safetensors.tmp-${process.pid}-12345678`);
    const other = path.join(dir, `.other.safetensors.tmp-${deadPid()}-12345678`);
    fs.writeFileSync(dead, Buffer.alloc(3000));
    fs.mkdirSync(deadDir);
    fs.writeFileSync(path.join(deadDir, "model.safetensors.part"), Buffer.alloc(10));
    for (const f of [live, other]) fs.writeFileSync(f, "x");
    const report = await merge({ base: z.base.path, experts: z.experts.map((e) => e.path), method: "average", out });
    expect(report.reclaimed.sort()).toEqual([
      `removed ${dead} (3.00 KB), left by a killed run (pid ${p1})`,
      `removed ${deadDir} (10 B), left by a killed run (pid ${p2})`,
    ].sort());
    expect([dead, deadDir].map(fs.existsSync)).toEqual([false, false]);
    expect([live, other].map(fs.existsSync)).toEqual([true, true]);
  });

  test("concurrent runs on one output: one fails with a clear message; a dead run's lock is reclaimed", async () => {
    const { dir, z, args } = zoo();
    const out = path.join(dir, "merged");
    const experts = z.experts.map((e) => e.path);
    const runs = await Promise.allSettled([0, 1].map(() => merge({ base: z.base.path, experts, method: "average", out })));
    expect(runs.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const failed = runs.find((r): r is PromiseRejectedResult => r.status === "rejected")!;
    expect(failed.reason.message).toMatch(new RegExp(`another taskmerge run \\(pid ${process.pid}\\) is writing this output; wait for it to finish, or remove .*\\.merged\\.lock if no such run exists`));
    // A live holder (this test process) blocks the CLI, exit 1, one line, nothing touched.
    const lock = path.join(dir, ".merged.lock");
    fs.writeFileSync(lock, `${process.pid}\n`);
    const before = snapshot(dir);
    const blocked = await runCli(args(out));
    expect(blocked.code).toBe(1);
    oneErrorLine(blocked, new RegExp(`another taskmerge run \\(pid ${process.pid}\\) is writing this output`));
    expect(snapshot(dir)).toEqual(before);
    // A holder that is gone left a stale lock: taken over, and said so.
    const pid = deadPid();
    fs.writeFileSync(lock, `${pid}\n`);
    const ok = await runCli(args(out));
    expect(ok.code).toBe(0);
    expect(ok.stderr).toContain(`taskmerge: removed the lock of a killed run (pid ${pid}) on ${out}`);
    expect(fs.existsSync(lock)).toBe(false);
  });
});

/**
 * What a merge writes: shards and their index, the directory layout with the
 * base's other files and taskmerge.json, atomic replacement, and that an
 * aborted or killed run leaves nothing at the output path.
 */
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { merge, AbortError, Progress } from "../lib";
import { CLI, makeZoo, readHeader, readSafetensors, tmpDir, listTree, KeySpec, genTensors, saveModel } from "./helpers/fixtures";

const sameTensors = (a: string, b: string) => {
  const x = readSafetensors(a);
  const y = readSafetensors(b);
  expect(Object.keys(x).sort()).toEqual(Object.keys(y).sort());
  for (const k of Object.keys(x)) {
    expect(x[k].shape).toEqual(y[k].shape);
    expect(x[k].dtype).toBe(y[k].dtype);
    expect(x[k].data.equals(y[k].data)).toBe(true);
  }
};

describe("output layout", () => {
  test("--max-shard-size splits into HF shards with an index; contents equal the single-file merge", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2, dtype: "F32" });
    const experts = zoo.experts.map((e) => e.path);
    const single = path.join(dir, "single.safetensors");
    await merge({ base: zoo.base.path, experts, method: "average", out: single });
    const sharded = path.join(dir, "sharded");
    await merge({ base: zoo.base.path, experts, method: "average", out: sharded, maxShardSize: "1KB" });
    const files = fs.readdirSync(sharded).filter((f) => f.endsWith(".safetensors")).sort();
    expect(files.length).toBeGreaterThan(2);
    files.forEach((f, i) => expect(f).toBe(`model-${String(i + 1).padStart(5, "0")}-of-${String(files.length).padStart(5, "0")}.safetensors`));
    const index = JSON.parse(fs.readFileSync(path.join(sharded, "model.safetensors.index.json"), "utf8"));
    expect(Object.keys(index.weight_map).sort()).toEqual(Object.keys(zoo.base.raw).sort());
    let total = 0;
    for (const f of files) {
      const h = readHeader(path.join(sharded, f));
      const keys = Object.keys(h).filter((k) => k !== "__metadata__");
      const bytes = keys.reduce((s, k) => s + h[k].data_offsets[1] - h[k].data_offsets[0], 0);
      // A shard stays under the limit unless it holds one tensor larger than it.
      if (keys.length > 1) expect(bytes).toBeLessThanOrEqual(1000);
      for (const k of keys) expect(index.weight_map[k]).toBe(f);
      total += bytes;
    }
    expect(index.metadata.total_size).toBe(total);
    sameTensors(sharded, single);
  });

  test("the header lists tensors in the base's order, contiguous and 8-byte aligned", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2, dtype: "BF16" });
    const out = path.join(dir, "o.safetensors");
    await merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "average", out });
    const buf = fs.readFileSync(out);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const h = readHeader(out);
    const keys = Object.keys(h).filter((k) => k !== "__metadata__");
    expect(keys).toEqual(Object.keys(zoo.base.raw));
    let off = 0;
    for (const k of keys) {
      expect(h[k].data_offsets[0]).toBe(off);
      off = h[k].data_offsets[1];
    }
    expect(buf.length).toBe(8 + n + off);
  });

  test("a directory output copies the base's other files and writes taskmerge.json", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2, layout: "dir" });
    fs.writeFileSync(path.join(zoo.base.path, "config.json"), '{"model_type":"tiny"}');
    fs.writeFileSync(path.join(zoo.base.path, "tokenizer.json"), "{}");
    fs.writeFileSync(path.join(zoo.base.path, "pytorch_model.bin"), "not copied");
    const out = path.join(dir, "merged");
    await merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: { name: "task_arithmetic", lambda: 0.5 }, out });
    const files = fs.readdirSync(out);
    expect(files).toEqual(expect.arrayContaining(["model.safetensors", "config.json", "tokenizer.json", "taskmerge.json"]));
    expect(files).not.toContain("pytorch_model.bin");
    expect(fs.readFileSync(path.join(out, "config.json"), "utf8")).toBe('{"model_type":"tiny"}');
    const manifest = JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));
    expect(manifest.method).toBe("task_arithmetic");
    expect(manifest.params).toEqual({ lambda: 0.5 });
    expect(manifest.experts.map((e: { name: string }) => e.name)).toEqual(["task0", "task1"]);
    expect(typeof manifest.taskmerge).toBe("string");
  });

  test("an existing output is replaced whole; no temporary files remain", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2 });
    const out = path.join(dir, "merged");
    const experts = zoo.experts.map((e) => e.path);
    await merge({ base: zoo.base.path, experts, method: "average", out, maxShardSize: "1KB" });
    expect(fs.existsSync(path.join(out, "model.safetensors.index.json"))).toBe(true);
    await merge({ base: zoo.base.path, experts, method: "average", out });
    expect(fs.readdirSync(out).sort()).toEqual(["README.md", "model.safetensors", "taskmerge.json"]);
    expect(listTree(dir).filter((f) => f.includes(".tmp-") || f.includes(".lock"))).toEqual([]);
  });
});

describe("progress and abort", () => {
  test("progress reaches the total and never goes back", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 3 });
    const seen: Progress[] = [];
    await merge({
      base: zoo.base.path,
      experts: zoo.experts.map((e) => e.path),
      method: "average",
      out: path.join(dir, "o.safetensors"),
      onProgress: (p) => seen.push({ ...p }),
    });
    expect(seen.length).toBeGreaterThan(0);
    for (let i = 1; i < seen.length; i++) expect(seen[i].bytesDone).toBeGreaterThanOrEqual(seen[i - 1].bytesDone);
    const last = seen[seen.length - 1];
    expect(last.bytesDone).toBe(last.bytesTotal);
  });

  test("an AbortSignal stops the merge with AbortError and leaves nothing behind", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2 });
    for (const out of [path.join(dir, "o.safetensors"), path.join(dir, "odir")]) {
      const ac = new AbortController();
      const p = merge({
        base: zoo.base.path,
        experts: zoo.experts.map((e) => e.path),
        method: "average",
        out,
        signal: ac.signal,
        onProgress: () => ac.abort(),
      });
      await expect(p).rejects.toBeInstanceOf(AbortError);
      expect(fs.existsSync(out)).toBe(false);
      expect(listTree(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
    }
  });

  test("a run killed with SIGKILL midway leaves no file at the output path", async () => {
    const dir = tmpDir();
    // Big enough, with tiny chunks, that the run lasts long enough to be killed inside.
    const keys: KeySpec[] = Array.from({ length: 8 }, (_, i) => ({ name: `layer${i}.weight`, shape: [256, 1024], dtype: "F32" }));
    const base = genTensors(keys, 1);
    saveModel(base, path.join(dir, "base.safetensors"), "file");
    const experts = [2, 3].map((s) => saveModel(genTensors(keys, s, base), path.join(dir, `e${s}.safetensors`), "file"));
    const out = path.join(dir, "out.safetensors");
    const child = spawn(
      process.execPath,
      [CLI, "merge", "--base", base.path, ...experts.flatMap((e) => ["--expert", e]), "--method", "average", "--out", out, "--quiet"],
      { env: { ...process.env, TASKMERGE_CHUNK_ELEMS: "512" } },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_c, s) => resolve(s)));
    // Wait until the temporary output exists, then kill.
    const deadline = Date.now() + 30000;
    while (!fs.readdirSync(dir).some((f) => f.includes(".tmp-")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(fs.readdirSync(dir).some((f) => f.includes(".tmp-"))).toBe(true);
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    expect(fs.existsSync(out)).toBe(false);
    // The next run on the same output removes the killed run's temporary (and its lock), and says so.
    const left = fs.readdirSync(dir).filter((f) => f.startsWith(".out.safetensors."));
    expect(left.length).toBeGreaterThan(0);
    const report = await merge({ base: base.path, experts, method: "average", out });
    expect(report.reclaimed.length).toBe(left.length);
    for (const l of report.reclaimed) expect(l).toMatch(/^removed (the lock of a killed run \(pid \d+\)|.*\.out\.safetensors\.tmp-\d+-[0-9a-f]+ \(.*\), left by a killed run)/);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith("."))).toEqual([]);
  });

  test("a write that fails midway (file size limit, as a full disk) is one error line and leaves nothing", async () => {
    const dir = tmpDir();
    const keys: KeySpec[] = [{ name: "a.weight", shape: [64, 64], dtype: "F32" }, { name: "b.weight", shape: [64, 64], dtype: "F32" }];
    const base = genTensors(keys, 1);
    saveModel(base, path.join(dir, "base.safetensors"), "file");
    const e = saveModel(genTensors(keys, 2, base), path.join(dir, "e.safetensors"), "file");
    const outDir = path.join(dir, "out");
    fs.mkdirSync(outDir);
    const out = path.join(outDir, "o.safetensors");
    // 8 KB limit: the 32 KB output fails part-way with EFBIG (Node ignores SIGXFSZ).
    const cmd = `ulimit -f 8; exec "${process.execPath}" "${CLI}" merge --base "${base.path}" --expert "${e}" --method average --out "${out}" --quiet`;
    const child = spawn("bash", ["-c", cmd]);
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    expect(code).toBe(1);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toMatch(/write failed: file size limit exceeded/);
    expect(fs.readdirSync(outDir)).toEqual([]);
  });
});

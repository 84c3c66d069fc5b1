/** TALL compress / extract: bundle format, masks and τMTL against the reference, λ choices, bad bundles, CLI. */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, tmpDir, readSafetensors, values, runCli, smallModel, listTree, Zoo, KeySpec } from "./helpers/fixtures";
import { compress } from "../lib/api/compress";
import { extract } from "../lib/api/extract";
import { runCompress } from "../lib/job/compress";
import { floatKeys, errorUnits } from "./reference/ties";
import { compressRef, packbits, unpackbits } from "./reference/tall";

const KEYS: KeySpec[] = [...smallModel("F32"), { name: "odd", shape: [3, 7], dtype: "F32" }, { name: "empty", shape: [0, 4], dtype: "F32" }];
const experts = (z: Zoo) => z.experts.map((e) => e.path);
const tensorsOf = (z: Zoo) => z.experts.map((e) => e.floats);
const f32 = (x: number) => Math.fround(x);

test("the reference packbits matches NumPy's bit order", () => {
  const bits = [1, 0, 1, 1, 0, 0, 0, 1, 1, 1].map(Boolean);
  expect([...packbits(bits)]).toEqual([0xb1, 0xc0]);
  expect(unpackbits(packbits(bits), 10)).toEqual(bits);
});

describe("compress and extract", () => {
  const dir = tmpDir("tall-");
  const zoo = makeZoo(path.join(dir), { T: 3, keys: KEYS, seed: 21 });
  const keys = floatKeys(zoo.base);
  const names = ["task0", "task1", "task2"];

  /** Checks a bundle against the reference: masks bit-exact, τMTL within float32 rounding. */
  function checkBundle(bundle: string, ref: ReturnType<typeof compressRef>, tauDtype = "F32") {
    const manifest = JSON.parse(fs.readFileSync(path.join(bundle, "bundle.json"), "utf8"));
    expect(manifest.tasks.map((t: { name: string }) => t.name)).toEqual(names);
    expect(manifest.keys.map((k: { key: string }) => k.key)).toEqual(keys);
    const tau = readSafetensors(path.join(bundle, "tau.safetensors"));
    const masks = readSafetensors(path.join(bundle, "masks.safetensors"));
    expect(Object.keys(tau)).toEqual(keys);
    expect(Object.keys(masks)).toEqual(names.flatMap((n) => keys.map((k) => `${n}::${k}`)));
    for (const k of keys) {
      expect(tau[k].dtype).toBe(tauDtype);
      const scale = (i: number) => zoo.experts.reduce((s, e) => s + Math.abs(e.floats[k][i]) + Math.abs(zoo.base.floats[k][i]), 0);
      expect(errorUnits(values(tau[k]), ref.tau[k], tauDtype === "F32" ? 2 ** -23 : 2 ** -7, scale).units).toBeLessThanOrEqual(1);
      names.forEach((n, t) => {
        const m = masks[`${n}::${k}`];
        expect(m.dtype).toBe("U8");
        expect(m.shape).toEqual([Math.ceil(ref.tau[k].length / 8)]);
        expect(m.data.equals(packbits(ref.masks[t][k]))).toBe(true);
      });
    }
    return { manifest, tau, masks };
  }

  test("fixed λ: bundle matches the reference, extraction is θ0 + m ⊙ τMTL exactly, ratio reported", async () => {
    const out = path.join(dir, "bundle");
    const report = await compress({ base: zoo.base.path, experts: experts(zoo), out, tallLambda: 0.4 });
    const ref = compressRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", lambdas: [0.4, 0.4, 0.4] });
    const { tau, masks } = checkBundle(out, ref);
    expect(listTree(out)).toEqual(["bundle.json", "masks.safetensors", "tau.safetensors"]);
    expect(report.ratio).toBeCloseTo(report.bytesExperts / report.bytesBundle, 10);
    expect(report.bytesExperts).toBe(zoo.experts.reduce((s, e) => s + fs.statSync(e.path).size, 0));
    expect(report.bytesBundle).toBe(listTree(out).reduce((s, f) => s + fs.statSync(path.join(out, f)).size, 0));
    // Some entries are masked in and some out, so the test data exercise both.
    const bits = ref.masks.flatMap((m) => keys.flatMap((k) => m[k]));
    expect(bits.filter(Boolean).length).toBeGreaterThan(bits.length * 0.1);
    expect(bits.filter((b) => !b).length).toBeGreaterThan(bits.length * 0.1);
    for (const [t, n] of names.entries()) {
      const o = path.join(dir, `x-${n}.safetensors`);
      const r = await extract({ bundle: out, task: n, base: zoo.base.path, out: o });
      expect(r.lambda).toBe(0.4);
      const got = readSafetensors(o);
      for (const k of Object.keys(zoo.base.raw)) {
        if (!keys.includes(k)) {
          expect(got[k].data.equals(zoo.base.raw[k].data)).toBe(true);
          continue;
        }
        const m = unpackbits(masks[`${n}::${k}`].data, ref.tau[k].length);
        const tv = values(tau[k]);
        const want = zoo.base.floats[k].map((b, i) => (m[i] ? f32(b + tv[i]) : b));
        expect(Array.from(values(got[k]))).toEqual(Array.from(want));
        expect(m).toEqual(ref.masks[t][k]);
      }
    }
  });

  test("a λ per task, a TIES τMTL, and chunk sizes that do not change a byte", async () => {
    const lambdas = [0.2, 0.5, 0.35];
    const bundles = [];
    for (const chunkElems of [8, 13, 1 << 20]) {
      const out = path.join(dir, `ties-${chunkElems}`);
      await runCompress({
        base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, name: names[t], weight: 1 })), out,
        tallLambda: lambdas, tau: "ties", density: 0.3, scope: "tensor", chunkElems,
      });
      bundles.push(out);
    }
    const ref = compressRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "ties", lambdas, density: 0.3, scope: "tensor" });
    checkBundle(bundles[2], ref);
    for (const f of ["tau.safetensors", "masks.safetensors"])
      for (const b of bundles) expect(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(bundles[2], f)))).toBe(true);
    const global = path.join(dir, "ties-global");
    await compress({ base: zoo.base.path, experts: experts(zoo), out: global, tallLambda: lambdas, tau: "ties" });
    checkBundle(global, compressRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "ties", lambdas, density: 0.2, scope: "global" }));
  });

  test("λ chosen from a grid by an async score of a temporary candidate checkpoint", async () => {
    const out = path.join(dir, "grid");
    const grid = [0.1, 0.4, 1.5];
    const seen: string[] = [];
    // Score: closeness of the candidate to the expert itself.
    const score = async (task: string, candidate: string) => {
      expect(fs.existsSync(candidate)).toBe(true);
      seen.push(candidate);
      const c = readSafetensors(candidate);
      const e = zoo.experts[names.indexOf(task)];
      let err = 0;
      for (const k of keys) values(c[k]).forEach((v, i) => (err += (v - e.floats[k][i]) ** 2));
      await new Promise((r) => setTimeout(r, 1));
      return -err;
    };
    const report = await compress({ base: zoo.base.path, experts: experts(zoo), out, tallLambda: { grid, score } });
    expect(seen.length).toBe(names.length * grid.length);
    for (const s of seen) expect(fs.existsSync(s)).toBe(false);
    // The reference's own choice with the same score.
    const chosen = names.map((_, t) => {
      const errs = grid.map((l) => {
        const r = compressRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", lambdas: [l, l, l] });
        let err = 0;
        for (const k of keys) r.masks[t][k].forEach((m, i) => (err += ((m ? f32(zoo.base.floats[k][i] + f32(r.tau[k][i])) : zoo.base.floats[k][i]) - zoo.experts[t].floats[k][i]) ** 2));
        return err;
      });
      return grid[errs.indexOf(Math.min(...errs))];
    });
    expect(report.tasks.map((t) => t.lambda)).toEqual(chosen);
    expect(report.tasks[0].scores!.map((s) => s.lambda)).toEqual(grid);
    checkBundle(out, compressRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", lambdas: chosen }));
  });

  test("bf16 τMTL round trip stays within bf16 rounding", async () => {
    const out = path.join(dir, "bf16");
    await compress({ base: zoo.base.path, experts: experts(zoo), out, dtype: "bf16" });
    const tau = readSafetensors(path.join(out, "tau.safetensors"));
    const ref = compressRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", lambdas: [0.4, 0.4, 0.4] });
    for (const k of keys) {
      expect(tau[k].dtype).toBe("BF16");
      expect(errorUnits(values(tau[k]), ref.tau[k], 2 ** -8, () => 1).units).toBeLessThanOrEqual(1);
    }
    const o = path.join(dir, "bf16-x.safetensors");
    await extract({ bundle: out, task: "task1", base: zoo.base.path, out: o });
    expect(readSafetensors(o)["odd"].dtype).toBe("F32");
  });

  test("bad options and an aborted run leave no output", async () => {
    const out = path.join(dir, "nope");
    await expect(compress({ base: zoo.base.path, experts: experts(zoo), out, tallLambda: [0.1, 0.2] })).rejects.toThrow(/one per expert/);
    await expect(compress({ base: zoo.base.path, experts: experts(zoo), out, tallLambda: -1 })).rejects.toThrow(/non-negative/);
    const ac = new AbortController();
    let calls = 0;
    await expect(
      compress({ base: zoo.base.path, experts: experts(zoo), out, tallLambda: { grid: [0.3, 0.4], score: () => (++calls === 2 && ac.abort(), 1) }, signal: ac.signal }),
    ).rejects.toThrow(/abort/);
    await expect(compress({ base: zoo.base.path, experts: experts(zoo), out, tallLambda: { score: () => NaN } })).rejects.toThrow(/finite number/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(".nope"))).toEqual([]);
    fs.mkdirSync(path.join(dir, "occupied"));
    fs.writeFileSync(path.join(dir, "occupied", "keep.txt"), "x");
    await expect(compress({ base: zoo.base.path, experts: experts(zoo), out: path.join(dir, "occupied") })).rejects.toThrow(/not a bundle/);
  });

  test("sharded checkpoints in, a sharded directory out", async () => {
    const sz = makeZoo(tmpDir("tall-sharded-"), { T: 2, layout: "sharded", dtype: "BF16", seed: 5 });
    const out = path.join(dir, "sharded-bundle");
    const report = await compress({ base: sz.base.path, experts: sz.experts.map((e) => e.path), out, tallLambda: [0.3, 0.6] });
    // Bytes of the experts: their safetensors files (shards).
    const shardBytes = (d: string) => fs.readdirSync(d).filter((f) => f.endsWith(".safetensors")).reduce((a, f) => a + fs.statSync(path.join(d, f)).size, 0);
    expect(report.bytesExperts).toBe(sz.experts.reduce((s, e) => s + shardBytes(e.path), 0));
    const x = path.join(dir, "sharded-x");
    await extract({ bundle: out, task: "task1", base: sz.base.path, out: x, maxShardSize: 600 });
    expect(fs.existsSync(path.join(x, "model.safetensors.index.json"))).toBe(true);
    const got = readSafetensors(x);
    const tau = readSafetensors(path.join(out, "tau.safetensors"));
    const masks = readSafetensors(path.join(out, "masks.safetensors"));
    const ref = compressRef(sz.base.floats, sz.experts.map((e) => e.floats), Object.keys(sz.base.floats), { kind: "sum", lambdas: [0.3, 0.6] });
    for (const k of Object.keys(sz.base.floats)) {
      expect(got[k].dtype).toBe("BF16");
      expect(masks[`task1::${k}`].data.equals(packbits(ref.masks[1][k]))).toBe(true);
      const m = unpackbits(masks[`task1::${k}`].data, ref.tau[k].length);
      const tv = values(tau[k]);
      // θ0 + τMTL in float32, then rounded to bf16 (the output dtype).
      const want = sz.base.floats[k].map((b, i) => (m[i] ? f32(b + tv[i]) : b));
      const g = values(got[k]);
      want.forEach((w, i) => expect(Math.abs(g[i] - w)).toBeLessThanOrEqual(Math.abs(w) * 2 ** -8));
    }
  });

  describe("bad bundles", () => {
    const good = path.join(dir, "good");
    const copy = (name: string) => {
      const d = path.join(dir, name);
      fs.cpSync(good, d, { recursive: true });
      return d;
    };
    const x = (bundle: string, task = "task0", base = zoo.base.path) => extract({ bundle, task, base, out: path.join(dir, `bad-${path.basename(bundle)}.safetensors`) });
    beforeAll(async () => {
      await compress({ base: zoo.base.path, experts: experts(zoo), out: good });
    });

    test("truncated masks", async () => {
      const b = copy("trunc");
      const f = path.join(b, "masks.safetensors");
      fs.truncateSync(f, fs.statSync(f).size - 3);
      await expect(x(b)).rejects.toThrow(/masks\.safetensors.*|truncated/);
      await expect(x(b)).rejects.toThrow(/truncated/);
      expect(fs.existsSync(path.join(dir, "bad-trunc.safetensors"))).toBe(false);
    });
    test("unknown task", async () => {
      await expect(x(good, "task9")).rejects.toThrow(/task 'task9' is not in the bundle \(tasks: task0, task1, task2\)/);
    });
    test("a different base", async () => {
      const other = makeZoo(tmpDir("tall-other-"), { T: 1, keys: KEYS, seed: 99 });
      await expect(x(good, "task0", other.base.path)).rejects.toThrow(/base differs/);
      const small = makeZoo(tmpDir("tall-small-"), { T: 1, seed: 4 });
      await expect(x(good, "task0", small.base.path)).rejects.toThrow(/keys or shapes differ at "odd"/);
    });
    test("not a bundle, or an edited bundle.json", async () => {
      await expect(x(dir)).rejects.toThrow(/not a taskmerge bundle/);
      const b = copy("edited");
      const j = path.join(b, "bundle.json");
      const m = JSON.parse(fs.readFileSync(j, "utf8"));
      [m.keys[0], m.keys[1]] = [m.keys[1], m.keys[0]];
      fs.writeFileSync(j, JSON.stringify(m));
      await expect(x(b)).rejects.toThrow(/key order differs/);
      const c = copy("renamed");
      const j2 = path.join(c, "bundle.json");
      const m2 = JSON.parse(fs.readFileSync(j2, "utf8"));
      m2.tasks[1].name = "renamed";
      fs.writeFileSync(j2, JSON.stringify(m2));
      await expect(x(c, "renamed")).rejects.toThrow(/mask of task "renamed" missing.*renamed::/);
    });
  });

  describe("CLI", () => {
    test("compress prints the ratio; extract rebuilds; merge --method ties runs", async () => {
      const out = path.join(dir, "cli-bundle");
      const r = await runCli(["compress", "--base", zoo.base.path, ...experts(zoo).flatMap((e) => ["--expert", e]), "--tall-lambda", "0.3,0.4,0.5", "--out", out]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/compression ratio \d+\.\d\dx/);
      const manifest = JSON.parse(fs.readFileSync(path.join(out, "bundle.json"), "utf8"));
      expect(manifest.tasks.map((t: { lambda: number }) => t.lambda)).toEqual([0.3, 0.4, 0.5]);
      // One thread and 5-element chunks (rounded up to 8) write the same bytes.
      const small = path.join(dir, "cli-bundle-small");
      const r2 = await runCli(["compress", "--base", zoo.base.path, ...experts(zoo).flatMap((e) => ["--expert", e]), "--tall-lambda", "0.3,0.4,0.5", "--out", small, "-q"], {
        env: { TASKMERGE_CHUNK_ELEMS: "5", TASKMERGE_THREADS: "1" },
      });
      expect(r2.code).toBe(0);
      for (const f of ["tau.safetensors", "masks.safetensors"]) expect(fs.readFileSync(path.join(small, f)).equals(fs.readFileSync(path.join(out, f)))).toBe(true);
      const o = path.join(dir, "cli-x");
      const e = await runCli(["extract", "--bundle", out, "--task", "task2", "--base", zoo.base.path, "--out", o, "--json"]);
      expect(e.code).toBe(0);
      expect(JSON.parse(e.stdout).lambda).toBe(0.5);
      expect(fs.existsSync(path.join(o, "model.safetensors"))).toBe(true);
      const bad = await runCli(["extract", "--bundle", out, "--task", "zzz", "--base", zoo.base.path, "--out", path.join(dir, "z.safetensors")]);
      expect(bad.code).toBe(1);
      expect(bad.stderr.trim().split("\n")).toHaveLength(1);
      expect(bad.stderr).toMatch(/task 'zzz' is not in the bundle/);
      const usage = await runCli(["compress", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--tall-lambda", "x", "--out", path.join(dir, "u")]);
      expect(usage.code).toBe(2);
      const m = await runCli(["merge", "--base", zoo.base.path, ...experts(zoo).flatMap((e) => ["--expert", e]), "--method", "ties", "--out", path.join(dir, "ties.safetensors"), "-q"]);
      expect(m.code).toBe(0);
    });
  });
});

/**
 * The one-pass sampled-window TIES selection against the exact histogram
 * passes and the float64 reference: same bytes, thresholds and sign sums;
 * a sample that misses falls back; the systematic sample of a large scope.
 */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, tmpDir, saveModel, Zoo, Model, RawTensor } from "./helpers/fixtures";
import { encode } from "./helpers/floatref";
import { runMerge } from "../lib/job/merge";
import { tiesRef, floatKeys, expectMatches } from "./reference/ties";

type Trim = { thresholds: Record<string, number>; signSum: number; select: string; windowMissed?: string };

async function withEnv<T>(env: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const prev = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const set = (e: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(e)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  };
  set(env);
  try {
    return await fn();
  } finally {
    set(prev);
  }
}

async function ties(zoo: Zoo, out: string, params: Record<string, unknown>, chunkElems = 1 << 20, env: Record<string, string | undefined> = {}) {
  const r = await withEnv(env, () =>
    runMerge({ base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, name: `task${t}`, weight: 1 })), method: "ties", params, out, chunkElems }),
  );
  return { bytes: fs.readFileSync(out), details: r.details };
}

const trims = (d: Record<string, unknown>): Trim[] => (d.global ? [d.global as Trim] : Object.values(d.tensors as Record<string, Trim>));

describe("ties: sampled-window selection", () => {
  const dir = tmpDir("ties-window-");
  // bf16 and four tasks: many entries with several tasks inside their windows.
  const keys = [
    { name: "a.weight", shape: [64, 48], dtype: "BF16" },
    { name: "b.weight", shape: [96, 32], dtype: "BF16" },
    { name: "c.bias", shape: [40], dtype: "BF16" },
  ];
  const zoo = makeZoo(dir, { T: 4, seed: 11, keys });
  const names = floatKeys(zoo.base);

  for (const scope of ["global", "tensor"] as const)
    for (const density of [0.2, 0.7])
      test(`scope ${scope}, density ${density}: window = histogram passes = reference`, async () => {
        const chunk = 200; // keys stream in several chunks, so tensor scope uses the window too
        const w = await ties(zoo, path.join(dir, `w-${scope}-${density}.safetensors`), { scope, density }, chunk);
        const h = await ties(zoo, path.join(dir, `h-${scope}-${density}.safetensors`), { scope, density }, chunk, { TASKMERGE_TIES_SELECT: "histogram" });
        expect(w.bytes.equals(h.bytes)).toBe(true);
        const wt = trims(w.details);
        const ht = trims(h.details);
        // Keys that fit in one chunk are selected in memory either way.
        const streamed = scope === "global" ? [true] : names.map((k) => zoo.base.floats[k].length > chunk);
        expect(wt.map((x) => x.select)).toEqual(streamed.map((s) => (s ? "window" : "memory")));
        expect(ht.map((x) => x.select)).toEqual(streamed.map((s) => (s ? "histogram" : "memory")));
        expect(wt.map((x) => [x.thresholds, x.signSum])).toEqual(ht.map((x) => [x.thresholds, x.signSum]));
        const ref = tiesRef(zoo.base.floats, zoo.experts.map((e) => e.floats), names, { scope, density, lambda: 1 });
        expectMatches(path.join(dir, `w-${scope}-${density}.safetensors`), zoo, ref.out, "BF16");
      });

  test("a systematic sample of a larger scope still finds the exact thresholds", async () => {
    // 1024-entry sample (8 blocks) of ~7000 entries per task: the strided, block-wise path.
    const w = await ties(zoo, path.join(dir, "sys-w.safetensors"), { density: 0.3 }, 1 << 20, { TASKMERGE_TIES_SAMPLE: "1024" });
    const h = await ties(zoo, path.join(dir, "sys-h.safetensors"), { density: 0.3 }, 1 << 20, { TASKMERGE_TIES_SELECT: "histogram" });
    const g = w.details.global as Trim & { sample: number; sampleBlocks: number };
    expect(g.select).toBe("window");
    expect(g.sample).toBe(1024);
    expect(g.sampleBlocks).toBe(8);
    expect(w.bytes.equals(h.bytes)).toBe(true);
    expect(g.signSum).toBe((h.details.global as Trim).signSum);
  });

  const f32 = (v: number[]): RawTensor => ({ dtype: "F32", shape: [v.length], data: encode(v, "F32") });
  const model = (p: string, t: Record<string, number[]>): Model => {
    const m: Model = { path: p, floats: {}, raw: {} };
    for (const [k, v] of Object.entries(t)) {
      m.raw[k] = f32(v);
      m.floats[k] = Float64Array.from(v, (x) => Math.fround(x));
    }
    saveModel(m, p, "file");
    return m;
  };

  test("heavily tied |τ| values (as bf16 task vectors have) are counted per value, exactly", async () => {
    // τ ∈ {0, ±1/4, ±1/2, ±3/4, ±1}: thousands of entries share the threshold's bits.
    const steps = (s: number, n: number) => Array.from({ length: n }, (_, i) => ((((i * 7919 + s * 104729) % 9) - 4) / 4));
    const zeros = { x: new Array(3000).fill(0), y: new Array(1500).fill(0) };
    const base = model(path.join(dir, "t-base.safetensors"), zeros);
    const experts = [1, 2, 3, 4].map((s) => model(path.join(dir, `t-e${s}.safetensors`), { x: steps(s, 3000), y: steps(s + 11, 1500) }));
    const tz: Zoo = { dir, base, experts };
    for (const density of [0.2, 0.5]) {
      const out = path.join(dir, `tied-${density}.safetensors`);
      const w = await ties(tz, out, { density }, 1 << 20);
      const g = w.details.global as Trim & { tabledValues: number; undecided: number; lo: number[]; hi: number[] };
      expect(g.select).toBe("window");
      // 0.2 falls inside the run of |τ| = 1 near 0.75's: the window spans both, 0.75 is
      // tabled; 0.5 falls well inside the run of 0.5: a one-value window decides everything.
      if (density === 0.2) expect(g.tabledValues).toBeGreaterThan(0);
      else expect(g.undecided).toBe(0);
      const h = await ties(tz, path.join(dir, `tied-h-${density}.safetensors`), { density }, 1 << 20, { TASKMERGE_TIES_SELECT: "histogram" });
      expect(w.bytes.equals(h.bytes)).toBe(true);
      expect([g.thresholds, g.signSum]).toEqual([(h.details.global as Trim).thresholds, (h.details.global as Trim).signSum]);
      const ref = tiesRef(base.floats, experts.map((e) => e.floats), ["x", "y"], { scope: "global", density, lambda: 1 });
      expectMatches(out, tz, ref.out, "F32");
    }
  });

  test("a sample that misses the threshold falls back to the histogram passes", async () => {
    // Large |τ| in the middle key, tiny ones around it: the 8 sampled blocks all
    // land in the small keys, and with z = 0 the window sits far below the
    // real threshold.
    const big = (s: number) => Array.from({ length: 200 }, (_, i) => (i % 2 ? -1 : 1) * (1 + ((i * 37 + s) % 200) / 200));
    const small = (s: number) => Array.from({ length: 900 }, (_, i) => (i % 3 ? 1 : -1) * 0.001 * (1 + ((i * 53 + s) % 900) / 900));
    const zeros = { b1: new Array(900).fill(0), a: new Array(200).fill(0), b2: new Array(900).fill(0) };
    const base = model(path.join(dir, "m-base.safetensors"), zeros);
    const experts = [1, 2, 3].map((s) => model(path.join(dir, `m-e${s}.safetensors`), { b1: small(s), a: big(s), b2: small(s + 7) }));
    const mz: Zoo = { dir, base, experts };
    const out = path.join(dir, "miss.safetensors");
    const w = await ties(mz, out, { density: 0.2 }, 1 << 20, { TASKMERGE_TIES_SAMPLE: "256", TASKMERGE_TIES_WINDOW_Z: "0" });
    const g = w.details.global as Trim;
    expect(g.select).toBe("histogram");
    expect(g.windowMissed).toMatch(/k-th largest \|τ\| of expert 'task0' lies above its window/);
    const h = await ties(mz, path.join(dir, "miss-h.safetensors"), { density: 0.2 }, 1 << 20, { TASKMERGE_TIES_SELECT: "histogram" });
    expect(w.bytes.equals(h.bytes)).toBe(true);
    const ref = tiesRef(base.floats, experts.map((e) => e.floats), ["b1", "a", "b2"], { scope: "global", density: 0.2, lambda: 1 });
    expectMatches(out, mz, ref.out, "F32");
  });

  test("too many undecided entries for the list: a separate sign pass, same bytes", async () => {
    const w = await ties(zoo, path.join(dir, "cap.safetensors"), { density: 0.2 }, 1 << 20, { TASKMERGE_TIES_CANDIDATES: "0" });
    const g = w.details.global as Trim & { signPass: string };
    expect(g.select).toBe("window");
    expect(g.signPass).toBe("separate");
    const h = await ties(zoo, path.join(dir, "cap-h.safetensors"), { density: 0.2 }, 1 << 20, { TASKMERGE_TIES_SELECT: "histogram" });
    expect(w.bytes.equals(h.bytes)).toBe(true);
    expect(g.signSum).toBe((h.details.global as Trim).signSum);
  });
});

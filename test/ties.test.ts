/** ties against the float64 reference of the SPEC: scopes, densities, chunking, edge cases, CLI. */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, tmpDir, readSafetensors, values, runCli, saveModel, Zoo, Model, RawTensor } from "./helpers/fixtures";
import { encode } from "./helpers/floatref";
import { merge } from "../lib/api/merge";
import { runMerge } from "../lib/job/merge";
import { tiesRef, floatKeys, expectMatches } from "./reference/ties";

const experts = (z: Zoo) => z.experts.map((e) => e.path);
const tensorsOf = (z: Zoo) => z.experts.map((e) => e.floats);

describe("ties", () => {
  const dir = tmpDir("ties-");
  const zoo = makeZoo(dir, { T: 3, seed: 7 });
  const keys = floatKeys(zoo.base);

  for (const [scope, density, lambda] of [["global", 0.2, 1.0], ["tensor", 0.3, 0.7], ["global", 1.0, 0.5], ["tensor", 1.0, 1.0], ["global", 0, 1]] as const) {
    test(`scope ${scope}, density ${density}, lambda ${lambda} matches the reference`, async () => {
      const out = path.join(dir, `out-${scope}-${density}.safetensors`);
      const report = await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "ties", scope, density, lambda }, out });
      const ref = tiesRef(zoo.base.floats, tensorsOf(zoo), keys, { scope, density, lambda });
      expectMatches(out, zoo, ref.out, "F32");
      // Thresholds are the float32 rounding of the exact k-th largest |τ|.
      if (scope === "global") {
        const th = (report.details.global as { thresholds: Record<string, number> }).thresholds;
        expect(zoo.experts.map((_, t) => th[`task${t}`])).toEqual(ref.thresholds[0].map((x) => Math.fround(x)));
      } else {
        const per = report.details.tensors as Record<string, { thresholds: Record<string, number> }>;
        keys.forEach((k, s) => expect(zoo.experts.map((_, t) => per[k].thresholds[`task${t}`])).toEqual(ref.thresholds[s].map((x) => Math.fround(x))));
      }
    });
  }

  test("global scope reads the float tensors 3 times, tensor scope once when keys fit in a chunk", async () => {
    const floatBytes = [zoo.base, ...zoo.experts].reduce((s, m) => s + keys.reduce((a, k) => a + m.raw[k].data.length, 0), 0);
    const otherBytes = Object.keys(zoo.base.raw).filter((k) => !keys.includes(k)).reduce((a, k) => a + zoo.base.raw[k].data.length, 0);
    const g = await merge({ base: zoo.base.path, experts: experts(zoo), method: "ties", out: path.join(dir, "reads-g.safetensors") });
    expect(g.bytesRead).toBe(3 * floatBytes + otherBytes);
    const t = await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "ties", scope: "tensor" }, out: path.join(dir, "reads-t.safetensors") });
    expect(t.bytesRead).toBe(floatBytes + otherBytes);
  });

  test("merge_func sum is the disjoint sum", async () => {
    const out = path.join(dir, "sum.safetensors");
    await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "ties", merge_func: "sum", lambda: 0.4 }, out });
    expectMatches(out, zoo, tiesRef(zoo.base.floats, tensorsOf(zoo), keys, { scope: "global", density: 0.2, lambda: 0.4, mergeFunc: "sum" }).out, "F32");
  });

  test("output is identical for any chunk size", async () => {
    for (const scope of ["global", "tensor"]) {
      const outs = [];
      for (const chunkElems of [7, 64, 1 << 20]) {
        const out = path.join(dir, `chunk-${scope}-${chunkElems}.safetensors`);
        await runMerge({
          base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, name: `task${t}`, weight: 1 })),
          method: "ties", params: { scope, density: 0.25 }, out, chunkElems,
        });
        outs.push(fs.readFileSync(out));
      }
      expect(outs[0].equals(outs[2])).toBe(true);
      expect(outs[1].equals(outs[2])).toBe(true);
    }
  });

  test("the sign sum fused into the threshold pass equals a separate signs pass", async () => {
    for (const scope of ["global", "tensor"] as const) {
      const run = async (cap: string | undefined, tag: string) => {
        const out = path.join(dir, `fused-${scope}-${tag}.safetensors`);
        const prev = process.env.TASKMERGE_TIES_CANDIDATES;
        if (cap === undefined) delete process.env.TASKMERGE_TIES_CANDIDATES;
        else process.env.TASKMERGE_TIES_CANDIDATES = cap;
        try {
          // 64-element chunks: every key streams in several chunks (no in-memory selection).
          const r = await runMerge({
            base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, name: `task${t}`, weight: 1 })),
            method: "ties", params: { scope, density: 0.3 }, out, chunkElems: 64,
          });
          return { bytes: fs.readFileSync(out), details: r.details };
        } finally {
          if (prev === undefined) delete process.env.TASKMERGE_TIES_CANDIDATES;
          else process.env.TASKMERGE_TIES_CANDIDATES = prev;
        }
      };
      const fused = await run(undefined, "fused");
      const separate = await run("-1", "separate");
      expect(fused.bytes.equals(separate.bytes)).toBe(true);
      const sums = (d: Record<string, unknown>) =>
        scope === "global" ? [(d.global as { signSum: number; signPass: string })] : Object.values(d.tensors as Record<string, { signSum: number; signPass: string }>);
      expect(sums(fused.details).map((x) => x.signSum)).toEqual(sums(separate.details).map((x) => x.signSum));
      expect(new Set(sums(fused.details).map((x) => x.signPass))).toEqual(new Set(["fused"]));
      expect(new Set(sums(separate.details).map((x) => x.signPass))).toEqual(new Set(["separate"]));
      // And the in-memory selection of small keys agrees with the streamed one.
      const whole = path.join(dir, `fused-${scope}-whole.safetensors`);
      await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "ties", scope, density: 0.3 }, out: whole });
      expect(fs.readFileSync(whole).equals(fused.bytes)).toBe(true);
    }
  });

  for (const [select, last, expected] of [
    ["window", "threshold", ["threshold"]],
    ["histogram", "threshold 2/2", ["threshold 1/2", "threshold 2/2"]],
  ] as const)
    test(`an abort during the threshold passes (${select} selection) leaves no output`, async () => {
      const out = path.join(dir, `aborted-${select}.safetensors`);
      const ac = new AbortController();
      const phases: string[] = [];
      process.env.TASKMERGE_TIES_SELECT = select;
      const p = merge({
        base: zoo.base.path, experts: experts(zoo), method: "ties", out, signal: ac.signal,
        onProgress: (pr) => {
          if (!phases.includes(pr.phase)) phases.push(pr.phase);
          if (pr.phase === last) ac.abort();
        },
      }).finally(() => delete process.env.TASKMERGE_TIES_SELECT);
      await expect(p).rejects.toThrow(/abort/i);
      expect(phases).toEqual(expected);
      expect(fs.readdirSync(dir).filter((f) => f.includes("aborted"))).toEqual([]);
    });

  test("a single expert keeps its top entries", async () => {
    const out = path.join(dir, "single.safetensors");
    await merge({ base: zoo.base.path, experts: [zoo.experts[1].path], method: { name: "ties", density: 0.1 }, out });
    const one = { ...zoo, experts: [zoo.experts[1]] };
    expectMatches(out, one, tiesRef(zoo.base.floats, [zoo.experts[1].floats], keys, { scope: "global", density: 0.1, lambda: 1 }).out, "F32");
  });
});

/** Hand-made checkpoints: exact sign cancellations (majority fallback) and an all-zero task vector. */
describe("ties edge cases", () => {
  const dir = tmpDir("ties-edge-");
  const f32 = (v: number[]): RawTensor => ({ dtype: "F32", shape: [v.length], data: encode(v, "F32") });
  const model = (p: string, t: Record<string, number[]>): Model => {
    const m: Model = { path: "", floats: {}, raw: {} };
    for (const [k, v] of Object.entries(t)) {
      m.raw[k] = f32(v);
      m.floats[k] = Float64Array.from(v);
    }
    saveModel(m, p, "file");
    return m;
  };
  // a: τ1 = −τ2 on several entries, so their elected sign is 0 and takes the majority sign.
  // z: both experts equal the base (τ = 0).
  // b: a key whose majority sign is negative.
  const base = model(path.join(dir, "base.safetensors"), { a: [0, 0, 0, 0, 0, 0], z: [1, 2, 3, 4], b: [0, 0, 0, 0, 0] });
  const e1 = model(path.join(dir, "e1.safetensors"), { a: [1, -2, 0.5, 3, -0.25, 1], z: [1, 2, 3, 4], b: [-1, -2, 1, -0.5, 0.5] });
  const e2 = model(path.join(dir, "e2.safetensors"), { a: [-1, 2, -0.5, 1, -0.25, 0.5], z: [1, 2, 3, 4], b: [1, -1, -1, -0.5, -0.5] });
  const zoo: Zoo = { dir, base, experts: [e1, e2] };

  for (const scope of ["global", "tensor"] as const)
    for (const density of [0.5, 1.0])
      test(`scope ${scope}, density ${density}`, async () => {
        const out = path.join(dir, `o-${scope}-${density}.safetensors`);
        await merge({ base: base.path, experts: [e1.path, e2.path], method: { name: "ties", scope, density }, out });
        // Many equal magnitudes: entries with both tasks at their thresholds' high bits.
        process.env.TASKMERGE_TIES_CANDIDATES = "1";
        const capped = path.join(dir, `c-${scope}-${density}.safetensors`);
        await merge({ base: base.path, experts: [e1.path, e2.path], method: { name: "ties", scope, density }, out: capped }).finally(
          () => delete process.env.TASKMERGE_TIES_CANDIDATES,
        );
        expect(fs.readFileSync(capped).equals(fs.readFileSync(out))).toBe(true);
        const ref = tiesRef(base.floats, [e1.floats, e2.floats], ["a", "z", "b"], { scope, density, lambda: 1 });
        expectMatches(out, zoo, ref.out, "F32");
        // The all-zero task vectors leave the base unchanged.
        expect(Array.from(values(readSafetensors(out).z))).toEqual([1, 2, 3, 4]);
      });
});

describe("ties through the CLI", () => {
  const dir = tmpDir("ties-cli-");
  test("merge --method ties on bf16 directories", async () => {
    const zoo = makeZoo(dir, { T: 2, dtype: "BF16", layout: "dir", seed: 3 });
    const out = path.join(dir, "merged");
    const r = await runCli(["merge", "--base", zoo.base.path, ...zoo.experts.flatMap((e) => ["--expert", e.path]), "--method", "ties", "--density", "0.3", "--scope", "tensor", "--lambda", "0.8", "--out", out, "--json", "-q"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).method).toBe("ties");
    const ref = tiesRef(zoo.base.floats, tensorsOf(zoo), floatKeys(zoo.base), { scope: "tensor", density: 0.3, lambda: 0.8 });
    expectMatches(out, zoo, ref.out, "BF16");
  });

  test("ties and consensus_ties write the same bytes for any thread count and chunk size", async () => {
    const zoo = makeZoo(tmpDir("ties-cli3-"), { T: 3, seed: 8 });
    for (const method of [["ties"], ["ties", "--scope", "tensor"], ["consensus_ties"]]) {
      const outs: Buffer[] = [];
      for (const [chunk, threads] of [["5", "1"], ["1000000", "2"], ["40", "5"]]) {
        const out = path.join(dir, `thr-${method.join("")}-${chunk}-${threads}.safetensors`);
        const r = await runCli(["merge", "--base", zoo.base.path, ...experts(zoo).flatMap((e) => ["--expert", e]), "--method", ...method, "--out", out, "-q"], {
          env: { TASKMERGE_CHUNK_ELEMS: chunk, TASKMERGE_THREADS: threads },
        });
        expect(r.code).toBe(0);
        outs.push(fs.readFileSync(out));
      }
      for (const o of outs) expect(o.equals(outs[0])).toBe(true);
    }
  });

  test("per-expert weights are refused, not ignored, by the unweighted methods", async () => {
    const zoo = makeZoo(tmpDir("ties-w-"), { T: 2 });
    for (const name of ["ties", "dare_ties", "consensus_ta", "consensus_ties"] as const) {
      const out = path.join(dir, `w-${name}.safetensors`);
      await expect(merge({ base: zoo.base.path, experts: [{ path: zoo.experts[0].path, weight: 2 }, zoo.experts[1].path], method: name, out })).rejects.toThrow(
        new RegExp(`method '${name}' takes no per-expert weight \\(expert 'task0' has weight 2\\)`),
      );
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  test("bad parameters are usage errors", async () => {
    const zoo = makeZoo(tmpDir("ties-cli2-"), { T: 2 });
    const r = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "ties", "--density", "1.5", "--out", path.join(dir, "x.safetensors")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/density/);
    expect(fs.existsSync(path.join(dir, "x.safetensors"))).toBe(false);
  });
});

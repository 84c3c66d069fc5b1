/** dare_linear and dare_ties against the float64 reference; determinism over chunking and threads. */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, tmpDir, runCli, Zoo } from "./helpers/fixtures";
import { merge } from "../lib/api/merge";
import { floatKeys, expectMatches, tiesRef } from "./reference/ties";
import { dareKeep, dareLinearRef, dareTiesRef } from "./reference/dare";

const experts = (z: Zoo) => z.experts.map((e) => e.path);
const tensorsOf = (z: Zoo) => z.experts.map((e) => e.floats);

describe("dare", () => {
  const dir = tmpDir("dare-");
  const zoo = makeZoo(dir, { T: 3, seed: 11 });
  const keys = floatKeys(zoo.base);

  test("the random numbers keep about `density` of the entries", () => {
    const keep = dareKeep(5, "blocks.0.mlp.fc1.weight", 2, 20000, 0.3);
    const frac = keep.filter(Boolean).length / keep.length;
    expect(Math.abs(frac - 0.3)).toBeLessThan(0.02);
  });

  for (const [density, seed, lambda] of [[0.5, 0, 1.0], [0.3, 1234, 0.6], [1.0, 7, 0.3]] as const) {
    test(`dare_linear density ${density} seed ${seed} matches the reference`, async () => {
      const out = path.join(dir, `lin-${density}-${seed}.safetensors`);
      await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_linear", density, seed, lambda }, out });
      expectMatches(out, zoo, dareLinearRef(zoo.base.floats, tensorsOf(zoo), keys, { density, seed, lambda }), "F32");
    });
    test(`dare_ties density ${density} seed ${seed} matches the reference`, async () => {
      const out = path.join(dir, `ties-${density}-${seed}.safetensors`);
      await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_ties", density, seed, lambda }, out });
      expectMatches(out, zoo, dareTiesRef(zoo.base.floats, tensorsOf(zoo), keys, { density, seed, lambda }), "F32");
    });
  }

  test("dare_linear applies per-expert weights", async () => {
    const out = path.join(dir, "weights.safetensors");
    const weights = [1, 0.5, 2];
    await merge({ base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, weight: weights[t] })), method: { name: "dare_linear", density: 0.4 }, out });
    expectMatches(out, zoo, dareLinearRef(zoo.base.floats, tensorsOf(zoo), keys, { density: 0.4, seed: 0, lambda: 1, weights }), "F32");
  });

  test("density 1 gives task arithmetic bit for bit, and dare_ties the untrimmed TIES mean", async () => {
    const a = path.join(dir, "d1.safetensors"), b = path.join(dir, "ta.safetensors"), c = path.join(dir, "dt1.safetensors");
    await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_linear", density: 1, lambda: 0.3 }, out: a });
    await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "task_arithmetic", lambda: 0.3 }, out: b });
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
    await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_ties", density: 1 }, out: c });
    expectMatches(c, zoo, tiesRef(zoo.base.floats, tensorsOf(zoo), keys, { scope: "tensor", density: 1, lambda: 1 }).out, "F32");
  });

  test("another seed gives another result", async () => {
    const a = path.join(dir, "s1.safetensors"), b = path.join(dir, "s2.safetensors");
    await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_ties", seed: 1 }, out: a });
    await merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_ties", seed: 2 }, out: b });
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(false);
  });

  test("density 0 is a usage error", async () => {
    await expect(merge({ base: zoo.base.path, experts: experts(zoo), method: { name: "dare_linear", density: 0 }, out: path.join(dir, "z.safetensors") })).rejects.toThrow(/density/);
    expect(fs.existsSync(path.join(dir, "z.safetensors"))).toBe(false);
  });

  test("identical bytes for any TASKMERGE_CHUNK_ELEMS and TASKMERGE_THREADS (CLI)", async () => {
    for (const method of ["dare_linear", "dare_ties"]) {
      const outs: Buffer[] = [];
      for (const [chunk, threads] of [["5", "1"], ["64", "3"], ["1000000", "2"], ["24", "8"]]) {
        const out = path.join(dir, `cli-${method}-${chunk}-${threads}.safetensors`);
        const r = await runCli(
          ["merge", "--base", zoo.base.path, ...experts(zoo).flatMap((e) => ["--expert", e]), "--method", method, "--density", "0.35", "--seed", "99", "--out", out, "-q"],
          { env: { TASKMERGE_CHUNK_ELEMS: chunk, TASKMERGE_THREADS: threads } },
        );
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        outs.push(fs.readFileSync(out));
      }
      for (const o of outs) expect(o.equals(outs[0])).toBe(true);
      const ref = method === "dare_linear" ? dareLinearRef : dareTiesRef;
      expectMatches(path.join(dir, `cli-${method}-5-1.safetensors`), zoo, ref(zoo.base.floats, tensorsOf(zoo), keys, { density: 0.35, seed: 99, lambda: 1 }), "F32");
    }
  });
});

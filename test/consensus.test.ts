/** consensus_ta and consensus_ties against the float64 reference; k = 0 and k > T limits. */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, tmpDir, Zoo, readSafetensors } from "./helpers/fixtures";
import { merge, MethodSpec } from "../lib/api/merge";
import { floatKeys, expectMatches } from "./reference/ties";
import { consensusRef } from "./reference/consensus";

const experts = (z: Zoo) => z.experts.map((e) => e.path);
const tensorsOf = (z: Zoo) => z.experts.map((e) => e.floats);

describe("consensus", () => {
  const dir = tmpDir("cons-");
  const zoo = makeZoo(dir, { T: 4, seed: 5 });
  const keys = floatKeys(zoo.base);
  const run = async (name: string, params: Record<string, unknown>, tag: string) => {
    const out = path.join(dir, `${tag}.safetensors`);
    const report = await merge({ base: zoo.base.path, experts: experts(zoo), method: { name, ...params } as MethodSpec, out });
    return { out, report };
  };

  for (const [k, tallLambda] of [[2, 0.4], [1, 0.6], [3, 0.2]] as const) {
    test(`consensus_ta k ${k} tall_lambda ${tallLambda}`, async () => {
      const { out } = await run("consensus_ta", { k, tall_lambda: tallLambda }, `ta-${k}-${tallLambda}`);
      expectMatches(out, zoo, consensusRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", k, tallLambda, lambda: 0.3 }), "F32");
    });
    for (const scope of ["global", "tensor"] as const)
      test(`consensus_ties k ${k} tall_lambda ${tallLambda} scope ${scope}`, async () => {
        const { out } = await run("consensus_ties", { k, tall_lambda: tallLambda, scope, density: 0.3, lambda: 0.9 }, `ties-${k}-${tallLambda}-${scope}`);
        expectMatches(out, zoo, consensusRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "ties", k, tallLambda, lambda: 0.9, density: 0.3, scope }), "F32");
      });
  }

  test("the consensus mask drops entries (the test data exercise it)", async () => {
    const ref2 = consensusRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", k: 2, tallLambda: 0.4, lambda: 0.3 });
    const ref0 = consensusRef(zoo.base.floats, tensorsOf(zoo), keys, { kind: "sum", k: 0, tallLambda: 0.4, lambda: 0.3 });
    let differ = 0, same = 0;
    for (const k of keys) ref2[k].forEach((v, i) => (v === ref0[k][i] ? same++ : v === zoo.base.floats[k][i] ? differ++ : 0));
    expect(differ).toBeGreaterThan(10);
    expect(same).toBeGreaterThan(10);
  });

  test("k = 0 reproduces task arithmetic and ties (merge_func sum) bit for bit", async () => {
    const a = await run("consensus_ta", { k: 0, lambda: 0.35 }, "ta-k0");
    const b = await run("task_arithmetic", { lambda: 0.35 }, "ta-plain");
    expect(fs.readFileSync(a.out).equals(fs.readFileSync(b.out))).toBe(true);
    for (const scope of ["global", "tensor"]) {
      const c = await run("consensus_ties", { k: 0, lambda: 0.7, scope }, `ties-k0-${scope}`);
      const d = await run("ties", { merge_func: "sum", lambda: 0.7, scope }, `ties-plain-${scope}`);
      expect(fs.readFileSync(c.out).equals(fs.readFileSync(d.out))).toBe(true);
    }
  });

  test("k > T reproduces the base", async () => {
    for (const name of ["consensus_ta", "consensus_ties"]) {
      const { out } = await run(name, { k: 5 }, `${name}-k5`);
      const got = readSafetensors(out);
      for (const k of Object.keys(zoo.base.raw)) expect(got[k].data.equals(zoo.base.raw[k].data)).toBe(true);
    }
  });

  test("a single expert", async () => {
    const one = { ...zoo, experts: [zoo.experts[2]] };
    for (const [name, kind] of [["consensus_ta", "sum"], ["consensus_ties", "ties"]] as const) {
      const out = path.join(dir, `single-${name}.safetensors`);
      await merge({ base: zoo.base.path, experts: [zoo.experts[2].path], method: { name, k: 1, lambda: 0.5 }, out });
      expectMatches(out, one, consensusRef(zoo.base.floats, [zoo.experts[2].floats], keys, { kind, k: 1, tallLambda: 0.4, lambda: 0.5 }), "F32");
    }
  });

  test("chunked and whole-tensor runs agree", async () => {
    const { runMerge } = await import("../lib/job/merge");
    const outs = [];
    for (const chunkElems of [9, 1 << 20]) {
      const out = path.join(dir, `chunk-${chunkElems}.safetensors`);
      await runMerge({ base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, name: `t${t}`, weight: 1 })), method: "consensus_ties", params: { scope: "tensor" }, out, chunkElems });
      outs.push(fs.readFileSync(out));
    }
    expect(outs[0].equals(outs[1])).toBe(true);
  });
});

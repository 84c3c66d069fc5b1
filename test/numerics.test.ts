/**
 * Non-finite results and the provenance of numeric errors (issue 11, item 9
 * and its messages): every method's output is checked in its output dtype and
 * a NaN/Inf fails naming the key with nothing written; a NaN or Inf in an input
 * names that input's file, the key and the expert by its name.
 */
import * as fs from "fs";
import * as path from "path";
import { merge, MethodName, MethodSpec } from "../lib";
import { listMethods } from "../lib/methods";
import { RawTensor, runCli, tmpDir, writeSafetensors } from "./helpers/fixtures";
import { encode } from "./helpers/floatref";
import { makeStats, writeAllStats } from "./reference/lot";

const KEYS = [
  { name: "l.weight", shape: [4, 3], dtype: "F32" },
  { name: "n.weight", shape: [3], dtype: "F32" },
];

/** Base and two experts from value functions (F32), with statistics for every weight. */
function zoo(baseOf: (i: number) => number, deltaOf: (t: number, i: number) => number, poison?: { t: number; key: string; i: number; v: number }) {
  const dir = tmpDir("tm-num-");
  const file = (name: string, f: (k: string, i: number) => number) => {
    const tensors: Record<string, RawTensor> = {};
    for (const k of KEYS) {
      const n = k.shape.reduce((a, b) => a * b, 1);
      tensors[k.name] = { dtype: "F32", shape: k.shape, data: encode(Array.from({ length: n }, (_, i) => f(k.name, i)), "F32") };
    }
    const p = path.join(dir, `${name}.safetensors`);
    writeSafetensors(p, tensors);
    return p;
  };
  const base = file("base", (_, i) => baseOf(i));
  const experts = [0, 1].map((t) =>
    file(`task${t}`, (k, i) => (poison && poison.t === t && poison.key === k && poison.i === i ? poison.v : baseOf(i) + deltaOf(t, i))),
  );
  const stats = writeAllStats(dir, makeStats(KEYS, 2, 10, 4));
  return { dir, base, experts, stats };
}

const usesStats = (m: string) => !!listMethods().find((x) => x.name === m)?.needsStats;
const smooth = (t: number, i: number) => 0.01 * ((t + 1) * (i % 5) - 2);

describe("every method's output is checked for NaN/Inf in the output dtype", () => {
  // 70000 is finite in F32 but beyond F16 (max 65504): every method's result overflows when narrowed.
  const z = zoo(() => 70000, smooth);
  test.each(listMethods().map((m) => m.name))("%s with --dtype f16: one error naming the key, nothing written", async (method) => {
    const out = path.join(z.dir, `${method}.safetensors`);
    const stats = usesStats(method);
    const err = await merge({
      base: z.base, experts: z.experts.map((p, t) => ({ path: p, ...(stats ? { stats: z.stats[t] } : {}) })), method: method as MethodName, out, dtype: "f16",
    }).catch((e) => e);
    expect(err?.name).toBe("TaskmergeError");
    expect(err.message).toMatch(/non-finite value \(NaN or Inf\) at element 0 in F16/);
    expect(err.key).toBe("l.weight");
    expect(err.source).toEqual({ role: "output" });
    expect(fs.readdirSync(z.dir).filter((f) => f.startsWith(method))).toEqual([]);
  });
});

test("DARE's 1/density rescaling overflowing float32 from finite weights fails (CLI: exit 1, one line, nothing written)", async () => {
  // τ = 3e38 is finite in F32 (max 3.4e38) and task arithmetic of it is too; rescaled by 1/0.5 it is not.
  const z = zoo((i) => i, (t, i) => (t === 0 && i === 4 ? 3e38 : smooth(t, i)));
  const args = ["--base", z.base, "--expert", z.experts[0], "--expert", z.experts[1], "-q"];
  expect((await runCli(["merge", ...args, "--method", "task_arithmetic", "--out", path.join(z.dir, "ta.safetensors")])).code).toBe(0);
  let out = "";
  // Each seed keeps element 4 of expert 0 with probability 1/2: the first seed that keeps it fails.
  let r;
  for (let seed = 0; seed < 16; seed++) {
    out = path.join(z.dir, `dare${seed}.safetensors`);
    r = await runCli(["merge", ...args, "--method", "dare_linear", "--density", "0.5", "--seed", String(seed), "--out", out]);
    if (r.code !== 0) break;
  }
  expect(r!.code).toBe(1);
  expect(r!.stderr.trim().split("\n")).toHaveLength(1);
  expect(r!.stderr).toMatch(/non-finite value \(NaN or Inf\) at element 4 in F32.*key "l\.weight"/);
  expect(fs.existsSync(out)).toBe(false);
});

describe("a NaN or Inf in an input names its file, the key and the expert by name", () => {
  const poisoned = zoo((i) => 0.5 + i, smooth, { t: 1, key: "l.weight", i: 5, v: NaN });
  const run = (method: string, extra: Record<string, unknown> = {}, z = poisoned) =>
    merge({ base: z.base, experts: z.experts.map((p, t) => ({ path: p, name: ["math", "code"][t], ...(usesStats(method) ? { stats: z.stats[t] } : {}) })), method: { name: method, ...extra } as MethodSpec, out: path.join(z.dir, `${method}.safetensors`) }).catch((e) => e);
  const expectBlamed = (err: any, z = poisoned) => {
    expect(err?.name).toBe("TaskmergeError");
    expect(err.message).toContain("expert 'code' holds a non-finite value (NaN or Inf) at element 5");
    expect(err.message).not.toMatch(/expert \d/);
    expect(err.file).toBe(z.experts[1]);
    expect(err.key).toBe("l.weight");
    expect(err.source).toEqual({ role: "expert", index: 1, name: "code" });
  };

  test.each([
    ["ties", { scope: "global" }], ["ties", { scope: "tensor" }], ["consensus_ties", { scope: "global" }], ["consensus_ta", {}],
    ["dare_ties", {}], ["task_arithmetic", {}],
  ])("%s %j", async (method, extra) => {
    expectBlamed(await run(method, extra));
  });

  test.each(["lot", "regmean"])("%s: an Inf in an expert is blamed on the expert, not on the base (no bare LAPACK error)", async (method) => {
    const z = zoo((i) => 0.5 + i, smooth, { t: 1, key: "l.weight", i: 5, v: Infinity });
    const err = await run(method, {}, z);
    expectBlamed(err, z);
    expect(err.message).not.toContain(z.base);
    expect(err.message).not.toMatch(/LAPACK/);
  });

  test("lot: an Inf in the base is blamed on the base", async () => {
    const z = zoo((i) => (i === 2 ? Infinity : 0.5 + i), smooth);
    const err = await run("lot", {}, z);
    expect(err.message).toContain("the base holds a non-finite value (NaN or Inf) at element 2");
    expect([err.file, err.key, err.source]).toEqual([z.base, "l.weight", { role: "base" }]);
  });

  test("a failed solve names the key and every statistics file it used", async () => {
    const z = zoo((i) => 0.5 + i, smooth);
    const few = writeAllStats(path.join(z.dir), makeStats(KEYS, 2, 1, 9)); // rank 1 < width 3: singular
    const err = await merge({
      base: z.base, experts: z.experts.map((p, t) => ({ path: p, stats: few[t] })), method: { name: "lot", solver: "cholesky", ridge: 0 },
      out: path.join(z.dir, "c.safetensors"),
    }).catch((e) => e);
    expect(err.message).toMatch(/not positive definite/);
    expect(err.key).toBe("l.weight");
    for (const f of few) expect(err.message).toContain(f);
  });
});

test("check_finite finds the first NaN/Inf in every float dtype, past block and thread boundaries", async () => {
  const { runOp } = await import("../lib/native");
  const n = 10007; // several 4096-element blocks
  for (const dtype of ["F64", "F32", "F16", "BF16"] as const) {
    const clean = encode(Array.from({ length: n }, (_, i) => (i % 97) - 48), dtype);
    expect([dtype, (await runOp("check_finite", { data: clean, dtype })).bad]).toEqual([dtype, -1]);
    for (const [at, v] of [[n - 1, Infinity], [5000, NaN], [4096, -Infinity]] as const) {
      const vals = Array.from({ length: n }, (_, i) => (i === at || i === n - 1 ? v : 1));
      expect([dtype, at, (await runOp("check_finite", { data: encode(vals, dtype), dtype })).bad]).toEqual([dtype, at, at]);
    }
  }
  // Larger than one thread's range: the first bad element wins whichever thread sees it.
  const big = new Float32Array((1 << 20) + 3).fill(2);
  big[big.length - 1] = NaN;
  big[700001] = Infinity;
  expect((await runOp("check_finite", { data: big, dtype: "F32" })).bad).toBe(700001);
});

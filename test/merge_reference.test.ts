/**
 * average and task_arithmetic against the float64 reference, through real
 * files: several dtypes, single-file / directory / sharded layouts, mixed
 * expert dtypes, output dtype conversion, chunking, non-float pass-through.
 */
import * as fs from "fs";
import * as path from "path";
import { merge, OutputDType } from "../lib";
import { runMerge } from "../lib/job/merge";
import { makeZoo, readSafetensors, tmpDir, values, Zoo, Layout, isFloatName } from "./helpers/fixtures";
import { EPS, RefFloat, quantize } from "./helpers/floatref";
import { averageRef, taskArithmeticRef } from "./reference/task_arithmetic";

/** Output within one output-dtype rounding of the float64 reference, plus float32 arithmetic error. */
function expectClose(out: Float64Array, ref: Float64Array, dtype: RefFloat, what: string): void {
  expect(out.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    const tol = 2 * EPS[dtype] * Math.abs(ref[i]) + 16 * EPS.F32 * (1 + Math.abs(ref[i]));
    if (!(Math.abs(out[i] - ref[i]) <= tol)) throw new Error(`${what}[${i}]: got ${out[i]}, reference ${ref[i]} (tolerance ${tol})`);
  }
}

function checkOutput(zoo: Zoo, outPath: string, ref: (key: string) => Float64Array, outDtype?: RefFloat): void {
  const out = readSafetensors(outPath);
  expect(Object.keys(out).sort()).toEqual(Object.keys(zoo.base.raw).sort());
  for (const [key, t] of Object.entries(out)) {
    const b = zoo.base.raw[key];
    expect(t.shape).toEqual(b.shape);
    if (!isFloatName(b.dtype)) {
      // Non-float buffers come from the base byte for byte.
      expect(t.dtype).toBe(b.dtype);
      expect(t.data.equals(b.data)).toBe(true);
      continue;
    }
    const dtype = (outDtype ?? b.dtype) as RefFloat;
    expect(t.dtype).toBe(dtype);
    expectClose(values(t), ref(key), dtype, key);
  }
}

describe("average and task_arithmetic match the float64 reference", () => {
  const cases: [RefFloat, Layout][] = [
    ["F32", "file"],
    ["F16", "dir"],
    ["BF16", "sharded"],
    ["F64", "file"],
  ];
  test.each(cases)("average, %s, %s layout", async (dtype, layout) => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 3, dtype, layout });
    const out = path.join(dir, "out.safetensors");
    const report = await merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "average", out });
    expect(report.tensors).toBe(Object.keys(zoo.base.raw).length);
    checkOutput(zoo, out, (k) => averageRef(zoo, k));
  });

  test.each(cases)("task_arithmetic with per-expert weights, %s, %s layout", async (dtype, layout) => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 3, dtype, layout, seed: 7 });
    const out = path.join(dir, "merged");
    await merge({
      base: zoo.base.path,
      experts: [{ path: zoo.experts[0].path, weight: 2 }, zoo.experts[1].path, { path: zoo.experts[2].path, weight: -0.5 }],
      method: { name: "task_arithmetic", lambda: 0.7 },
      out,
    });
    checkOutput(zoo, out, (k) => taskArithmeticRef(zoo, k, 0.7, [2, 1, -0.5]));
  });

  test("default lambda is 0.3", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2 });
    const out = path.join(dir, "o.safetensors");
    const r = await merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "task_arithmetic", out });
    expect(r.params.lambda).toBe(0.3);
    checkOutput(zoo, out, (k) => taskArithmeticRef(zoo, k, 0.3));
  });

  test.each<[RefFloat]>([["BF16"], ["F16"], ["F32"]])("experts in mixed dtypes, output --dtype %s", async (outDtype) => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 3, dtype: "F32", expertDtypes: ["BF16", "F16", "F64"] });
    const out = path.join(dir, "o.safetensors");
    await merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "average", out, dtype: outDtype.toLowerCase() as OutputDType });
    checkOutput(zoo, out, (k) => averageRef(zoo, k), outDtype);
  });

  test("chunk size does not change a single bit; runs are byte-identical", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 4, dtype: "BF16" });
    const outs: Buffer[] = [];
    for (const chunkElems of [4 << 20, 1000, 7, 1]) {
      const out = path.join(dir, `o${chunkElems}.safetensors`);
      await runMerge({
        base: zoo.base.path,
        experts: zoo.experts.map((e, t) => ({ path: e.path, name: `t${t}`, weight: 1 })),
        method: "task_arithmetic",
        params: { lambda: 0.5 },
        out,
        chunkElems,
      });
      outs.push(fs.readFileSync(out));
    }
    for (const o of outs) expect(o.equals(outs[0])).toBe(true);
  });

  test("a single expert: average reproduces it", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 1, dtype: "F32" });
    const out = path.join(dir, "o.safetensors");
    await merge({ base: zoo.base.path, experts: [zoo.experts[0].path], method: "average", out });
    const got = readSafetensors(out);
    for (const k of Object.keys(zoo.experts[0].floats)) {
      // f32 arithmetic: θ0 + (θ1 − θ0) may differ from θ1 by rounding only.
      expectClose(values(got[k]), zoo.experts[0].floats[k], "F32", k);
    }
  });
});

describe("rounding", () => {
  test("task_arithmetic rounds once: bf16 output equals the correctly rounded reference almost everywhere", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 8, dtype: "BF16", scale: 0.02 });
    const out = path.join(dir, "o.safetensors");
    await merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: { name: "task_arithmetic", lambda: 0.3 }, out });
    const got = readSafetensors(out);
    let total = 0;
    let off = 0;
    for (const k of Object.keys(zoo.base.floats)) {
      const ref = quantize(taskArithmeticRef(zoo, k, 0.3), "BF16");
      const v = values(got[k]);
      for (let i = 0; i < v.length; i++, total++) if (v[i] !== ref[i]) off++;
    }
    // Only float32 double rounding (f64 → f32 → bf16) can miss; a per-task rounding at θ0's size missed ~2%.
    expect(off / total).toBeLessThan(0.002);
  });
});

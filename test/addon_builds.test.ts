/**
 * Both builds of the addon: the cmake-js build (OpenBLAS when found) that the
 * library loads, and the node-gyp build with the portable built-in path, which
 * CI builds and names in TASKMERGE_GYP_ADDON. They must compute the same bits.
 */
import * as path from "path";
import { nativeInfo, runRawOp as runOp } from "../lib/native";
import { rng } from "./helpers/fixtures";

const gypPath = process.env.TASKMERGE_GYP_ADDON;

describe("native addon", () => {
  test("reports its ops and thread count", () => {
    const info = nativeInfo();
    expect(info.ops).toEqual(expect.arrayContaining(["convert", "task_arithmetic"]));
    expect(info.threads).toBeGreaterThanOrEqual(1);
  });

  test("an unknown op and bad arguments are errors, not crashes", async () => {
    await expect(runOp("no_such_op", {})).rejects.toThrow(/unknown native op/);
    await expect(runOp("task_arithmetic", { n: 4 })).rejects.toThrow(/missing/);
    await expect(
      runOp("task_arithmetic", { n: 4, base: Buffer.alloc(16), baseDtype: "F32", experts: [Buffer.alloc(8)], expertDtypes: ["F32"], coeffs: [1] }),
    ).rejects.toThrow(/expected 16 bytes/);
  });

  (gypPath ? test : test.skip)("the node-gyp build (built-in linear algebra) gives identical bytes", async () => {
    const gyp = require(path.resolve(gypPath!)) as { run: typeof runOp; info: typeof nativeInfo };
    expect(gyp.info()).toMatchObject({ blas: "builtin", build: "node-gyp" });
    const r = rng(9);
    const n = 10007;
    const f32 = () => {
      const b = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++) b.writeFloatLE(r.normal(), i * 4);
      return b;
    };
    const args = { n, base: f32(), baseDtype: "F32", experts: [f32(), f32(), f32()], expertDtypes: ["F32", "F32", "F32"], coeffs: [0.3, -1, 2.5], outDtype: "BF16" };
    const a = Buffer.alloc(n * 2);
    const b = Buffer.alloc(n * 2);
    await runOp("task_arithmetic", { ...args, out: a });
    await gyp.run("task_arithmetic", { ...args, out: b });
    expect(a.equals(b)).toBe(true);
    for (const op of nativeInfo().ops) expect(gyp.info().ops).toContain(op);
  });
});

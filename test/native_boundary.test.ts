/**
 * The typed native boundary: a bad op argument is an error of kind
 * "argument" naming the argument (and its position in a list); bad input
 * data is an error of kind "input" with its role, argument, index and
 * element, the message built from them; an unknown device names itself.
 */
import { runOp, runRawOp } from "../lib/native";
import { rejection } from "./helpers/fixtures";

const f32 = (vals: number[]) => Buffer.from(new Float32Array(vals).buffer);
const chunk = (n: number) => ({
  n, base: f32(new Array(n).fill(0)), baseDtype: "F32",
  experts: [f32(new Array(n).fill(1)), f32(new Array(n).fill(2))], expertDtypes: ["F32", "F32"],
});

describe("argument errors name the argument", () => {
  test("a wrong-size buffer in a list: arg and index", async () => {
    const c = chunk(4);
    c.experts[1] = f32([1, 2]);
    const e = await rejection(runOp("task_arithmetic", { ...c, coeffs: [1, 1], out: Buffer.alloc(16), outDtype: "F32" }));
    expect(e).toMatchObject({ kind: "argument", arg: "expert", index: 1, message: "expert 1: expected 16 bytes, got 8" });
    expect(e.role).toBeUndefined();
  });

  test("a wrong-size output and a misaligned accumulator", async () => {
    const e = await rejection(runOp("task_arithmetic", { ...chunk(4), coeffs: [1, 1], out: Buffer.alloc(6), outDtype: "F16" }));
    expect(e).toMatchObject({ kind: "argument", arg: "out", message: "out: expected 8 bytes, got 6" });
    // (The selection histograms are state buffers now: the Gram accumulator is the float64 one left.)
    const odd = new Uint8Array(new Float64Array(5).buffer, 4, 32);
    const m = await rejection(runRawOp("gram_accumulate", { rows: f32([1, 2]), rowsDtype: "F32", width: 2, gram: odd, sum: new Float64Array(2) }));
    expect(m).toMatchObject({ kind: "argument", arg: "gram", message: "gram: buffer is not 8-byte aligned" });
  });

  test("one value per expert, a dtype, a trim mode, a bounded integer", async () => {
    expect(await rejection(runOp("task_arithmetic", { ...chunk(4), coeffs: [1] }))).toMatchObject({ kind: "argument", arg: "coeffs" });
    expect(await rejection(runOp("task_arithmetic", { ...chunk(4), baseDtype: "I32", coeffs: [1, 1] }))).toMatchObject({
      kind: "argument", arg: "baseDtype", message: "baseDtype: not a floating-point tensor",
    });
    const trim = await rejection(runOp("ties_signs", { ...chunk(4), trim: "sideways" as "none" }));
    expect(trim).toMatchObject({ kind: "argument", arg: "trim", message: "trim: unknown trim mode 'sideways'" });
    const n = await rejection(runOp("task_arithmetic", { ...chunk(4), n: 2.5, coeffs: [1, 1] }));
    expect(n).toMatchObject({ kind: "argument", arg: "n" });
  });
});

describe("input errors carry their provenance", () => {
  test("a non-finite expert value: role, arg, index, element, detail", async () => {
    const c = chunk(6);
    c.experts[1] = f32([0, 1, 2, 3, Infinity, 5]);
    const e = await rejection(runOp("task_arithmetic", { ...c, offset: 100, coeffs: [1, 1], out: Buffer.alloc(24), outDtype: "F32" }));
    expect(e).toMatchObject({
      kind: "input", role: "expert", arg: "expert", index: 1, element: 104,
      detail: "holds a non-finite value (NaN or Inf) at element 104",
      message: "expert 1 holds a non-finite value (NaN or Inf) at element 104",
    });
  });

  test("the base has one input (no index); a bundle's tau is role bundle", async () => {
    const c = chunk(3);
    c.base = f32([0, NaN, 0]);
    const b = await rejection(runOp("ties_signs", c));
    expect(b).toMatchObject({ kind: "input", role: "base", arg: "base", element: 1 });
    expect(b.index).toBeUndefined();
    const t = await rejection(runOp("tall_apply", {
      n: 3, base: f32([0, 0, 0]), baseDtype: "F32", tau: f32([0, 0, NaN]), tauDtype: "F32", out: Buffer.alloc(12), outDtype: "F32",
      mask: Buffer.alloc(1),
    }));
    expect(t).toMatchObject({ kind: "input", role: "bundle", arg: "tau", element: 2, message: "tau holds a non-finite value (NaN or Inf) at element 2" });
  });
});

describe("devices", () => {
  test("an op on a device with no backend names it and the ones there are", async () => {
    const e = await rejection(runOp("check_finite", { data: f32([1]), dtype: "F32", device: "tpu" }));
    expect(e.message).toMatch(/^device 'tpu' has no backend in this process \(available: cpu/);
  });

  test("device cpu gives the same bytes as no device", async () => {
    const a = Buffer.alloc(16), b = Buffer.alloc(16);
    await runOp("task_arithmetic", { ...chunk(4), coeffs: [0.3, -1.5], out: a, outDtype: "F32" });
    await runOp("task_arithmetic", { ...chunk(4), coeffs: [0.3, -1.5], out: b, outDtype: "F32", device: "cpu" });
    expect(a.equals(b)).toBe(true);
    expect(new Float32Array(a.buffer, a.byteOffset, 4)[0]).toBeCloseTo(0.3 - 3, 6);
  });
});

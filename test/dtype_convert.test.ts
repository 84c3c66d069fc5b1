/**
 * The native float conversions against the float64 reference encoder:
 * round-to-nearest-even on ties, subnormals, overflow to infinity, ±0, NaN.
 */
import { runOp } from "../lib/native";
import { bf16Bits, f16Bits, fromBF16Bits, fromF16Bits } from "./helpers/floatref";
import { rng } from "./helpers/fixtures";

async function convert(src: Buffer, fromDtype: string, toDtype: string, outSize: number): Promise<Buffer> {
  const dst = Buffer.alloc((src.length / { F64: 8, F32: 4, F16: 2, BF16: 2 }[fromDtype]!) * outSize);
  await runOp("convert", { src, dst, fromDtype, toDtype });
  return dst;
}

const f32 = (xs: number[]) => {
  const b = Buffer.alloc(xs.length * 4);
  xs.forEach((x, i) => b.writeFloatLE(x, i * 4));
  return b;
};

// Values chosen to hit every rounding rule of f16 and bf16 (all exact in f32).
const EDGE = [
  0, -0, 1, -1, Infinity, -Infinity,
  1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, // f16 ties at 1: to even, to even (up), above tie
  1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 - 2 ** -9, // bf16 ties at 1
  2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -26, 2 ** -14 - 2 ** -25, 2 ** -14, 2 ** -15 + 2 ** -25, // f16 subnormals
  65504, 65519, 65520, 70000, -65520, // f16 max, just below the overflow tie, the tie (→ inf), beyond
  2 ** -126, 2 ** -130, 2 ** -133 + 2 ** -140, 1.401298464324817e-45, // f32/bf16 subnormals
  3.4028234663852886e38, 3.3961775292304485e38, 3.3895313892515355e38, // f32 max (bf16 overflow), the bf16 tie, bf16 max
  0.1, -0.3333333432674408, 1234.5677490234375, 6.1e-5,
];

function randomF32(n: number, seed: number): number[] {
  const r = rng(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    // Random bit patterns cover every exponent, including subnormals.
    const b = Buffer.alloc(4);
    b.writeUInt32LE(Math.floor(r.u() * 2 ** 32));
    const v = b.readFloatLE(0);
    out.push(Number.isNaN(v) ? 0 : v);
  }
  return out;
}

describe("native float conversion rounds to nearest even", () => {
  const inputs = [...EDGE, ...randomF32(20000, 3)];
  test.each([
    ["F16", f16Bits],
    ["BF16", bf16Bits],
  ] as const)("F32 → %s", async (to, ref) => {
    const out = await convert(f32(inputs), "F32", to, 2);
    for (let i = 0; i < inputs.length; i++) {
      const got = out.readUInt16LE(i * 2);
      const want = ref(inputs[i]);
      if (got !== want) throw new Error(`${inputs[i]} → ${to}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`);
    }
  });

  test("F64 → F32 rounds once (ties to even), F32 → F64 is exact", async () => {
    const xs = [1 + 2 ** -24, 1 + 3 * 2 ** -24, 1 + 2 ** -24 + 2 ** -40, 1e-46, 3.4028235677973366e38, ...randomF32(1000, 5)];
    const src = Buffer.alloc(xs.length * 8);
    xs.forEach((x, i) => src.writeDoubleLE(x, i * 8));
    const out = await convert(src, "F64", "F32", 4);
    xs.forEach((x, i) => expect(out.readFloatLE(i * 4)).toBe(Math.fround(x)));
    const back = await convert(out, "F32", "F64", 8);
    xs.forEach((x, i) => expect(back.readDoubleLE(i * 8)).toBe(Math.fround(x)));
  });

  test.each([
    ["F16", fromF16Bits],
    ["BF16", fromBF16Bits],
  ] as const)("%s → F32 is exact for every bit pattern", async (from, ref) => {
    const src = Buffer.alloc(65536 * 2);
    for (let b = 0; b < 65536; b++) src.writeUInt16LE(b, b * 2);
    const out = await convert(src, from, "F32", 4);
    for (let b = 0; b < 65536; b++) {
      const got = out.readFloatLE(b * 4);
      const want = ref(b);
      if (Number.isNaN(want)) expect(Number.isNaN(got)).toBe(true);
      else if (!Object.is(got, want)) throw new Error(`${from} 0x${b.toString(16)}: got ${got}, want ${want}`);
    }
  });

  test("NaN stays NaN", async () => {
    const out16 = await convert(f32([NaN, -NaN]), "F32", "F16", 2);
    const outbf = await convert(f32([NaN]), "F32", "BF16", 2);
    expect(Number.isNaN(fromF16Bits(out16.readUInt16LE(0)))).toBe(true);
    expect(Number.isNaN(fromF16Bits(out16.readUInt16LE(2)))).toBe(true);
    expect(Number.isNaN(fromBF16Bits(outbf.readUInt16LE(0)))).toBe(true);
  });

  test("mismatched buffer sizes are an error", async () => {
    await expect(runOp("convert", { src: Buffer.alloc(8), dst: Buffer.alloc(3), fromDtype: "F32", toDtype: "F16" })).rejects.toThrow(
      /buffer sizes/,
    );
  });
});

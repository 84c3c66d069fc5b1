/**
 * Reference float encodings for tests, written independently of the native
 * converters: rounding is done in float64 arithmetic on the value, not with
 * bit tricks, so a bug in one is not repeated in the other.
 */

/** Round half to even of a non-negative float64 that is an exact multiple of 1/2 or finer. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Encodes x into an IEEE-like binary format with `mant` stored mantissa bits and
 * exponent bias `bias` (f16: 10, 15; bf16: 7, 127), rounding to nearest even.
 */
function encodeSmallFloat(x: number, mant: number, expBits: number): number {
  const bias = (1 << (expBits - 1)) - 1;
  const expMax = (1 << expBits) - 1;
  const sign = x < 0 || Object.is(x, -0) ? 1 : 0;
  const signBit = sign << (mant + expBits);
  if (Number.isNaN(x)) return (expMax << mant) | (1 << (mant - 1)); // quiet NaN
  const a = Math.abs(x);
  if (a === Infinity) return signBit | (expMax << mant);
  if (a === 0) return signBit;
  const minNormalExp = 1 - bias;
  let e = Math.floor(Math.log2(a));
  // Math.log2 can be off by one near powers of two: fix it exactly.
  while (Math.pow(2, e) > a) e--;
  while (Math.pow(2, e + 1) <= a) e++;
  if (e < minNormalExp) {
    // Subnormal: units of 2^(minNormalExp - mant).
    const m = roundHalfEven(a / Math.pow(2, minNormalExp - mant));
    return signBit | m; // m == 2^mant carries into the smallest normal correctly
  }
  let m = roundHalfEven((a / Math.pow(2, e) - 1) * Math.pow(2, mant));
  if (m === 1 << mant) {
    m = 0;
    e++;
  }
  if (e + bias >= expMax) return signBit | (expMax << mant);
  return signBit | ((e + bias) << mant) | m;
}

function decodeSmallFloat(bits: number, mant: number, expBits: number): number {
  const bias = (1 << (expBits - 1)) - 1;
  const expMax = (1 << expBits) - 1;
  const sign = (bits >> (mant + expBits)) & 1 ? -1 : 1;
  const e = (bits >> mant) & expMax;
  const m = bits & ((1 << mant) - 1);
  if (e === expMax) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * Math.pow(2, 1 - bias - mant);
  return sign * (1 + m / Math.pow(2, mant)) * Math.pow(2, e - bias);
}

export const f16Bits = (x: number) => encodeSmallFloat(x, 10, 5);
export const bf16Bits = (x: number) => encodeSmallFloat(Math.fround(x), 7, 8);
export const fromF16Bits = (b: number) => decodeSmallFloat(b, 10, 5);
export const fromBF16Bits = (b: number) => decodeSmallFloat(b, 7, 8);

export type RefFloat = "F64" | "F32" | "F16" | "BF16";
export const SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** Encodes float64 values into the bytes of a float dtype (little-endian). */
export function encode(values: ArrayLike<number>, dtype: RefFloat): Buffer {
  const n = values.length;
  const b = Buffer.alloc(n * SIZE[dtype]);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (dtype === "F64") b.writeDoubleLE(v, i * 8);
    else if (dtype === "F32") b.writeFloatLE(v, i * 4);
    else if (dtype === "F16") b.writeUInt16LE(f16Bits(v), i * 2);
    else b.writeUInt16LE(bf16Bits(v), i * 2);
  }
  return b;
}

/** Decodes the bytes of a float dtype to float64. */
export function decode(b: Buffer, dtype: string): Float64Array {
  const n = b.length / SIZE[dtype];
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (dtype === "F64") out[i] = b.readDoubleLE(i * 8);
    else if (dtype === "F32") out[i] = b.readFloatLE(i * 4);
    else if (dtype === "F16") out[i] = fromF16Bits(b.readUInt16LE(i * 2));
    else if (dtype === "BF16") out[i] = fromBF16Bits(b.readUInt16LE(i * 2));
    else throw new Error(`decode: ${dtype} is not a float dtype`);
  }
  return out;
}

/** Rounds float64 values to what a dtype can hold (the value after encode + decode). */
export function quantize(values: ArrayLike<number>, dtype: RefFloat): Float64Array {
  return decode(encode(values, dtype), dtype);
}

/** Unit roundoff of a dtype: the relative tolerance of one rounding. */
export const EPS: Record<RefFloat, number> = { F64: 2 ** -53, F32: 2 ** -24, F16: 2 ** -11, BF16: 2 ** -8 };

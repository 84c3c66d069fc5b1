/**
 * Mutants of valid safetensors files for fuzzing the header reader: valid
 * seed files written by hand (not by lib/), and mutations of their bytes
 * (see test/header_fuzz.test.ts). Shared by the fuzz test and the test that
 * the header worker reads every mutant as the main thread does.
 */
import { REF_SIZES } from "../reference/safetensors";

export interface Spec {
  key: string;
  dtype: string;
  shape: number[];
  extra?: string; // raw JSON members added to the entry
}

/** A valid file written by hand (not by lib/): entries in the given order, data in offset order. */
export function build(specs: Spec[], metadata: string | null, rand: () => number): Buffer {
  const members: string[] = [];
  if (metadata !== null) members.push(`"__metadata__":${metadata}`);
  let off = 0;
  const data: Buffer[] = [];
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1) * REF_SIZES[s.dtype];
    members.push(`${JSON.stringify(s.key)}:{"dtype":"${s.dtype}","shape":[${s.shape.join(",")}],"data_offsets":[${off},${off + n}]${s.extra ?? ""}}`);
    data.push(Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256))));
    off += n;
  }
  // Shuffle the members: order in the header is free, data order is by offset.
  for (let i = members.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [members[i], members[j]] = [members[j], members[i]];
  }
  let json = `{${members.join(",")}}`;
  json += " ".repeat(Math.floor(rand() * 12));
  const body = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([len, body, ...data]);
}

export function seeds(rand: () => number): Buffer[] {
  return [
    build([{ key: "w", dtype: "F32", shape: [2, 3] }, { key: "b", dtype: "F16", shape: [3] }], `{"format":"pt"}`, rand),
    build(
      [
        { key: "__proto__", dtype: "F32", shape: [4] },
        { key: "constructor", dtype: "BF16", shape: [2, 2] },
        { key: "empty", dtype: "F64", shape: [0, 5] },
        { key: "ids", dtype: "I64", shape: [2] },
        { key: "é\u2028\ud83d\ude00", dtype: "U8", shape: [3], extra: `,"x":[1,{"y":null}]` },
      ],
      "null",
      rand,
    ),
    build([{ key: "a", dtype: "I8", shape: [5] }, { key: "m", dtype: "BOOL", shape: [1, 1, 2] }], `{"a":"b\\n\\u00e9","toString":""}`, rand),
    build([{ key: "z", dtype: "F32", shape: [0] }], null, rand),
  ];
}

const PUNCT = [..."{}[]\",:0123456789.-+eE \\u\n"].map((c) => c.charCodeAt(0)).concat([0x00, 0x7f, 0x80, 0xc3, 0xed, 0xf4, 0xff]);
const NUMBERS = ["16.0", "1e1", "01", "-0", "-1", "9007199254740993", "4.5", "0x10", "1E+0", "99999999999999999999"];

export function mutate(f: Buffer, rand: () => number): Buffer {
  const pick = (n: number) => Math.floor(rand() * n);
  const n = Number(f.readBigUInt64LE(0));
  const hdr = () => 8 + pick(Math.max(1, n));
  let b = Buffer.from(f);
  switch (pick(11)) {
    case 0: // a random byte of the header
      b[hdr()] = pick(256);
      break;
    case 1: // JSON punctuation or a bad UTF-8 byte in the header
      b[hdr()] = PUNCT[pick(PUNCT.length)];
      break;
    case 2: { // the length field shifted
      const d = [-8, -4, -2, -1, 1, 2, 4, 8][pick(8)];
      b.writeBigUInt64LE(BigInt(Math.max(0, n + d)), 0);
      break;
    }
    case 3: { // a byte of the header deleted, the length kept or adjusted
      const at = hdr();
      b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
      if (rand() < 0.5) b.writeBigUInt64LE(BigInt(n - 1), 0);
      break;
    }
    case 4: { // a byte inserted into the header
      const at = hdr();
      b = Buffer.concat([b.subarray(0, at), Buffer.from([PUNCT[pick(PUNCT.length)]]), b.subarray(at)]);
      if (rand() < 0.7) b.writeBigUInt64LE(BigInt(n + 1), 0);
      break;
    }
    case 5: { // a number of the header rewritten
      const text = b.subarray(8, 8 + n).toString("latin1");
      const nums = [...text.matchAll(/\d+/g)];
      if (!nums.length) break;
      const m = nums[pick(nums.length)];
      const r = rand() < 0.5 ? NUMBERS[pick(NUMBERS.length)] : String(Number(m[0]) + [-1, 1, 4, -4][pick(4)]);
      const t2 = text.slice(0, m.index) + r + text.slice(m.index! + m[0].length);
      const body = Buffer.from(t2, "latin1");
      b.writeBigUInt64LE(BigInt(body.length), 0);
      b = Buffer.concat([b.subarray(0, 8), body, b.subarray(8 + n)]);
      break;
    }
    case 6: { // an entry duplicated textually
      const text = b.subarray(8, 8 + n).toString("latin1");
      const m = /"[^"]*":\{[^}]*\}/.exec(text);
      if (!m) break;
      const t2 = text.slice(0, m.index) + m[0] + "," + text.slice(m.index);
      const body = Buffer.from(t2, "latin1");
      b.writeBigUInt64LE(BigInt(body.length), 0);
      b = Buffer.concat([b.subarray(0, 8), body, b.subarray(8 + n)]);
      break;
    }
    case 7: // truncated
      b = b.subarray(0, Math.max(0, b.length - 1 - pick(8)));
      break;
    case 8: // extended
      b = Buffer.concat([b, Buffer.alloc(1 + pick(8))]);
      break;
    case 9: { // two header bytes swapped
      const i = hdr(), j = hdr();
      [b[i], b[j]] = [b[j], b[i]];
      break;
    }
    default: // a byte of the length field
      b[pick(8)] = pick(256);
  }
  return b;
}

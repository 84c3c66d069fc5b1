/**
 * An independent strict reader of safetensors files for the tests, written
 * apart from lib/ (it shares no code with lib/safetensors): the whole header
 * is decoded with a fatal TextDecoder, then parsed by plain recursive descent
 * over the string into a tree that keeps every member (so duplicates are
 * seen), then checked against the format's rules as taskmerge documents them:
 *
 * - length prefix ≤ 100,000,000 and within the file; header valid UTF-8 JSON,
 *   an object, nothing but whitespace after it; no lone surrogates; no
 *   duplicate member names anywhere;
 * - `__metadata__`: null or an object of strings;
 * - each other member: an object with a string dtype of the known set, shape
 *   (≤ 64 non-negative integers) and data_offsets (2 non-negative integers),
 *   integers written without fraction or exponent and exactly representable;
 *   unknown members are allowed (any JSON value);
 * - containers nest at most 31 levels (the root object is level 1);
 *   at most 2^20 tensor plus metadata entries;
 * - shape product × dtype size = end − begin, and no prefix of the shape's
 *   product × dtype size exceeds the data section; tensors sorted by offsets cover
 *   the data section from 0 to its end with no gap and no overlap.
 */

export const REF_SIZES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const MAX_HEADER = 100_000_000;
const MAX_LEVEL = 31;
const MAX_ENTRIES = 1 << 20;
const MAX_RANK = 64;

type Json =
  | { t: "obj"; members: [string, Json][] }
  | { t: "arr"; items: Json[] }
  | { t: "str"; v: string }
  | { t: "num"; text: string }
  | { t: "lit"; v: true | false | null };

export interface RefTensor {
  key: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export type RefResult = { ok: true; tensors: RefTensor[]; metadata: Map<string, string> | null; dataStart: number } | { ok: false; reason: string };

class Bad extends Error {}

function parseJson(s: string): Json {
  let i = 0;
  const ws = () => {
    while (i < s.length && " \t\n\r".includes(s[i])) i++;
  };
  const fail = (why: string): never => {
    throw new Bad(`${why} at char ${i}`);
  };
  const str = (): string => {
    if (s[i] !== '"') fail("expected string");
    i++;
    let out = "";
    for (;;) {
      if (i >= s.length) fail("unterminated string");
      const c = s[i];
      if (c === '"') {
        i++;
        break;
      }
      if (c.charCodeAt(0) < 0x20) fail("control char");
      if (c === "\\") {
        const e = s[i + 1];
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e === "u") {
          const h = s.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u");
          out += String.fromCharCode(parseInt(h, 16));
          i += 6;
        } else if (e !== undefined && Object.prototype.hasOwnProperty.call(simple, e)) {
          out += simple[e];
          i += 2;
        } else fail("bad escape");
        continue;
      }
      out += c;
      i++;
    }
    // Every surrogate must be half of a pair.
    for (let k = 0; k < out.length; k++) {
      const u = out.charCodeAt(k);
      if (u >= 0xd800 && u <= 0xdbff) {
        const n = out.charCodeAt(k + 1);
        if (!(n >= 0xdc00 && n <= 0xdfff)) fail("lone surrogate");
        k++;
      } else if (u >= 0xdc00 && u <= 0xdfff) fail("lone surrogate");
    }
    return out;
  };
  const value = (level: number): Json => {
    ws();
    const c = s[i];
    if (c === "{" || c === "[") {
      if (level > MAX_LEVEL) fail("too deep");
      i++;
      ws();
      if (c === "{") {
        const members: [string, Json][] = [];
        if (s[i] === "}") {
          i++;
          return { t: "obj", members };
        }
        for (;;) {
          ws();
          const k = str();
          ws();
          if (s[i] !== ":") fail("expected :");
          i++;
          members.push([k, value(level + 1)]);
          ws();
          if (s[i] === ",") i++;
          else if (s[i] === "}") {
            i++;
            return { t: "obj", members };
          } else fail("expected , or }");
        }
      }
      const items: Json[] = [];
      if (s[i] === "]") {
        i++;
        return { t: "arr", items };
      }
      for (;;) {
        items.push(value(level + 1));
        ws();
        if (s[i] === ",") i++;
        else if (s[i] === "]") {
          i++;
          return { t: "arr", items };
        } else fail("expected , or ]");
      }
    }
    if (c === '"') return { t: "str", v: str() };
    for (const [w, v] of [["true", true], ["false", false], ["null", null]] as const)
      if (s.startsWith(w, i)) {
        i += w.length;
        return { t: "lit", v };
      }
    const num = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    num.lastIndex = i;
    const m = num.exec(s);
    if (!m) fail("bad value");
    i += m![0].length;
    return { t: "num", text: m![0] };
  };
  const v = value(1);
  ws();
  if (i !== s.length) fail("trailing bytes");
  return v;
}

function checkDuplicates(v: Json): void {
  const stack: Json[] = [v];
  while (stack.length) {
    const x = stack.pop()!;
    if (x.t === "obj") {
      const names = new Set<string>();
      for (const [k, c] of x.members) {
        if (names.has(k)) throw new Bad(`duplicate ${k}`);
        names.add(k);
        stack.push(c);
      }
    } else if (x.t === "arr") stack.push(...x.items);
  }
}

function uint(v: Json | undefined): number {
  if (!v || v.t !== "num" || !/^(0|[1-9][0-9]*)$/.test(v.text)) throw new Bad("not a uint");
  const n = Number(v.text);
  if (!Number.isSafeInteger(n)) throw new Bad("uint too large");
  return n;
}

/** Reads a whole file's bytes by the rules above. */
export function refRead(file: Uint8Array): RefResult {
  try {
    if (file.length < 8) throw new Bad("short");
    const n = Number(Buffer.from(file.buffer, file.byteOffset, 8).readBigUInt64LE(0));
    if (n > MAX_HEADER || n > file.length - 8 || n < 2) throw new Bad("length");
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(file.subarray(8, 8 + n));
    } catch {
      throw new Bad("utf-8");
    }
    const root = parseJson(text);
    checkDuplicates(root);
    if (root.t !== "obj") throw new Bad("root not object");
    let metadata: Map<string, string> | null = null;
    const tensors: RefTensor[] = [];
    let entries = 0;
    for (const [key, v] of root.members) {
      if (key === "__metadata__") {
        if (v.t === "lit" && v.v === null) continue;
        if (v.t !== "obj") throw new Bad("metadata");
        metadata = new Map();
        for (const [mk, mv] of v.members) {
          if (mv.t !== "str") throw new Bad("metadata value");
          metadata.set(mk, mv.v);
          entries++;
        }
        continue;
      }
      entries++;
      if (v.t !== "obj") throw new Bad("entry");
      const get = (name: string) => v.members.find(([k]) => k === name)?.[1];
      const dt = get("dtype"), sh = get("shape"), off = get("data_offsets");
      if (!dt || dt.t !== "str" || !Object.prototype.hasOwnProperty.call(REF_SIZES, dt.v)) throw new Bad("dtype");
      if (!sh || sh.t !== "arr" || sh.items.length > MAX_RANK) throw new Bad("shape");
      if (!off || off.t !== "arr" || off.items.length !== 2) throw new Bad("offsets");
      const shape = sh.items.map(uint);
      const [begin, end] = off.items.map(uint);
      tensors.push({ key, dtype: dt.v, shape, begin, end });
    }
    if (entries > MAX_ENTRIES) throw new Bad("entries");
    const dataSize = file.length - 8 - n;
    // Sizes in BigInt: no overflow to think about. Every prefix product of the
    // shape must fit the data section (so [2^40, 2^40, 0] is refused too).
    for (const t of tensors) {
      const size = BigInt(REF_SIZES[t.dtype]);
      let bytes = size;
      for (const d of t.shape) {
        bytes *= BigInt(d);
        if (bytes > BigInt(dataSize)) throw new Bad("shape larger than the data");
      }
      if (t.end < t.begin || bytes !== BigInt(t.end - t.begin)) throw new Bad("size");
    }
    const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
    let at = 0;
    for (const t of sorted) {
      if (t.begin !== at) throw new Bad("gap or overlap");
      at = t.end;
    }
    if (at !== dataSize) throw new Bad("coverage");
    return { ok: true, tensors: sorted, metadata, dataStart: 8 + n };
  } catch (e) {
    if (e instanceof Bad) return { ok: false, reason: e.message };
    throw e;
  }
}

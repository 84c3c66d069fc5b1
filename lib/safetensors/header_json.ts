/**
 * The strict reader of a safetensors header's JSON, straight from its bytes.
 * JSON.parse is not enough: it accepts duplicate keys (the last wins), `16.0`
 * where the format wants an integer, and lone surrogates; and on a large
 * header it blocks the event loop for seconds. This reader follows the
 * format's schema (a map of tensor entries plus an optional `__metadata__`
 * map of strings), rejects what serde_json would reject for that schema plus
 * duplicate keys anywhere, and is bounded: nesting depth, entry count and
 * shape rank have limits, and it works iteratively (no recursion).
 *
 * It is a generator that yields every few thousand steps, so a caller can
 * hand the event loop back while a big header is read (readHeaderJson).
 */

import { quote } from "../errors";
import { TimeSlicer } from "../time_slice";

export const LIMITS = {
  /** Nesting depth of values the schema does not use (unknown tensor fields). */
  maxDepth: 32,
  /** Tensor entries plus metadata entries. */
  maxEntries: 1 << 20,
  /** Dimensions of a shape (NumPy's own limit is 64). */
  maxRank: 64,
};

export interface RawTensorEntry {
  key: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface RawHeader {
  tensors: RawTensorEntry[];
  /** null when the header has no `__metadata__` or it is JSON null. */
  metadata: Map<string, string> | null;
}

/** A header that breaks JSON or the schema; `key` is the tensor (or metadata) key it concerns. */
export class HeaderJsonError extends Error {
  constructor(message: string, readonly key?: string, readonly notSafetensors = false) {
    super(message);
    this.name = "HeaderJsonError";
  }
}

const enum C {
  Quote = 0x22, Comma = 0x2c, Colon = 0x3a, LBrace = 0x7b, RBrace = 0x7d, LBracket = 0x5b, RBracket = 0x5d,
  Backslash = 0x5c, Minus = 0x2d, Zero = 0x30, Nine = 0x39, Dot = 0x2e, E = 0x45, e = 0x65, Plus = 0x2b,
}

/** Steps (bytes scanned or entries read) between yields. */
const YIELD_EVERY = 1 << 16;

const SIMPLE_ESCAPES = new Map<number, string>([
  [0x22, '"'], [0x5c, "\\"], [0x2f, "/"], [0x62, "\b"], [0x66, "\f"], [0x6e, "\n"], [0x72, "\r"], [0x74, "\t"],
]);

const isWs = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

class Reader {
  pos = 0;
  private steps = 0;
  constructor(readonly b: Uint8Array) {}

  /** True when it is time to yield to the caller. */
  tick(n: number): boolean {
    this.steps += n;
    if (this.steps < YIELD_EVERY) return false;
    this.steps = 0;
    return true;
  }

  fail(what: string, key?: string): never {
    throw new HeaderJsonError(`${what} at byte ${this.pos} of the header`, key);
  }

  /** A break of JSON's own grammar. */
  bad(what: string, key?: string): never {
    this.fail(`not valid JSON: ${what}`, key);
  }

  ws(): void {
    const b = this.b;
    while (this.pos < b.length && isWs(b[this.pos])) this.pos++;
  }

  /** The next non-space byte (not consumed), -1 at the end. */
  peek(): number {
    this.ws();
    return this.pos < this.b.length ? this.b[this.pos] : -1;
  }

  expect(c: number, what: string, key?: string): void {
    if (this.peek() !== c) this.fail(`expected ${what}`, key);
    this.pos++;
  }

  /**
   * A string at pos (after optional space): checks UTF-8 and escapes and
   * returns the decoded text (or undefined when `decode` is false).
   */
  *string(decode: boolean, key?: string): Generator<void, string | undefined> {
    if (this.peek() !== C.Quote) this.bad("expected a string", key);
    const b = this.b;
    let i = ++this.pos;
    let segStart = i;
    let out = "";
    let sinceYield = 0;
    for (;;) {
      if (i >= b.length) { this.pos = i; this.bad("unterminated string", key); }
      const c = b[i];
      if (c === C.Quote) break;
      if (c < 0x20) { this.pos = i; this.bad("control character in a string", key); }
      if (c === C.Backslash) {
        if (decode) out += decodeUtf8(b, segStart, i);
        this.pos = i;
        const [text, next] = this.escape(i, key);
        if (decode) out += text;
        i = segStart = next;
        continue;
      }
      if (c < 0x80) i++;
      else {
        const n = utf8SeqLength(b, i);
        if (!n) { this.pos = i; this.bad("invalid UTF-8", key); }
        i += n;
      }
      if (++sinceYield === YIELD_EVERY) { sinceYield = 0; yield; }
    }
    if (decode) out += decodeUtf8(b, segStart, i);
    this.pos = i + 1;
    return decode ? out : undefined;
  }

  /** One escape at i (the backslash); a \u high surrogate must be followed by a \u low one. */
  private escape(i: number, key?: string): [string, number] {
    const b = this.b;
    const c = b[i + 1];
    if (c !== 0x75) {
      const s = SIMPLE_ESCAPES.get(c);
      if (s === undefined) this.bad("invalid escape in a string", key);
      return [s, i + 2];
    }
    const u = this.hex4(i + 2, key);
    if (u >= 0xdc00 && u <= 0xdfff) this.bad("lone surrogate escape in a string", key);
    if (u < 0xd800 || u > 0xdbff) return [String.fromCharCode(u), i + 6];
    if (b[i + 6] !== C.Backslash || b[i + 7] !== 0x75) this.bad("lone surrogate escape in a string", key);
    const lo = this.hex4(i + 8, key);
    if (lo < 0xdc00 || lo > 0xdfff) this.bad("lone surrogate escape in a string", key);
    return [String.fromCharCode(u, lo), i + 12];
  }

  private hex4(i: number, key?: string): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.b[i + k];
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) this.bad("invalid \\u escape in a string", key);
      v = v * 16 + d;
    }
    return v;
  }

  /** A JSON number token, checked for JSON syntax; returns its text. */
  numberToken(key?: string): string {
    this.ws();
    const b = this.b;
    const start = this.pos;
    let i = start;
    const digits = () => {
      const s = i;
      while (i < b.length && b[i] >= C.Zero && b[i] <= C.Nine) i++;
      return i - s;
    };
    if (b[i] === C.Minus) i++;
    if (b[i] === C.Zero) i++;
    else if (!digits()) { this.pos = i; this.bad("invalid number", key); }
    if (b[i] === C.Dot) {
      i++;
      if (!digits()) { this.pos = i; this.bad("invalid number", key); }
    }
    if (b[i] === C.E || b[i] === C.e) {
      i++;
      if (b[i] === C.Plus || b[i] === C.Minus) i++;
      if (!digits()) { this.pos = i; this.bad("invalid number", key); }
    }
    this.pos = i;
    return decodeUtf8(b, start, i);
  }

  /** A non-negative integer that JavaScript holds exactly (the format's usize). */
  uint(what: string, key: string): number {
    const at = this.pos;
    const t = this.numberToken(key);
    if (!/^(0|[1-9][0-9]*)$/.test(t)) {
      this.pos = at;
      this.fail(`${what} ${t.length > 24 ? t.slice(0, 24) + "…" : t} is not a non-negative integer`, key);
    }
    const v = Number(t);
    if (!Number.isSafeInteger(v)) { this.pos = at; this.fail(`${what} ${t.length > 24 ? t.slice(0, 24) + "…" : t} is too large`, key); }
    return v;
  }

  literal(word: string, key?: string): void {
    this.ws();
    for (let k = 0; k < word.length; k++) if (this.b[this.pos + k] !== word.charCodeAt(k)) this.bad("invalid JSON value", key);
    this.pos += word.length;
  }

  /** Skips any JSON value (checked, duplicate keys included), iteratively and depth-bounded. */
  *skipValue(depth: number, key: string): Generator<void, void> {
    const stack: (Set<string> | null)[] = []; // a Set per open object, null per open array
    for (;;) {
      // A value.
      const c = this.peek();
      if (c === C.LBrace || c === C.LBracket) {
        if (depth + stack.length >= LIMITS.maxDepth) this.fail(`nesting deeper than ${LIMITS.maxDepth}`, key);
        this.pos++;
        const obj = c === C.LBrace;
        stack.push(obj ? new Set() : null);
        if (this.peek() === (obj ? C.RBrace : C.RBracket)) this.pos++;
        else {
          if (obj) yield* this.memberKey(stack[stack.length - 1]!, key);
          continue;
        }
      } else if (c === C.Quote) yield* this.string(false, key);
      else if (c === 0x74) this.literal("true", key);
      else if (c === 0x66) this.literal("false", key);
      else if (c === 0x6e) this.literal("null", key);
      else this.numberToken(key);
      if (this.tick(1)) yield;
      // After a value: close containers or move to the next member.
      for (;;) {
        if (!stack.length) return;
        const top = stack[stack.length - 1];
        const n = this.peek();
        if (n === C.Comma) {
          this.pos++;
          if (top) yield* this.memberKey(top, key);
          break;
        }
        if (n !== (top ? C.RBrace : C.RBracket)) this.bad(top ? "expected ',' or '}'" : "expected ',' or ']'", key);
        this.pos++;
        stack.pop();
      }
    }
  }

  /** A member name and its colon, checked against the names seen in this object. */
  private *memberKey(seen: Set<string>, key: string): Generator<void, void> {
    const name = (yield* this.string(true, key))!;
    if (seen.has(name)) this.fail(`duplicate key ${quote(name)}`, key);
    seen.add(name);
    this.expect(C.Colon, "':'", key);
  }
}

/** Reads and checks a safetensors header (the bytes after the length prefix). */
export function* parseHeaderJson(bytes: Uint8Array): Generator<void, RawHeader> {
  const r = new Reader(bytes);
  if (r.peek() !== C.LBrace) throw new HeaderJsonError("the header is not a JSON object", undefined, true);
  r.pos++;
  const seen = new Set<string>();
  const tensors: RawTensorEntry[] = [];
  let metadata: Map<string, string> | null = null;
  let entries = 0;
  if (r.peek() === C.RBrace) r.pos++;
  else
    for (;;) {
      const key = (yield* r.string(true))!;
      if (seen.has(key)) r.fail("duplicate key", key);
      seen.add(key);
      r.expect(C.Colon, "':'", key);
      if (key === "__metadata__") {
        metadata = yield* readMetadata(r, () => {
          if (++entries > LIMITS.maxEntries) r.fail(`more than ${LIMITS.maxEntries} entries`);
        });
      } else {
        if (++entries > LIMITS.maxEntries) r.fail(`more than ${LIMITS.maxEntries} entries`, key);
        tensors.push(yield* readTensor(r, key));
      }
      if (r.tick(512)) yield;
      const c = r.peek();
      if (c === C.Comma) { r.pos++; continue; }
      if (c === C.RBrace) { r.pos++; break; }
      r.bad("expected ',' or '}'", key);
    }
  if (r.peek() !== -1) r.bad("unexpected bytes after the header object");
  return { tensors, metadata };
}

function* readMetadata(r: Reader, count: () => void): Generator<void, Map<string, string> | null> {
  if (r.peek() === 0x6e) {
    r.literal("null", "__metadata__");
    return null;
  }
  r.expect(C.LBrace, "'{' or null for __metadata__", "__metadata__");
  const m = new Map<string, string>();
  if (r.peek() === C.RBrace) { r.pos++; return m; }
  for (;;) {
    const k = (yield* r.string(true, "__metadata__"))!;
    if (m.has(k)) r.fail("duplicate __metadata__ key", k);
    r.expect(C.Colon, "':'", k);
    if (r.peek() !== C.Quote) r.fail("__metadata__ value is not a string", k);
    m.set(k, (yield* r.string(true, k))!);
    count();
    if (r.tick(256)) yield;
    const c = r.peek();
    if (c === C.Comma) { r.pos++; continue; }
    if (c === C.RBrace) { r.pos++; return m; }
    r.bad("expected ',' or '}' in __metadata__", k);
  }
}

function* readTensor(r: Reader, key: string): Generator<void, RawTensorEntry> {
  r.expect(C.LBrace, "a tensor entry object", key);
  const fields = new Set<string>();
  let dtype: string | undefined;
  let shape: number[] | undefined;
  let offsets: number[] | undefined;
  if (r.peek() === C.RBrace) r.pos++;
  else
    for (;;) {
      const f = (yield* r.string(true, key))!;
      if (fields.has(f)) r.fail(`duplicate field ${quote(f)}`, key);
      fields.add(f);
      r.expect(C.Colon, "':'", key);
      if (f === "dtype") {
        if (r.peek() !== C.Quote) r.fail("dtype is not a string", key);
        dtype = (yield* r.string(true, key))!;
      } else if (f === "shape") shape = uintList(r, "shape", key, LIMITS.maxRank);
      else if (f === "data_offsets") {
        offsets = uintList(r, "data_offsets", key, 2);
        if (offsets.length !== 2) r.fail("data_offsets is not a pair of integers", key);
      } else yield* r.skipValue(3, key); // unknown fields are ignored, as by the format's reader
      const c = r.peek();
      if (c === C.Comma) { r.pos++; continue; }
      if (c === C.RBrace) { r.pos++; break; }
      r.bad("expected ',' or '}' in a tensor entry", key);
    }
  for (const [name, v] of [["dtype", dtype], ["shape", shape], ["data_offsets", offsets]] as const)
    if (v === undefined) r.fail(`tensor entry has no ${name}`, key);
  return { key, dtype: dtype!, shape: shape!, begin: offsets![0], end: offsets![1] };
}

function uintList(r: Reader, what: string, key: string, max: number): number[] {
  r.expect(C.LBracket, `a list for ${what}`, key);
  const out: number[] = [];
  if (r.peek() === C.RBracket) { r.pos++; return out; }
  for (;;) {
    if (out.length === max) r.fail(max === 2 ? `${what} is not a pair of integers` : `${what} has more than ${max} entries`, key);
    out.push(r.uint(what, key));
    const c = r.peek();
    if (c === C.Comma) { r.pos++; continue; }
    if (c === C.RBracket) { r.pos++; return out; }
    r.fail(`expected ',' or ']' in ${what}`, key);
  }
}

/** Length of the valid UTF-8 sequence at i (2-4 bytes), 0 when invalid (overlong, surrogate, > U+10FFFF). */
function utf8SeqLength(b: Uint8Array, i: number): number {
  const c = b[i];
  const cont = (k: number) => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const c1 = b[i + 1];
    if (!cont(1) || !cont(2)) return 0;
    if (c === 0xe0 && c1 < 0xa0) return 0; // overlong
    if (c === 0xed && c1 >= 0xa0) return 0; // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const c1 = b[i + 1];
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c === 0xf0 && c1 < 0x90) return 0; // overlong
    if (c === 0xf4 && c1 >= 0x90) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

const decoder = new TextDecoder("utf-8");
/** Bytes already checked as UTF-8 to a string. */
function decodeUtf8(b: Uint8Array, start: number, end: number): string {
  return end > start ? decoder.decode(b.subarray(start, end)) : "";
}

/** Runs the reader to the end in one go (small headers, tests). */
export function parseHeaderJsonSync(bytes: Uint8Array): RawHeader {
  const g = parseHeaderJson(bytes);
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
  }
}

/**
 * Runs the reader in slices of a few milliseconds, giving the event loop a
 * turn in between: a header of 100 MB never blocks timers, signals or I/O.
 */
export async function readHeaderJson(bytes: Uint8Array, slicer = new TimeSlicer()): Promise<RawHeader> {
  const g = parseHeaderJson(bytes);
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
    await slicer.maybe();
  }
}

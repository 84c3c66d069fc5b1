/**
 * Issue 11, items 5-8 and the input messages: keys like `__proto__` survive
 * a merge, the header follows the format's rules (and JSON's, strictly), a
 * huge header neither blocks the event loop nor explodes, non-regular files
 * are refused at once, keys are quoted in errors, non-safetensors files are
 * named as such, and TASKMERGE_* knobs are validated.
 */
import * as fs from "fs";
import * as path from "path";
import { execFileSync } from "child_process";
import { SafetensorsFile } from "../lib/safetensors/file";
import { parseHeader } from "../lib/safetensors/header";
import * as headerJson from "../lib/safetensors/header_json";
import { TaskmergeError } from "../lib/errors";
import { envNumber } from "../lib/env";
import { inspect } from "../lib";
import { refRead } from "./reference/safetensors";
import { encode } from "./helpers/floatref";
import { makeZoo, runCli, tmpDir, listTree } from "./helpers/fixtures";

/** A file from literal header text and data bytes; `pad` spaces after the JSON. */
function rawFile(file: string, header: string | Buffer, data: Buffer, o: { pad?: number; length?: number } = {}): Buffer {
  const json = Buffer.concat([typeof header === "string" ? Buffer.from(header, "utf8") : header, Buffer.from(" ".repeat(o.pad ?? 0))]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(o.length ?? json.length));
  const b = Buffer.concat([len, json, data]);
  fs.writeFileSync(file, b);
  return b;
}

const entry = (key: string, dtype: string, shape: number[], a: number, b: number) =>
  `${JSON.stringify(key)}:{"dtype":"${dtype}","shape":[${shape.join(",")}],"data_offsets":[${a},${b}]}`;

/** A model with the given float32 tensors (in order), written by hand. */
function f32Model(file: string, tensors: [string, number[]][], metadata?: string): void {
  let off = 0;
  const parts: string[] = metadata ? [`"__metadata__":${metadata}`] : [];
  const data: Buffer[] = [];
  for (const [k, v] of tensors) {
    parts.push(entry(k, "F32", [v.length], off, off + 4 * v.length));
    data.push(encode(v, "F32"));
    off += 4 * v.length;
  }
  rawFile(file, `{${parts.join(",")}}`, Buffer.concat(data));
}

/** The float32 tensors of a file or directory output, read with the reference reader. */
function readF32(p: string): Map<string, number[]> {
  const files = fs.statSync(p).isDirectory() ? fs.readdirSync(p).filter((f) => f.endsWith(".safetensors")).map((f) => path.join(p, f)) : [p];
  const out = new Map<string, number[]>();
  for (const f of files) {
    const b = fs.readFileSync(f);
    const r = refRead(b);
    if (!r.ok) throw new Error(`${f}: ${r.reason}`);
    for (const t of r.tensors) {
      const v: number[] = [];
      for (let i = r.dataStart + t.begin; i < r.dataStart + t.end; i += 4) v.push(b.readFloatLE(i));
      out.set(t.key, v);
    }
  }
  return out;
}

function oneErrorLine(stderr: string): string {
  const lines = stderr.trim().split("\n").filter((l) => l.startsWith("taskmerge:"));
  expect(lines).toHaveLength(1);
  expect(stderr.trim().split("\n")).toHaveLength(1);
  return lines[0];
}

describe("item 5: keys such as __proto__ survive a merge", () => {
  const KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "w"];
  const work = tmpDir();
  const vals = (s: number) => KEYS.map((k, i) => [k, [1, 2, 3, 4].map((x) => x * (i + 1) + s)] as [string, number[]]);
  const base = path.join(work, "base.safetensors");
  const a = path.join(work, "a.safetensors");
  const b = path.join(work, "b.safetensors");
  f32Model(base, vals(0), `{"__proto__":"kept","format":"pt"}`);
  f32Model(a, vals(1));
  f32Model(b, vals(3));

  test("inspect lists every key and the __proto__ metadata", async () => {
    const r = await inspect(base);
    expect(r.tensors.map((t) => t.key)).toEqual(KEYS);
    expect(Object.keys(r.metadata).sort()).toEqual(["__proto__", "format"]);
    expect(r.metadata["__proto__"]).toBe("kept");
  });

  for (const [layout, extra] of [["file", []], ["sharded directory", ["--max-shard-size", "40"]]] as const)
    test(`average into a ${layout}: every key, the right values`, async () => {
      const out = path.join(work, layout === "file" ? "out.safetensors" : "out");
      const r = await runCli(["merge", "--base", base, "--expert", a, "--expert", b, "--method", "average", "-q", "--out", out, ...extra]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const got = readF32(out);
      expect([...got.keys()].sort()).toEqual([...KEYS].sort());
      for (const [i, k] of KEYS.entries()) expect(got.get(k)).toEqual([1, 2, 3, 4].map((x) => x * (i + 1) + 2));
      if (layout !== "file") {
        const index = JSON.parse(fs.readFileSync(path.join(out, "model.safetensors.index.json"), "utf8"));
        expect(Object.keys(index.weight_map).sort()).toEqual([...KEYS].sort());
        expect(fs.readdirSync(out).filter((f) => f.endsWith(".safetensors")).length).toBeGreaterThan(1);
      }
    });
});

describe("item 6: the format's rules", () => {
  const work = tmpDir();
  const f16 = (n: number) => Buffer.alloc(4 * n, 0x3c);
  /** A header whose tensor key holds the given raw bytes. */
  const withBytes = (bytes: number[]) =>
    Buffer.concat([Buffer.from('{"w'), Buffer.from(bytes), Buffer.from('":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')]);

  /** Each case: header text, data, what the error says (and the key it names, if any). */
  const BAD: [string, string | Buffer, Buffer, RegExp, string | null][] = [
    ["duplicate tensor key", `{${entry("w", "F32", [2], 0, 8)},${entry("w", "F32", [2], 8, 16)}}`, f16(4), /duplicate key/, "w"],
    ["duplicate field", `{"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, f16(2), /duplicate field/, "w"],
    ["duplicate __metadata__", `{"__metadata__":{},"__metadata__":null,${entry("w", "F32", [2], 0, 8)}}`, f16(2), /duplicate key/, null],
    ["duplicate metadata key", `{"__metadata__":{"a":"1","a":"2"},${entry("w", "F32", [2], 0, 8)}}`, f16(2), /duplicate __metadata__ key/, "a"],
    ["16.0 as a dimension", `{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, f16(2), /2\.0 is not a non-negative integer/, "w"],
    ["1e1 as an offset", `{"w":{"dtype":"U8","shape":[10],"data_offsets":[0,1e1]}}`, Buffer.alloc(10), /1e1 is not/, "w"],
    ["an offset past 2^53", `{"w":{"dtype":"U8","shape":[1],"data_offsets":[9007199254740993,9007199254740994]}}`, Buffer.alloc(1), /too large/, "w"],
    ["lone surrogate escape", `{"w\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f16(2), /lone surrogate/, null],
    ["invalid UTF-8", withBytes([0xff]), f16(2), /invalid UTF-8/, null],
    ["a UTF-8 encoded surrogate", withBytes([0xed, 0xa0, 0x80]), f16(2), /invalid UTF-8/, null],
    ["an overlong UTF-8 sequence", withBytes([0xc0, 0xaf]), f16(2), /invalid UTF-8/, null],
    ["a gap between tensors", `{${entry("a", "F32", [1], 0, 4)},${entry("b", "F32", [1], 8, 12)}}`, f16(3), /belong to no tensor/, "b"],
    ["data no tensor covers at the end", `{${entry("a", "F32", [1], 0, 4)}}`, f16(2), /tensors cover 4/, null],
    ["first tensor not at 0", `{${entry("a", "F32", [1], 4, 8)}}`, f16(2), /bytes 0\.\.4/, "a"],
    ["trailing garbage after the object", `{${entry("a", "F32", [1], 0, 4)}} x`, f16(1), /after the header object/, null],
    ["__metadata__ a list", `{"__metadata__":["a"],${entry("a", "F32", [1], 0, 4)}}`, f16(1), /__metadata__/, null],
    ["nesting bomb in an unknown field", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${"[".repeat(5000)}${"]".repeat(5000)}}}`, f16(1), /nesting deeper than 32/, "a"],
  ];

  test.each(BAD)("%s is refused, naming the file (and key)", async (_n, header, data, message, key) => {
    const p = path.join(work, "bad.safetensors");
    const bytes = rawFile(p, header, data);
    expect(refRead(bytes).ok).toBe(false);
    const e = await SafetensorsFile.open(p).then(
      (f) => (f.close(), undefined),
      (x) => x,
    );
    expect(e).toBeInstanceOf(TaskmergeError);
    expect(e.message).toMatch(message);
    expect(e.message).toContain(p);
    if (key !== null) expect(e.key).toBe(key);
  });

  test("a header length shortened by 4 (into the padding) fails the merge with nothing written", async () => {
    const dir = tmpDir();
    const zoo = makeZoo(dir, { T: 2 });
    // Rewrite expert 1 with 8 spaces of padding, then cut the length field by 4:
    // the JSON still parses and every value would shift by one element.
    const raw = fs.readFileSync(zoo.experts[1].path);
    const n = Number(raw.readBigUInt64LE(0));
    const json = raw.subarray(8, 8 + n).toString("utf8").trimEnd();
    const bad = rawFile(zoo.experts[1].path, json, raw.subarray(8 + n), { pad: 8, length: Buffer.byteLength(json) + 4 });
    expect(refRead(bad).ok).toBe(false);
    const out = path.join(dir, "out.safetensors");
    const before = listTree(dir);
    const r = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", zoo.experts[1].path, "--method", "average", "--out", out]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/data section holds \d+ bytes but the tensors cover/);
    expect(listTree(dir)).toEqual(before);
  });

  test("valid files are read: __metadata__ null, zero-sized shapes, unknown fields, any member order", async () => {
    const p = path.join(work, "ok.safetensors");
    const header = `{"z":{"dtype":"F64","shape":[0,3],"data_offsets":[8,8],"note":{"a":[1,2.5,true,null]}},"__metadata__":null,` +
      `${entry("e", "F32", [0], 0, 0)},${entry("w", "F32", [2], 0, 8)},${entry("last", "U8", [0], 8, 8)}}`;
    const bytes = rawFile(p, header, f16(2), { pad: 3 });
    expect(refRead(bytes).ok).toBe(true);
    const f = await SafetensorsFile.open(p);
    try {
      expect(f.tensors.map((t) => [t.key, t.shape, t.nbytes])).toEqual([["e", [0], 0], ["w", [2], 8], ["z", [0, 3], 0], ["last", [0], 0]]);
      expect(Object.keys(f.metadata)).toEqual([]);
      expect((await f.read("z")).length).toBe(0);
    } finally {
      await f.close();
    }
  });
});

describe("item 7: big headers are bounded and leave the event loop free", () => {
  test("an 8 MB metadata header parses in slices: timers run during the parse", async () => {
    const n = 300_000;
    const parts = [];
    for (let i = 0; i < n; i++) parts.push(`"key-${i}-${"x".repeat(8)}":"value-${i}"`);
    const json = Buffer.from(`{"__metadata__":{${parts.join(",")}}}`);
    expect(json.length).toBeGreaterThan(8e6);
    let turns = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      turns++;
    }, 1);
    try {
      const h = await parseHeader(json, 8 + json.length, "big.safetensors");
      expect(Object.keys(h.metadata)).toHaveLength(n);
    } finally {
      clearInterval(timer);
    }
    // The parse takes far longer than one slice; the old parser ran it in one block, with no turn.
    expect(turns).toBeGreaterThan(3);
  });

  test("entry count is bounded (limit lowered for the test)", async () => {
    const saved = headerJson.LIMITS.maxEntries;
    headerJson.LIMITS.maxEntries = 1000;
    try {
      const parts = [];
      for (let i = 0; i < 1001; i++) parts.push(`"k${i}":"v"`);
      const json = Buffer.from(`{"__metadata__":{${parts.join(",")}}}`);
      await expect(parseHeader(json, 8 + json.length, "f")).rejects.toThrow(/more than 1000 entries/);
    } finally {
      headerJson.LIMITS.maxEntries = saved;
    }
  });

  test("shape rank is bounded", async () => {
    const json = Buffer.from(`{"w":{"dtype":"U8","shape":[${new Array(65).fill(1).join(",")}],"data_offsets":[0,1]}}`);
    await expect(parseHeader(json, 8 + json.length + 1, "f")).rejects.toThrow(/shape has more than 64 entries/);
  });
});

describe("item 8: non-regular inputs are refused at once", () => {
  const canFifo = process.platform !== "win32";
  const mkfifo = (p: string) => execFileSync("mkfifo", [p]);

  (canFifo ? test : test.skip).each([
    ["an expert file", (z: ReturnType<typeof makeZoo>, d: string) => {
      const p = path.join(d, "fifo.safetensors");
      mkfifo(p);
      return ["--expert", p];
    }],
    ["a directory's model.safetensors", (_z: ReturnType<typeof makeZoo>, d: string) => {
      const e = path.join(d, "fifodir");
      fs.mkdirSync(e);
      mkfifo(path.join(e, "model.safetensors"));
      return ["--expert", e];
    }],
    ["a sharded checkpoint's index", (_z: ReturnType<typeof makeZoo>, d: string) => {
      const e = path.join(d, "fifoidx");
      fs.mkdirSync(e);
      mkfifo(path.join(e, "model.safetensors.index.json"));
      return ["--expert", e];
    }],
    ["a statistics file", (z: ReturnType<typeof makeZoo>, d: string) => {
      const p = path.join(d, "stats.safetensors");
      mkfifo(p);
      return ["--expert", z.experts[1].path, "--stats", p, "--method", "regmean"];
    }],
  ] as const)("%s that is a FIFO: exit 1 naming it, no hang", async (_name, setup) => {
    const d = tmpDir();
    const zoo = makeZoo(d, { T: 2 });
    const extra: string[] = [...setup(zoo, d)];
    const method = extra.includes("--method") ? [] : ["--method", "average"];
    const args = ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, ...extra, ...method, "--out", path.join(d, "out.safetensors")];
    if (extra.includes("--stats")) {
      // Statistics pair with experts in order: give the first expert a real (empty-key) file too.
      const s0 = path.join(d, "s0.safetensors");
      rawFile(s0, "{}", Buffer.alloc(0));
      args.splice(args.indexOf("--stats"), 0, "--stats", s0);
    }
    const r = await runCli(args, { timeoutMs: 20000 });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/not a regular file \(a FIFO\)/);
    expect(fs.existsSync(path.join(d, "out.safetensors"))).toBe(false);
  });

  (canFifo ? test : test.skip)("a bundle.json that is a FIFO", async () => {
    const d = tmpDir();
    const zoo = makeZoo(d, { T: 1 });
    const bundle = path.join(d, "bundle");
    fs.mkdirSync(bundle);
    mkfifo(path.join(bundle, "bundle.json"));
    const r = await runCli(["extract", "--bundle", bundle, "--task", "task0", "--base", zoo.base.path, "--out", path.join(d, "x.safetensors")], { timeoutMs: 20000 });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/not a regular file \(a FIFO\)/);
  });

  test("a character device is refused the same way (API)", async () => {
    await expect(SafetensorsFile.open("/dev/zero")).rejects.toThrow(/not a regular file \(a character device\)/);
  });
});

describe("messages", () => {
  test("a key with a newline gives a one-line error with the key quoted", async () => {
    const d = tmpDir();
    const zoo = makeZoo(d, { T: 1 });
    const evil = path.join(d, "evil.safetensors");
    rawFile(evil, `{"bad\\nkey\\u0007":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`, Buffer.alloc(16));
    const r = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", evil, "--method", "average", "--out", path.join(d, "o.safetensors")]);
    expect(r.code).toBe(1);
    const line = oneErrorLine(r.stderr);
    expect(line).toContain(`key "bad\\nkey\\u0007"`);
    expect(line).toContain(evil);
  });

  test("a key missing from an expert is quoted in the keys-differ message", async () => {
    const d = tmpDir();
    const base = path.join(d, "base.safetensors");
    const e = path.join(d, "e.safetensors");
    f32Model(base, [["a\nb", [1]], ["c", [2]]]);
    f32Model(e, [["c", [2]]]);
    const r = await runCli(["merge", "--base", base, "--expert", e, "--method", "average", "--out", path.join(d, "o.safetensors")]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toContain(`missing "a\\nb"`);
  });

  test.each([
    ["a zip archive", Buffer.concat([Buffer.from("PK\x03\x04\x14\x00\x00\x00SECRETBYTES", "latin1"), Buffer.alloc(64)])],
    ["a text file", Buffer.from("SECRETBYTES are not a model, just some text that is long enough\n")],
    ["a small length and no JSON", Buffer.concat([Buffer.from([11, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("SECRETBYTES and more")])],
    ["a pickle", Buffer.concat([Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x0b]), Buffer.from("SECRETBYTES"), Buffer.alloc(40)])],
  ])("%s is 'not a safetensors file', its bytes not echoed", async (_n, bytes) => {
    const d = tmpDir();
    const p = path.join(d, "model.safetensors");
    fs.writeFileSync(p, bytes);
    const r = await runCli(["inspect", p]);
    expect(r.code).toBe(1);
    const line = oneErrorLine(r.stderr);
    expect(line).toMatch(/not a safetensors file/);
    expect(line).not.toMatch(/SECRET|PK/);
  });

  test.each([
    ["TASKMERGE_THREADS", "abc"],
    ["TASKMERGE_THREADS", "0"],
    ["TASKMERGE_CHUNK_ELEMS", "-5"],
    ["TASKMERGE_CHUNK_ELEMS", "1.5"],
    ["TASKMERGE_PROGRESS_INTERVAL", "soon"],
    ["TASKMERGE_TIES_SELECT", "fast"],
  ])("%s=%s is one clear usage line (exit 2), nothing written", async (name, value) => {
    const d = tmpDir();
    const zoo = makeZoo(d, { T: 1 });
    const before = listTree(d);
    const r = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "average", "--out", path.join(d, "o.safetensors")], {
      env: { [name]: value },
    });
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toMatch(new RegExp(`environment variable ${name}="${value.replace(".", "\\.")}" is not`));
    expect(listTree(d)).toEqual(before);
  });

  test("valid knob values are read; unset is the default", () => {
    expect(envNumber("TASKMERGE_CHUNK_ELEMS", { TASKMERGE_CHUNK_ELEMS: "4096" })).toBe(4096);
    expect(envNumber("TASKMERGE_CHUNK_ELEMS", {})).toBeUndefined();
    expect(envNumber("TASKMERGE_PROGRESS_INTERVAL", { TASKMERGE_PROGRESS_INTERVAL: "0.5" })).toBe(0.5);
    expect(() => envNumber("TASKMERGE_THREADS", { TASKMERGE_THREADS: "2000" })).toThrow(/from 1 to 1024/);
  });
});

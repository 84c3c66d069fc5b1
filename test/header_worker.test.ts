/**
 * Large headers are read in a worker thread (lib/safetensors/header_thread.ts)
 * by the same parser the main thread runs on small ones. The worker path must
 * give exactly what the direct path gives: the same Header (keys, dtypes,
 * shapes, offsets, metadata in the same order, null-prototype), the same
 * hash, and the same TaskmergeError (message, file, key), on the fuzz corpus
 * and on big headers; it must stop on abort and leave no worker behind.
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { inspect as utilInspect } from "util";
import { Worker } from "worker_threads";
import { hashHeader, Header, headerLength, parseHeader } from "../lib/safetensors/header";
import { OFF_THREAD, ParsedHeader, readHeader, readHeaderInWorker } from "../lib/safetensors/header_thread";
import { packHeader, packedTransferList, unpackHeader } from "../lib/safetensors/header_pack";
import { SafetensorsFile } from "../lib/safetensors/file";
import { inspect } from "../lib/api/inspect";
import { AbortError, TaskmergeError } from "../lib/errors";
import { mutate, seeds } from "./helpers/header_mutants";
import { ROOT, rng, tmpDir } from "./helpers/fixtures";

type Outcome = { ok: true; value: ParsedHeader } | { ok: false; error: unknown };

async function outcome(p: Promise<ParsedHeader>): Promise<Outcome> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The main thread's reading, written out step by step (not through readHeader). */
const direct = (json: Buffer, fileSize: number, file: string) =>
  outcome(parseHeader(json, fileSize, file).then((header) => ({ header, hash: hashHeader(json) })));

/**
 * The worker path's metadata (a read-only view) reads exactly as the direct
 * path's null-prototype object under every way callers read an object.
 */
function expectSameMetadata(got: Record<string, string>, want: Record<string, string>, probes: string[] = []): void {
  expect(Object.getPrototypeOf(got)).toBeNull();
  expect(Object.keys(got)).toEqual(Object.keys(want));
  expect(Reflect.ownKeys(got)).toEqual(Reflect.ownKeys(want));
  expect(Object.entries(got)).toEqual(Object.entries(want));
  expect(JSON.stringify(got)).toBe(JSON.stringify(want));
  expect(JSON.stringify(got, null, 1)).toBe(JSON.stringify(want, null, 1));
  const forIn = (o: object) => {
    const ks: string[] = [];
    for (const k in o) ks.push(k);
    return ks;
  };
  expect(forIn(got)).toEqual(forIn(want));
  const spread = { ...got };
  expect(spread).toEqual({ ...want });
  expect(Object.keys(spread)).toEqual(Object.keys({ ...want }));
  expect(got).toStrictEqual(want);
  expect(utilInspect(got, { depth: 0, maxArrayLength: 50 })).toBe(utilInspect(want, { depth: 0, maxArrayLength: 50 }));
  const keys = Object.keys(want);
  // Every key for small ones, a spread of them for big ones, then keys that are not there.
  const step = Math.max(1, Math.floor(keys.length / 2000));
  const sample = keys.filter((_k, i) => i % step === 0);
  for (const k of [...sample, ...probes, "__proto__", "constructor", "toString", "hasOwnProperty", "", "0", "missing.key"]) {
    expect([k, got[k], k in got, Object.prototype.hasOwnProperty.call(got, k), Object.getOwnPropertyDescriptor(got, k)?.value]).toEqual(
      [k, want[k], k in want, Object.prototype.hasOwnProperty.call(want, k), Object.getOwnPropertyDescriptor(want, k)?.value]);
  }
  expect((got as Record<symbol, unknown>)[Symbol.iterator]).toBeUndefined();
  expect(Object.prototype.toString.call(got)).toBe(Object.prototype.toString.call(want));
}

function expectSameHeader(got: Header, want: Header): void {
  expect(got).toStrictEqual(want);
  expectSameMetadata(got.metadata, want.metadata);
}

function expectSame(got: Outcome, want: Outcome, what: string, errorClass: typeof TaskmergeError = TaskmergeError): void {
  if (want.ok) {
    if (!got.ok) throw new Error(`${what}: direct path reads it, worker path throws ${(got.error as Error).stack}`);
    expectSameHeader(got.value.header, want.value.header);
    expect(got.value.hash).toBe(want.value.hash);
    return;
  }
  if (got.ok) throw new Error(`${what}: direct path throws (${(want.error as Error).message}), worker path reads it`);
  const [g, w] = [got.error as TaskmergeError, want.error as TaskmergeError];
  expect(w).toBeInstanceOf(errorClass);
  expect(g).toBeInstanceOf(errorClass);
  expect([g.message, g.reason, g.file, g.key]).toEqual([w.message, w.reason, w.file, w.key]);
}

/** The same modules as compiled to dist/ (built by `npm test`'s pretest, as the CLI tests need). */
function distModules() {
  const dist = path.join(ROOT, "dist");
  return {
    ...(require(path.join(dist, "safetensors", "header.js")) as typeof import("../lib/safetensors/header")),
    ...(require(path.join(dist, "safetensors", "header_thread.js")) as typeof import("../lib/safetensors/header_thread")),
    TaskmergeError: (require(path.join(dist, "errors.js")) as typeof import("../lib/errors")).TaskmergeError,
  };
}

/** The header bytes and file size of every mutant whose length prefix passes (what reaches the parser). */
function corpus(): { json: Buffer; size: number }[] {
  const rand = rng(11).u;
  const bases = seeds(rand);
  const out = bases.map((f) => ({ json: f.subarray(8, 8 + Number(f.readBigUInt64LE(0))), size: f.length }));
  for (let i = 0; i < 400; i++) {
    let m = bases[i % bases.length];
    for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) m = mutate(m, rand);
    let n: number;
    try {
      n = headerLength(m.subarray(0, 8), m.length, "m");
    } catch {
      continue;
    }
    out.push({ json: Buffer.from(m.subarray(8, 8 + n)), size: m.length });
  }
  return out;
}

/**
 * A header of `tensors` F32/BF16 entries and `metaKeys` metadata entries, with
 * `edit` applied to its text; a "ÿ" the edit writes becomes the invalid UTF-8
 * bytes FF FF.
 */
function bigHeader(tensors: number, metaKeys: number, edit = (s: string) => s): { json: Buffer; size: number } {
  const offsets = [0];
  for (let i = 0; i < tensors; i++) offsets.push(offsets[i] + (i % 5) * 2 * (i % 3 ? 4 : 2));
  const meta: string[] = [];
  for (let i = 0; i < metaKeys; i++) meta.push(`"note.${i}":"value ${i} \\u00e9\\ud83d\\ude00"`);
  const members = [`"__metadata__":{${meta.join(",")}}`];
  // Keys out of data order, so the layout check's sort matters.
  for (let i = tensors - 1; i >= 0; i--)
    members.push(`"layers.${i}.w":{"dtype":"${i % 3 ? "F32" : "BF16"}","shape":[${i % 5},2],"data_offsets":[${offsets[i]},${offsets[i + 1]}]}`);
  const json = Buffer.from(edit(`{${members.join(",")}}`));
  for (let i = json.indexOf("\u00ff"); i >= 0; i = json.indexOf("\u00ff", i)) json[i] = json[i + 1] = 0xff;
  return { json, size: 8 + json.length + offsets[tensors] };
}

/** Runs fn over items, `width` at a time. */
async function inBatches<T>(items: T[], width: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map((t, k) => fn(t, i + k)));
}

describe("the header worker reads as the main thread does", () => {
  const files = corpus();

  test("packing round trip: every mutant of the fuzz corpus", async () => {
    let read = 0;
    for (const { json, size } of files) {
      const want = await direct(json, size, "m.safetensors");
      if (!want.ok) continue;
      read++;
      const packed = packHeader(want.value.header);
      const moved = structuredClone(packed, { transfer: packedTransferList(packed) });
      expectSameHeader(await unpackHeader(moved), want.value.header);
      expect(packed.keyEnds.byteLength).toBe(0); // transferred, not copied
    }
    expect(read).toBeGreaterThan(3);
  });

  test("worker threads (compiled, from dist/): every mutant of the corpus", async () => {
    // The shipped worker, against the main-thread path of the same build; the
    // tests below run the worker from the sources too (slower to start there).
    const built = distModules();
    let checked = 0;
    await inBatches(files, 4, async ({ json, size }, i) => {
      const want = await outcome(built.parseHeader(json, size, "m.safetensors").then((header) => ({ header, hash: built.hashHeader(json) })));
      expectSame(await outcome(built.readHeaderInWorker(Buffer.from(json), size, "m.safetensors")), want, `file ${i}`, built.TaskmergeError);
      checked++;
    });
    expect(checked).toBeGreaterThan(300);
  });

  test("a big header (60,000 tensors, 40,000 metadata keys): readHeader hands it to the worker, with the same result", async () => {
    const { json, size } = bigHeader(60_000, 40_000);
    expect(json.length).toBeGreaterThan(OFF_THREAD.bytes);
    const want = await direct(Buffer.from(json), size, "big.safetensors");
    expect(want.ok).toBe(true);
    const got = await outcome(readHeader(json, size, "big.safetensors"));
    expect(json.byteLength).toBe(0); // the bytes went to the worker
    expectSame(got, want, "big header");
    expect((got as { value: ParsedHeader }).value.header.tensors).toHaveLength(60_000);
  });

  test.each([
    ["a duplicate metadata key at the end", (s: string) => s.replace(`"note.39999":`, `"note.0":`)],
    ["bad UTF-8 deep inside", (s: string) => s.replace(`"layers.7.w"`, `"layers.7.\u00ff"`)],
    ["a gap in the data section", (s: string) => s.replace(/"layers\.20001\.w":\{[^}]*\}/, `"layers.20001.w":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`)],
    ["an unknown dtype", (s: string) => s.replace(`"layers.30001.w":{"dtype":"F32"`, `"layers.30001.w":{"dtype":"F31"`)],
  ])("a big header with %s: the same error", async (_what, edit) => {
    const { json, size } = bigHeader(40_000, 40_000, edit);
    const want = await direct(Buffer.from(json), size, "big.safetensors");
    expect(want.ok).toBe(false);
    expectSame(await outcome(readHeader(json, size, "big.safetensors")), want, "big header");
  });

  test("metadata keys that are integers, prototype names, empty or odd: the view reads as the object", async () => {
    const keys = ["b", "10", "2", "__proto__", "0", "constructor", "toString", "", "01", "-1", "1.5", "4294967294", "4294967295",
      "é", "😀", "a\nb", "valueOf", "hasOwnProperty", "__defineGetter__", "length"];
    for (let i = 0; i < 3000; i++) keys.push(i % 2 ? `k${i}` : String(100_000 - i)); // many, so the hash table's probes collide
    const meta = keys.map((k, i) => `${JSON.stringify(k)}:${JSON.stringify(`v${i}`)}`);
    // Values longer than one decoding chunk (8192 units), a surrogate pair across the chunk edge.
    keys.push("long", "longer");
    meta.push(`"long":${JSON.stringify("x".repeat(8191) + "😀" + "y".repeat(9000))}`, `"longer":${JSON.stringify("é".repeat(70_000))}`);
    const json = Buffer.from(`{"__metadata__":{${meta.join(",")}},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`);
    const want = await direct(json, 8 + json.length + 4, "m.safetensors");
    if (!want.ok) throw want.error;
    const got = await outcome(readHeaderInWorker(Buffer.from(json), 8 + json.length + 4, "m.safetensors"));
    expectSame(got, want, "odd keys");
    const m = (got as { value: ParsedHeader }).value.header.metadata;
    expectSameMetadata(m, want.value.header.metadata, [...keys, "k1x", "100001", "__proto", "k2999", "toString "]);
    expect(m["__proto__"]).toBe("v3");
    expect(Object.keys(m).slice(0, 4)).toEqual(["0", "2", "10", "97002"]); // integer-like keys first, ascending
  });

  test("the view refuses every write, with a TypeError, and stays as it was", async () => {
    const { json, size } = bigHeader(2, 60_000);
    const want = (await parseHeader(Buffer.from(json), size, "big.safetensors")).metadata;
    const m = (await readHeaderInWorker(json, size, "big.safetensors")).header.metadata;
    const readOnly = /metadata of a safetensors file is read-only/;
    expect(() => { m["note.1"] = "x"; }).toThrow(readOnly);
    expect(() => { m["new"] = "x"; }).toThrow(readOnly);
    expect(() => { delete m["note.1"]; }).toThrow(readOnly);
    expect(() => Object.defineProperty(m, "new", { value: "x" })).toThrow(readOnly);
    expect(() => Object.setPrototypeOf(m, {})).toThrow(readOnly);
    expect(() => Object.freeze(m)).toThrow(readOnly);
    expect(() => Object.assign(m, { a: "b" })).toThrow(readOnly);
    expectSameMetadata(m, want, ["new", "a"]);
    // A copy is an ordinary object again.
    const copy: Record<string, string> = { ...m, extra: "y" };
    expect(copy["note.1"]).toBe(want["note.1"]);
    expect(Object.keys(copy)).toHaveLength(60_001);
  });

  test("inspect() of a file with a big header of many metadata keys: the report's metadata reads as the direct parse's", async () => {
    const dir = tmpDir();
    const { json, size } = bigHeader(300, 50_000, (s) => s.replace(`"note.5":`, `"__proto__":`).replace(`"note.6":`, `"17":`));
    expect(json.length).toBeGreaterThan(OFF_THREAD.bytes);
    const want = (await parseHeader(Buffer.from(json), size, "f")).metadata;
    const file = path.join(dir, "big.safetensors");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(size - 8 - json.length)]));
    const report = await inspect(file);
    expect(report.tensors).toHaveLength(300);
    expectSameMetadata(report.metadata, want, ["__proto__", "17", "note.5"]);
    expect(report.metadata["__proto__"]).toBe(want["__proto__"]);
    expect(Object.keys(report.metadata)[0]).toBe("17");
  });

  test("small headers stay on the main thread", async () => {
    const { json, size } = files[0];
    const bytes = Buffer.from(json);
    expect(bytes.length).toBeLessThan(OFF_THREAD.bytes);
    expectSame(await outcome(readHeader(bytes, size, "m.safetensors")), await direct(json, size, "m.safetensors"), "seed");
    expect(bytes.byteLength).toBe(json.length); // not transferred
  });
});

describe("the header worker stops and leaves nothing running", () => {
  test("an abort terminates the worker and rejects with AbortError", async () => {
    const terminate = jest.spyOn(Worker.prototype, "terminate");
    try {
      const { json, size } = bigHeader(60_000, 40_000);
      const ac = new AbortController();
      const p = readHeaderInWorker(json, size, "big.safetensors", ac.signal);
      setTimeout(() => ac.abort(), 20);
      await expect(p).rejects.toBeInstanceOf(AbortError);
      expect(terminate).toHaveBeenCalledTimes(1);
      // The worker did exit: terminate() resolves with its exit code once it has.
      expect(typeof (await terminate.mock.results[0].value)).toBe("number");
    } finally {
      terminate.mockRestore();
    }
  });

  test("a worker that dies without answering: a TaskmergeError naming the file", async () => {
    const threads = require("worker_threads") as typeof import("worker_threads");
    const real = threads.Worker;
    // A thread that exits at once (as one killed for memory would), standing in for the real one.
    const dying = jest.spyOn(threads, "Worker").mockImplementation(() => new real("process.exit(3)", { eval: true }));
    try {
      const { json, size } = bigHeader(2, 60_000);
      await expect(readHeaderInWorker(json, size, "big.safetensors")).rejects.toThrow(
        new TaskmergeError("could not read the header in a worker thread: the header worker exited (code 3) without an answer", "big.safetensors"),
      );
      expect(dying).toHaveBeenCalledTimes(1);
    } finally {
      dying.mockRestore();
    }
  });

  test("an aborted signal starts no worker", async () => {
    const ac = new AbortController();
    ac.abort();
    const { json, size } = bigHeader(2, 60_000);
    await expect(readHeader(json, size, "f", ac.signal)).rejects.toBeInstanceOf(AbortError);
    expect(json.byteLength).toBeGreaterThan(0); // never handed over
  });

  test("SafetensorsFile.open passes its signal on", async () => {
    const dir = tmpDir();
    const { json, size } = bigHeader(60_000, 40_000);
    const file = path.join(dir, "big.safetensors");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(size - 8 - json.length)]));
    const ac = new AbortController();
    const p = SafetensorsFile.open(file, { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await expect(p).rejects.toBeInstanceOf(AbortError);
  });

  test("from dist/: the worker ships in the package, runs, and the process exits once the header is read", () => {
    const packed = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT, encoding: "utf8" });
    expect(packed.status).toBe(0);
    const names = (JSON.parse(packed.stdout)[0].files as { path: string }[]).map((f) => f.path);
    expect(names).toContain("dist/safetensors/header_worker.js");

    const dir = tmpDir();
    const { json, size } = bigHeader(60_000, 40_000, (s) => s.replace(`"note.5":`, `"note\\n5":`));
    const file = path.join(dir, "big.safetensors");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(size - 8 - json.length)]));
    fs.writeFileSync(path.join(dir, "bad.safetensors"), Buffer.concat([len, json.subarray(0, -1), Buffer.from("]"), Buffer.alloc(size - 8 - json.length)]));
    const script = `
      const { SafetensorsFile } = require(${JSON.stringify(path.join(ROOT, "dist", "safetensors", "file.js"))});
      (async () => {
        const f = await SafetensorsFile.open(process.argv[1] + "/big.safetensors");
        console.log(f.tensors.length, Object.keys(f.metadata).length, JSON.stringify(f.metadata["note\\n5"]));
        await f.close();
        await SafetensorsFile.open(process.argv[1] + "/bad.safetensors").catch((e) => console.log(e.name, e.message));
      })();`;
    const r = spawnSync(process.execPath, ["-e", script, dir], { encoding: "utf8", timeout: 60_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0); // it exited by itself: no worker kept it alive
    const [counts, error] = r.stdout.trim().split("\n");
    expect(counts).toBe(`60000 40000 "value 5 é😀"`);
    expect(error).toMatch(/^TaskmergeError invalid safetensors header: not valid JSON: expected ',' or '}' at byte \d+ of the header \(file .*bad\.safetensors, key "layers\.0\.w"\)$/);
  });
});

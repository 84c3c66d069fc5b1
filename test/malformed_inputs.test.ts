/**
 * Hostile and broken inputs through the real CLI: each gives one error line
 * naming the file, exit code 1, and no output at the output path.
 */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, runCli, tmpDir, listTree, writeSafetensors, readSafetensors } from "./helpers/fixtures";
import { encode } from "./helpers/floatref";

/** A file from a literal header object and data bytes (the header is not checked here). */
function rawFile(file: string, header: unknown, data: Buffer, lengthOverride?: bigint): void {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}

const t = (dtype: string, shape: number[], a: number, b: number) => ({ dtype, shape, data_offsets: [a, b] });

/** Each case turns a valid expert file into a broken one and names the error it expects. */
const CASES: [string, (file: string) => void, RegExp][] = [
  ["shorter than 8 bytes", (f) => fs.writeFileSync(f, Buffer.from([1, 2, 3])), /shorter than 8 bytes/],
  ["empty file", (f) => fs.writeFileSync(f, Buffer.alloc(0)), /shorter than 8 bytes/],
  ["header length above 100 MB", (f) => rawFile(f, {}, Buffer.alloc(16), 200n * 1024n * 1024n), /100 MB limit/],
  ["header length past the end", (f) => rawFile(f, {}, Buffer.alloc(16), 4096n), /exceeds the file size/],
  ["header length 2^64-1", (f) => rawFile(f, {}, Buffer.alloc(16), 2n ** 64n - 1n), /exceeds the 100 MB limit/],
  ["header not JSON", (f) => rawFile(f, "{not json", Buffer.alloc(16)), /not valid JSON/],
  ["header a JSON array", (f) => rawFile(f, "[1,2]", Buffer.alloc(16)), /not a JSON object/],
  ["unknown dtype", (f) => rawFile(f, { w: t("F8_E4M3", [4], 0, 4) }, Buffer.alloc(4)), /unknown dtype/],
  ["shape × dtype ≠ byte range", (f) => rawFile(f, { w: t("F32", [3], 0, 16) }, Buffer.alloc(16)), /data_offsets span/],
  ["data past the end (truncated)", (f) => rawFile(f, { w: t("F32", [8], 0, 32) }, Buffer.alloc(20)), /past the end|truncated/],
  ["overlapping ranges", (f) => rawFile(f, { a: t("F32", [4], 0, 16), b: t("F32", [4], 8, 24) }, Buffer.alloc(24)), /overlaps/],
  ["reversed offsets", (f) => rawFile(f, { w: t("F32", [0], 8, 4) }, Buffer.alloc(8)), /reversed/],
  ["negative shape", (f) => rawFile(f, { w: t("F32", [-4], 0, 16) }, Buffer.alloc(16)), /shape/],
  ["fractional offsets", (f) => rawFile(f, { w: t("F32", [4], 0.5, 16) }, Buffer.alloc(16)), /data_offsets/],
  ["shape product overflows", (f) => rawFile(f, { w: t("F32", [2 ** 40, 2 ** 40], 0, 16) }, Buffer.alloc(16)), /larger than the file/],
  ["metadata not strings", (f) => rawFile(f, { __metadata__: { a: 1 } }, Buffer.alloc(0)), /__metadata__/],
];

describe("malformed safetensors give one clear line, exit 1 and no output", () => {
  const dir = tmpDir();
  const zoo = makeZoo(dir, { T: 2, dtype: "F32" });

  test.each(CASES)("%s", async (_name, corrupt, message) => {
    const work = tmpDir();
    const bad = path.join(work, "broken.safetensors");
    corrupt(bad);
    const out = path.join(work, "out.safetensors");
    const r = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", bad, "--method", "average", "--out", out]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(lines[0]).toContain(bad);
    expect(listTree(work)).toEqual(["broken.safetensors"]);
  });

  test("inspect reports the same error", async () => {
    const work = tmpDir();
    const bad = path.join(work, "x.safetensors");
    rawFile(bad, { w: t("F32", [8], 0, 32) }, Buffer.alloc(20));
    const r = await runCli(["inspect", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/past the end|truncated/);
  });
});

describe("inputs that disagree", () => {
  async function expectFailure(args: string[], message: RegExp, work: string, mentions?: string) {
    const before = listTree(work);
    const r = await runCli(args);
    expect(r.code).toBe(1);
    // Progress lines may precede it; the error itself is one line.
    const errors = r.stderr.trim().split("\n").filter((l) => l.startsWith("taskmerge:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(message);
    if (mentions) expect(r.stderr).toContain(mentions);
    expect(listTree(work)).toEqual(before);
  }

  test("an expert missing a key: the error names the key, nothing is written", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 2 });
    const raw = readSafetensors(zoo.experts[1].path);
    delete raw["blocks.0.mlp.fc2.weight"];
    writeSafetensors(zoo.experts[1].path, raw);
    const out = path.join(work, "out");
    await expectFailure(
      ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", zoo.experts[1].path, "--method", "average", "--out", out],
      /blocks\.0\.mlp\.fc2\.weight/,
      work,
      zoo.experts[1].path,
    );
  });

  test("a shape mismatch names the key and both shapes", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 2 });
    const raw = readSafetensors(zoo.experts[0].path);
    raw["blocks.0.norm.weight"] = { dtype: "F32", shape: [9], data: encode(new Array(9).fill(1), "F32") };
    writeSafetensors(zoo.experts[0].path, raw);
    await expectFailure(
      ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", zoo.experts[1].path, "--method", "average", "--out", path.join(work, "o.safetensors")],
      /blocks\.0\.norm\.weight.*\[9\]|\[9\].*blocks\.0\.norm\.weight/,
      work,
    );
  });

  test("NaN in an expert is an error naming the file and key", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 2 });
    const raw = readSafetensors(zoo.experts[1].path);
    const w = raw["blocks.0.mlp.fc1.weight"];
    w.data.writeFloatLE(NaN, 4 * 17);
    writeSafetensors(zoo.experts[1].path, raw);
    await expectFailure(
      ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", zoo.experts[1].path, "--method", "task_arithmetic", "--out", path.join(work, "o")],
      /non-finite.*element 17/,
      work,
      "blocks.0.mlp.fc1.weight",
    );
  });

  test("a shard name escaping the checkpoint directory is refused", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 1, layout: "sharded" });
    const idx = path.join(zoo.experts[0].path, "model.safetensors.index.json");
    const j = JSON.parse(fs.readFileSync(idx, "utf8"));
    const first = Object.keys(j.weight_map)[0];
    fs.copyFileSync(path.join(zoo.experts[0].path, j.weight_map[first]), path.join(work, "outside.safetensors"));
    j.weight_map[first] = "../outside.safetensors";
    fs.writeFileSync(idx, JSON.stringify(j));
    await expectFailure(
      ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "average", "--out", path.join(work, "o")],
      /escapes|outside/,
      work,
    );
  });

  test("a missing shard is an error naming it", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 1, layout: "sharded" });
    fs.rmSync(path.join(zoo.experts[0].path, "model-00002-of-00002.safetensors"));
    await expectFailure(
      ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "average", "--out", path.join(work, "o")],
      /model-00002-of-00002/,
      work,
    );
  });

  test("a path that does not exist", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 1 });
    await expectFailure(
      ["merge", "--base", zoo.base.path, "--expert", path.join(work, "nope.safetensors"), "--method", "average", "--out", path.join(work, "o")],
      /nope\.safetensors/,
      work,
    );
  });

  test("usage errors exit 2", async () => {
    const work = tmpDir();
    const zoo = makeZoo(work, { T: 1 });
    const r = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "no_such_method", "--out", path.join(work, "o")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown method 'no_such_method'/);
    const r2 = await runCli(["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "task_arithmetic", "--lambda", "abc", "--out", path.join(work, "o")]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/lambda/);
  });
});

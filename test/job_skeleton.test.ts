/**
 * The pieces every command runs on: the read-ahead loop (order, one read in
 * flight ahead, the hook after the last read, abort), the job skeleton
 * (output claimed before the job runs, everything closed, then an
 * uncommitted output removed, then the lock released) and the staged output
 * (commit puts it in place, abort removes it, abort after commit does nothing).
 */
import * as fs from "fs";
import * as path from "path";
import { readAhead, readChunks } from "../lib/engine/read_ahead";
import { runJob } from "../lib/job/run";
import { OutputSlot } from "../lib/out_path/slot";
import { PositionalWriter, SafetensorsWriter, encodeHeader } from "../lib/safetensors/writer";
import { AbortError } from "../lib/errors";
import { tmpDir } from "./helpers/fixtures";

const tick = () => new Promise<void>((r) => setImmediate(r));

describe("readAhead", () => {
  test("uses items in order while reading exactly one ahead; the hook runs right after the last read starts", async () => {
    const log: string[] = [];
    let inFlight = 0;
    let most = 0;
    await readAhead(
      4,
      async (i) => {
        log.push(`read ${i}`);
        inFlight++;
        most = Math.max(most, inFlight);
        await tick();
        inFlight--;
        return i * 10;
      },
      async (v, i) => {
        log.push(`use ${i}=${v}`);
        await tick();
      },
      { afterLastRead: () => log.push("after last") },
    );
    expect(log).toEqual(["read 0", "read 1", "use 0=0", "read 2", "use 1=10", "read 3", "after last", "use 2=20", "use 3=30"]);
    expect(most).toBe(1);
  });

  test("one item: the hook runs right after its read starts; none: nothing is read", async () => {
    const log: string[] = [];
    await readAhead(1, async () => void log.push("read"), async () => void log.push("use"), { afterLastRead: () => log.push("after") });
    expect(log).toEqual(["read", "after", "use"]);
    await readAhead(0, async () => void log.push("never"), async () => void log.push("never"), { afterLastRead: () => log.push("never") });
    expect(log).toHaveLength(3);
  });

  test("an abort stops before the next use; a failing read ahead is reported when reached, not as unhandled", async () => {
    const ac = new AbortController();
    const used: number[] = [];
    await expect(readAhead(5, async (i) => i, async (i) => {
      used.push(i);
      if (i === 1) ac.abort();
    }, { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    expect(used).toEqual([0, 1]);
    // Item 1's read fails while item 0 is used and then throws: the use's error wins.
    await expect(readAhead(3, async (i) => (i === 1 ? Promise.reject(new Error("read 1")) : i), async () => {
      await tick();
      throw new Error("use 0");
    })).rejects.toThrow("use 0");
    await expect(readAhead(3, async (i) => (i === 2 ? Promise.reject(new Error("read 2")) : i), async () => undefined)).rejects.toThrow("read 2");
  });

  test("readChunks covers a tensor in steps, the last one short", async () => {
    const seen: [number, number][] = [];
    await readChunks(10, 4, async (offset, n) => [offset, n] as [number, number], async (c, offset, n) => {
      expect(c).toEqual([offset, n]);
      seen.push(c);
    });
    expect(seen).toEqual([[0, 4], [4, 4], [8, 2]]);
  });
});

describe("runJob", () => {
  test("closes what the job opened (last first), then removes the uncommitted output, then releases the lock", async () => {
    const dir = tmpDir();
    const out = path.join(dir, "out.safetensors");
    const log: string[] = [];
    let staged = "";
    await expect(runJob({ named: [], out: { path: out, kind: { kind: "file" } } }, async (job) => {
      job.track({ close: async () => void log.push("close input") });
      const s = job.output(await job.slot.stage("file"));
      staged = s.path;
      fs.writeFileSync(staged, "partial");
      job.track({ close: async () => void log.push(`close writer (temporary ${fs.existsSync(staged) ? "there" : "gone"})`) });
      throw new Error("pass failed");
    })).rejects.toThrow("pass failed");
    expect(log).toEqual(["close writer (temporary there)", "close input"]);
    expect(fs.existsSync(staged)).toBe(false);
    expect(fs.readdirSync(dir)).toEqual([]); // the lock is gone too
  });

  test("a committed output stays; a second job can claim the same path afterwards", async () => {
    const dir = tmpDir();
    const out = path.join(dir, "bundle");
    const kind = { kind: "dir" as const, what: "bundle", marker: "m.json", files: ["m.json"] };
    for (const text of ["one", "two"]) {
      const r = await runJob({ named: [], out: { path: out, kind } }, async (job) => {
        const s = job.output(await job.slot.stage("dir"));
        fs.writeFileSync(path.join(s.path, "m.json"), text);
        await s.commit();
        return job.slot.out;
      });
      expect(r).toBe(out);
      expect(fs.readFileSync(path.join(out, "m.json"), "utf8")).toBe(text);
    }
    expect(fs.readdirSync(dir)).toEqual(["bundle"]);
  });

  test("an input at the output path is refused before the job runs; a job without output has no slot", async () => {
    const dir = tmpDir();
    const p = path.join(dir, "x.safetensors");
    fs.writeFileSync(p, "");
    let ran = false;
    await expect(runJob({ named: [p], out: { path: p, kind: { kind: "file" } } }, async () => void (ran = true))).rejects.toThrow();
    expect(ran).toBe(false);
    await expect(runJob({ named: [p] }, async (job) => job.slot)).rejects.toThrow(/writes no output/);
  });
});

describe("the file writer", () => {
  test("appending and positional writes give the same file: header, then each tensor's data in header order", async () => {
    const dir = tmpDir();
    const tensors = [{ key: "a", dtype: "F32" as const, shape: [3] }, { key: "e", dtype: "F32" as const, shape: [0] }, { key: "b", dtype: "U8" as const, shape: [5] }];
    const a = Buffer.from(Float32Array.of(1, 2, 3).buffer);
    const b = Buffer.from([9, 8, 7, 6, 5]);
    const seq = await SafetensorsWriter.create(path.join(dir, "s"), path.join(dir, "s.part"), tensors, { format: "pt" });
    await seq.write("a", a.subarray(0, 4));
    await seq.write("a", a.subarray(4));
    await seq.write("b", b);
    await seq.finish();
    const pos = await PositionalWriter.create(path.join(dir, "p"), path.join(dir, "p.part"), tensors, { format: "pt" });
    await pos.write("b", 2, b.subarray(2));
    await pos.write("a", 0, a);
    await pos.write("b", 0, b.subarray(0, 2));
    await pos.finish();
    const want = Buffer.concat([encodeHeader(tensors, { format: "pt" }), a, b]);
    expect(fs.readFileSync(path.join(dir, "s")).equals(want)).toBe(true);
    expect(fs.readFileSync(path.join(dir, "p")).equals(want)).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(["p", "s"]);
  });

  test("an incomplete file is refused at finish; close removes the temporary", async () => {
    const dir = tmpDir();
    const w = await SafetensorsWriter.create(path.join(dir, "s"), path.join(dir, "s.part"), [{ key: "a", dtype: "U8", shape: [2] }]);
    await w.write("a", Buffer.from([1]));
    await expect(w.finish()).rejects.toThrow(/incomplete/);
    await w.close();
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

test("a staged output: abort removes it and is a no-op after commit", async () => {
  const dir = tmpDir();
  const out = path.join(dir, "o.safetensors");
  const slot = await OutputSlot.claim(out, { kind: "file" });
  try {
    const first = await slot.stage("file");
    fs.writeFileSync(first.path, "x");
    await first.abort();
    expect(fs.existsSync(first.path)).toBe(false);
    const second = await slot.stage("file");
    fs.writeFileSync(second.path, "y");
    await second.commit();
    await second.abort();
    expect(fs.readFileSync(out, "utf8")).toBe("y");
  } finally {
    await slot.release();
  }
});

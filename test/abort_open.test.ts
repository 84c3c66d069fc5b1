/**
 * A job's AbortSignal reaches the header reading of its inputs: an abort while
 * a large header (≥ 1 MiB, read in a worker thread: lib/safetensors/
 * header_thread.ts) is being parsed terminates that worker before it answers,
 * the job rejects with AbortError, and nothing is written.
 */
import * as fs from "fs";
import * as path from "path";
import type { Worker as WorkerType } from "worker_threads";
import { merge } from "../lib/api/merge";
import { compress } from "../lib/api/compress";
import { extract } from "../lib/api/extract";
import { AbortError } from "../lib/errors";
import { OFF_THREAD } from "../lib/safetensors/header_thread";
import { listTree, makeZoo, readHeader, readSafetensors, tmpDir, writeSafetensors } from "./helpers/fixtures";

/** A zoo whose base's header carries enough metadata to be read in a worker. */
function zooWithLargeBaseHeader() {
  const dir = tmpDir();
  const zoo = makeZoo(dir, { T: 2 });
  const metadata: Record<string, string> = {};
  for (let i = 0; i < 120_000; i++) metadata[`note.${i}`] = `value ${i} of a header large enough for the worker path`;
  writeSafetensors(zoo.base.path, readSafetensors(zoo.base.path), metadata);
  const headerBytes = Number(fs.readFileSync(zoo.base.path).readBigUInt64LE(0));
  expect(headerBytes).toBeGreaterThanOrEqual(OFF_THREAD.bytes);
  expect(Object.keys(readHeader(zoo.base.path).__metadata__)).toHaveLength(120_000);
  return { dir, zoo };
}

/**
 * Runs `job` with a signal that is aborted as soon as a header worker starts;
 * returns the job's rejection, how long it took after the abort, and what the
 * workers did (answered, terminated).
 */
async function abortInHeaderWorker(job: (signal: AbortSignal) => Promise<unknown>) {
  const threads = require("worker_threads") as typeof import("worker_threads");
  const Real = threads.Worker;
  const started: WorkerType[] = [];
  let answered = 0;
  let abortedAt = 0;
  const ac = new AbortController();
  const spawn = jest.spyOn(threads, "Worker").mockImplementation((...args: ConstructorParameters<typeof Real>) => {
    const w = new Real(...args);
    started.push(w);
    w.on("message", () => answered++);
    setImmediate(() => {
      abortedAt = Date.now();
      ac.abort();
    });
    return w;
  });
  const terminate = jest.spyOn(Real.prototype, "terminate");
  try {
    const error = await job(ac.signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    const afterAbortMs = Date.now() - abortedAt;
    const exitCodes = await Promise.all(terminate.mock.results.map((r) => r.value));
    return { error, afterAbortMs, started: started.length, answered, terminated: terminate.mock.calls.length, exitCodes };
  } finally {
    spawn.mockRestore();
    terminate.mockRestore();
  }
}

function expectStoppedInWorker(r: Awaited<ReturnType<typeof abortInHeaderWorker>>): void {
  expect(r.error).toBeInstanceOf(AbortError);
  expect(r.started).toBe(1);
  // Terminated before it answered: without the signal the parse would run to its end.
  expect(r.answered).toBe(0);
  expect(r.terminated).toBe(1);
  expect(typeof r.exitCodes[0]).toBe("number");
  expect(r.afterAbortMs).toBeLessThan(2000);
}

describe("an abort while a large input header is parsed in a worker", () => {
  test("merge: rejects with AbortError, terminates the worker, writes nothing", async () => {
    const { dir, zoo } = zooWithLargeBaseHeader();
    const before = listTree(dir);
    const out = path.join(dir, "merged.safetensors");
    const r = await abortInHeaderWorker((signal) =>
      merge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "task_arithmetic", out, signal }),
    );
    expectStoppedInWorker(r);
    expect(fs.existsSync(out)).toBe(false);
    expect(listTree(dir)).toEqual(before);
  });

  test("compress: rejects with AbortError, terminates the worker, writes nothing", async () => {
    const { dir, zoo } = zooWithLargeBaseHeader();
    const before = listTree(dir);
    const out = path.join(dir, "bundle");
    const r = await abortInHeaderWorker((signal) => compress({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), out, signal }));
    expectStoppedInWorker(r);
    expect(fs.existsSync(out)).toBe(false);
    expect(listTree(dir)).toEqual(before);
  });

  test("extract: rejects with AbortError, terminates the worker, writes nothing", async () => {
    const { dir, zoo } = zooWithLargeBaseHeader();
    const bundle = path.join(dir, "bundle");
    await compress({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), out: bundle });
    const before = listTree(dir);
    const out = path.join(dir, "rebuilt.safetensors");
    const r = await abortInHeaderWorker((signal) => extract({ bundle, task: "task0", base: zoo.base.path, out, signal }));
    expectStoppedInWorker(r);
    expect(fs.existsSync(out)).toBe(false);
    expect(listTree(dir)).toEqual(before);
  });
});

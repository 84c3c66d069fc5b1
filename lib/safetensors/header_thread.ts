/**
 * Where a safetensors header is read. A small one (the common case: a model's
 * header is tens of kilobytes) on the main thread, in time slices. One of
 * OFF_THREAD.bytes or more in a worker thread running the same parser: its
 * 10^6 intermediate objects then live and die on the worker's heap (on the
 * main heap their mark-compact paused the event loop for ~100 ms), and the
 * main thread only unpacks a compact result, in slices (header_pack.ts).
 *
 * The threshold, 1 MiB: a worker costs ~30 ms of start-up (off the main
 * thread), less than parsing 1 MiB takes here, and below 1 MiB the main
 * thread's garbage stays a few megabytes, too little for a long pause.
 */
import * as path from "path";
import { Worker } from "worker_threads";
import { hashHeader, Header, parseHeader } from "./header";
import { PackedHeader, unpackHeader } from "./header_pack";
import { AbortError, TaskmergeError, throwIfAborted } from "../errors";

export const OFF_THREAD = { bytes: 1 << 20 };

export interface ParsedHeader {
  header: Header;
  /** sha256 of the header bytes (hex): hashed where they are parsed, so a huge one does not block either. */
  hash: string;
}

/** What the worker gets (workerData) and answers. */
export interface HeaderJob {
  bytes: Uint8Array;
  fileSize: number;
  file: string;
}
export type WorkerAnswer =
  | { ok: true; packed: PackedHeader; hash: string }
  | { ok: false; reason: string; file?: string; key?: string }
  | { ok: false; bug: string };

/**
 * Parses and checks the header bytes `json` (after the length prefix) of a
 * file of `fileSize` bytes, here or in a worker by size. A large `json` is
 * handed to the worker (transferred): the caller must not use it afterwards.
 */
export async function readHeader(json: Buffer, fileSize: number, file: string, signal?: AbortSignal): Promise<ParsedHeader> {
  throwIfAborted(signal);
  if (json.length < OFF_THREAD.bytes) return { header: await parseHeader(json, fileSize, file), hash: hashHeader(json) };
  return readHeaderInWorker(json, fileSize, file, signal);
}

/** The worker path on its own (readHeader picks it above the threshold; tests call it on any header). */
export async function readHeaderInWorker(json: Buffer, fileSize: number, file: string, signal?: AbortSignal): Promise<ParsedHeader> {
  throwIfAborted(signal);
  const answer = await runWorker({ bytes: ownBytes(json), fileSize, file }, signal).catch((e: Error) => {
    // The thread itself failed (could not start, ran out of memory): say which file it was reading.
    throw e instanceof AbortError ? e : new TaskmergeError(`could not read the header in a worker thread: ${e.message}`, file);
  });
  if (answer.ok) return { header: await unpackHeader(answer.packed), hash: answer.hash };
  if ("bug" in answer) throw new Error(`the header worker failed on ${file}: ${answer.bug}`);
  throw new TaskmergeError(answer.reason, answer.file, answer.key);
}

/** One worker for one header: it answers once; it is terminated on an answer, an error, or an abort. */
function runWorker(job: HeaderJob, signal?: AbortSignal): Promise<WorkerAnswer> {
  return new Promise((resolve, reject) => {
    const worker = startWorker(job);
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      void worker.terminate();
      fn();
    };
    const onAbort = () => settle(() => reject(new AbortError()));
    signal?.addEventListener("abort", onAbort, { once: true });
    worker.once("message", (m: WorkerAnswer) => settle(() => resolve(m)));
    worker.once("error", (e) => settle(() => reject(e)));
    worker.once("exit", (code) => settle(() => reject(new Error(`the header worker exited (code ${code}) without an answer`))));
  });
}

/** The bytes in an ArrayBuffer of their own, so it can be transferred rather than copied. */
function ownBytes(b: Buffer): Uint8Array {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !(b.buffer instanceof SharedArrayBuffer)) return b;
  return new Uint8Array(b); // a view into a shared pool (small buffers only): copy
}

const ENTRY = path.join(__dirname, `header_worker${path.extname(__filename)}`);

/**
 * Compiled (dist/), the worker runs header_worker.js. From the TypeScript
 * sources (the tests run them through ts-jest) there is no .js to run, so the
 * worker first installs a loader that compiles each .ts file as it is
 * required, with the typescript package those runs already have.
 */
const TS_LOADER = `
const { workerData } = require("worker_threads");
const ts = require(workerData.typescript);
const fs = require("fs");
require.extensions[".ts"] = (m, f) => m._compile(ts.transpileModule(fs.readFileSync(f, "utf8"), {
  fileName: f, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
}).outputText, f);
require(workerData.entry);
`;

function startWorker(job: HeaderJob): Worker {
  const transferList = [job.bytes.buffer as ArrayBuffer];
  if (path.extname(ENTRY) !== ".ts") return new Worker(ENTRY, { workerData: job, transferList });
  const workerData = { ...job, entry: ENTRY, typescript: require.resolve("typescript") };
  return new Worker(TS_LOADER, { eval: true, workerData, transferList });
}

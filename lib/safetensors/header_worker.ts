/**
 * The header worker's entry (started by header_thread.ts): reads one header
 * with the same parser as the main thread (parseHeader), hashes its bytes,
 * and answers once, with the result packed into a few transferred buffers
 * or the error's parts, then ends.
 */
import { parentPort, workerData } from "worker_threads";
import { hashHeader, parseHeader } from "./header";
import { packHeader, packedTransferList } from "./header_pack";
import { TaskmergeError } from "../errors";
import type { HeaderJob, WorkerAnswer } from "./header_thread";

async function answer(job: HeaderJob): Promise<void> {
  const bytes = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
  let reply: WorkerAnswer;
  let transfer: ArrayBuffer[] = [];
  try {
    const packed = packHeader(await parseHeader(bytes, job.fileSize, job.file));
    reply = { ok: true, packed, hash: hashHeader(bytes) };
    transfer = packedTransferList(packed);
  } catch (e) {
    reply = e instanceof TaskmergeError
      ? { ok: false, reason: e.reason, file: e.file, key: e.key }
      : { ok: false, bug: String((e as Error)?.stack ?? e) };
  }
  parentPort!.postMessage(reply, transfer);
}

if (!parentPort) throw new Error("header_worker runs as a worker thread, started by header_thread.ts");
void answer(workerData as HeaderJob);

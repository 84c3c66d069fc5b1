/**
 * Parses and validates a safetensors header by the format's own rules: a
 * length prefix of at most 100,000,000, a strict JSON object (header_json.ts),
 * known dtypes, shape × dtype size equal to each tensor's byte range, and
 * tensors that cover the data section exactly: contiguous from byte 0 to the
 * end of the file, no gaps, no overlaps. Every size and offset is treated as
 * hostile: checked against the file size and for overflow before anything is
 * allocated from it.
 */
import { createHash } from "crypto";
import { DTYPE_SIZE, DType, isDType } from "./dtypes";
import { HeaderJsonError, readHeaderJson, RawHeader } from "./header_json";
import { quote, TaskmergeError } from "../errors";
import { TimeSlicer } from "../time_slice";

/** The format's limit on the header length (safetensors' MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  key: string;
  dtype: DType;
  shape: number[];
  numel: number;
  nbytes: number;
  /** Absolute byte offset of the data in the file. */
  offset: number;
}

export interface Header {
  headerBytes: number;
  dataStart: number;
  tensors: TensorInfo[]; // in data order
  /** A null-prototype object: keys such as `__proto__` are kept as they are. */
  metadata: Record<string, string>;
}

/** Validates the 8-byte length prefix; returns the header length. */
export function headerLength(prefix: Buffer, fileSize: number, file: string): number {
  if (fileSize < 8 || prefix.length < 8) throw new TaskmergeError("not a safetensors file: shorter than 8 bytes", file);
  const n = prefix.readBigUInt64LE(0);
  // The first bytes of some other kind of file: say so, without echoing them.
  if (n > BigInt(MAX_HEADER_BYTES)) throw new TaskmergeError("not a safetensors file: its header length exceeds the 100 MB limit", file);
  if (n > BigInt(fileSize - 8))
    throw new TaskmergeError(`not a safetensors file (or truncated): its header length exceeds the file size ${fileSize}`, file);
  if (n < 2n) throw new TaskmergeError("not a safetensors file: its header is empty", file);
  return Number(n);
}

/** sha256 of the raw header bytes (hex): identifies a file's layout cheaply. */
export function hashHeader(json: Uint8Array): string {
  return createHash("sha256").update(json).digest("hex");
}

/**
 * Parses the header bytes (after the prefix) of a file of `fileSize` bytes;
 * gives the event loop turns while it works. The one parser: header_thread.ts
 * runs it here for small headers and in a worker for large ones.
 */
export async function parseHeader(json: Buffer, fileSize: number, file: string): Promise<Header> {
  const slicer = new TimeSlicer();
  let raw: RawHeader;
  try {
    raw = await readHeaderJson(json, slicer);
  } catch (e) {
    if (!(e instanceof HeaderJsonError)) throw e;
    const what = e.notSafetensors ? `not a safetensors file: ${e.message}` : `invalid safetensors header: ${e.message}`;
    throw new TaskmergeError(what, file, e.key);
  }
  return checkLayout(raw, json.length, fileSize, file, slicer);
}

/** Dtypes, shapes and byte ranges: the data section is covered exactly, in order. */
export async function checkLayout(
  raw: RawHeader, headerBytes: number, fileSize: number, file: string, slicer = new TimeSlicer(),
): Promise<Header> {
  const dataStart = 8 + headerBytes;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = Object.create(null);
  let step = 0;
  const due = () => (++step & 1023) === 0 && slicer.due();
  for (const [k, v] of raw.metadata ?? []) {
    metadata[k] = v;
    if (due()) await slicer.turn();
  }

  const tensors: (TensorInfo & { begin: number; end: number })[] = [];
  for (const e of raw.tensors) {
    const { key, dtype, shape, begin, end } = e;
    if (!isDType(dtype)) throw new TaskmergeError(`unknown dtype ${quote(dtype)}`, file, key);
    if (begin > end) throw new TaskmergeError(`data_offsets [${begin}, ${end}] are reversed`, file, key);
    if (end > dataSize)
      throw new TaskmergeError(`data_offsets end ${end} lies past the end of the data (${dataSize} bytes; file truncated?)`, file, key);
    // Shape product with overflow checks: it must not exceed the byte range.
    let numel = 1;
    for (const d of shape) {
      numel *= d;
      if (!Number.isSafeInteger(numel) || numel * DTYPE_SIZE[dtype] > dataSize)
        throw new TaskmergeError(`shape [${shape.join(", ")}] is larger than the file`, file, key);
    }
    const nbytes = numel * DTYPE_SIZE[dtype];
    if (nbytes !== end - begin)
      throw new TaskmergeError(`shape [${shape.join(", ")}] × ${dtype} is ${nbytes} bytes but data_offsets span ${end - begin}`, file, key);
    tensors.push({ key, dtype, shape, numel, nbytes, offset: dataStart + begin, begin, end });
    if (due()) await slicer.turn();
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: string | undefined;
  for (const t of tensors) {
    if (t.begin < covered) throw new TaskmergeError(`data of this tensor overlaps that of ${quote(prev!)}`, file, t.key);
    if (t.begin > covered)
      throw new TaskmergeError(`bytes ${covered}..${t.begin} of the data section belong to no tensor (a gap before this one)`, file, t.key);
    covered = t.end;
    prev = t.key;
    if (due()) await slicer.turn();
  }
  if (covered !== dataSize)
    throw new TaskmergeError(
      `the data section holds ${dataSize} bytes but the tensors cover ${covered} (a wrong header length, or bytes appended?)`,
      file,
    );
  const infos: TensorInfo[] = [];
  for (const t of tensors) {
    infos.push({ key: t.key, dtype: t.dtype, shape: t.shape, numel: t.numel, nbytes: t.nbytes, offset: t.offset });
    if (due()) await slicer.turn();
  }
  return { headerBytes, dataStart, tensors: infos, metadata };
}

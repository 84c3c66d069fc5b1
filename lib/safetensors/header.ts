/**
 * Parses and validates a safetensors header. Every size and offset in a file
 * is treated as hostile: checked against the file size and for overflow
 * before anything is allocated from it.
 */
import { DTYPE_SIZE, DType, isDType } from "./dtypes";
import { TaskmergeError } from "../errors";

export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

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
  metadata: Record<string, string>;
}

/** Validates the 8-byte length prefix; returns the header length. */
export function headerLength(prefix: Buffer, fileSize: number, file: string): number {
  if (fileSize < 8 || prefix.length < 8) throw new TaskmergeError("not a safetensors file: shorter than 8 bytes", file);
  const n = prefix.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new TaskmergeError(`safetensors header length ${n} exceeds the 100 MB limit`, file);
  if (n > BigInt(fileSize - 8)) throw new TaskmergeError(`safetensors header length ${n} exceeds the file size ${fileSize}`, file);
  if (n < 2n) throw new TaskmergeError("safetensors header is empty", file);
  return Number(n);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

export function parseHeader(json: Buffer, fileSize: number, file: string): Header {
  const headerBytes = json.length;
  const dataStart = 8 + headerBytes;
  const dataSize = fileSize - dataStart;
  let obj: unknown;
  try {
    obj = JSON.parse(json.toString("utf8"));
  } catch (e) {
    throw new TaskmergeError(`safetensors header is not valid JSON: ${(e as Error).message}`, file);
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new TaskmergeError("safetensors header is not a JSON object", file);

  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [key, v] of Object.entries(obj as Record<string, unknown>)) {
    if (key === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v))
        throw new TaskmergeError("__metadata__ is not an object", file);
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== "string") throw new TaskmergeError(`__metadata__ value '${mk}' is not a string`, file);
        metadata[mk] = mv;
      }
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) throw new TaskmergeError("tensor entry is not an object", file, key);
    if (!isDType(e.dtype)) throw new TaskmergeError(`unknown dtype ${JSON.stringify(e.dtype)}`, file, key);
    if (!Array.isArray(e.shape) || !e.shape.every(isNonNegInt))
      throw new TaskmergeError("shape is not a list of non-negative integers", file, key);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isNonNegInt(off[0]) || !isNonNegInt(off[1]))
      throw new TaskmergeError("data_offsets is not a pair of non-negative integers", file, key);
    const [begin, end] = off as [number, number];
    if (begin > end) throw new TaskmergeError(`data_offsets [${begin}, ${end}] are reversed`, file, key);
    if (end > dataSize)
      throw new TaskmergeError(`data_offsets end ${end} lies past the end of the data (${dataSize} bytes; file truncated?)`, file, key);
    // Shape product with overflow checks: it must not exceed the byte range.
    let numel = 1;
    for (const d of e.shape as number[]) {
      numel *= d;
      if (!Number.isSafeInteger(numel) || numel * DTYPE_SIZE[e.dtype] > dataSize)
        throw new TaskmergeError(`shape [${(e.shape as number[]).join(", ")}] is larger than the file`, file, key);
    }
    const nbytes = numel * DTYPE_SIZE[e.dtype];
    if (nbytes !== end - begin)
      throw new TaskmergeError(
        `shape [${(e.shape as number[]).join(", ")}] × ${e.dtype} is ${nbytes} bytes but data_offsets span ${end - begin}`,
        file,
        key,
      );
    tensors.push({ key, dtype: e.dtype, shape: e.shape as number[], numel, nbytes, offset: dataStart + begin });
  }
  tensors.sort((a, b) => a.offset - b.offset || a.nbytes - b.nbytes);
  for (let i = 1; i < tensors.length; i++) {
    const prev = tensors[i - 1];
    if (tensors[i].offset < prev.offset + prev.nbytes)
      throw new TaskmergeError(`data of '${tensors[i].key}' overlaps '${prev.key}'`, file, tensors[i].key);
  }
  return { headerBytes, dataStart, tensors, metadata };
}

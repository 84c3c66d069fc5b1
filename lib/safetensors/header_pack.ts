/**
 * A checked Header as a handful of flat arrays and two strings, for the trip
 * from the header worker (header_thread.ts) to the main thread: a few
 * transfers instead of a structured clone of 10^6 small objects, so the main
 * heap never holds the parser's intermediates. Unpacking rebuilds the Header
 * in time slices, one entry at a time, so no step on the main thread is long.
 */
import { DTYPE_SIZE, DType } from "./dtypes";
import { Header, TensorInfo } from "./header";
import { TimeSlicer } from "../time_slice";

const DTYPES = Object.keys(DTYPE_SIZE) as DType[];
const DTYPE_INDEX = new Map(DTYPES.map((d, i) => [d, i]));

export interface PackedHeader {
  headerBytes: number;
  dataStart: number;
  /** Every tensor key, in data order, joined; keyEnds[i] is where key i ends (UTF-16 units). */
  keys: string;
  keyEnds: Uint32Array;
  /** Index into the dtype list of dtypes.ts. */
  dtypes: Uint8Array;
  /** Shapes joined; ranks[i] dimensions each. */
  ranks: Uint8Array;
  dims: Float64Array;
  offsets: Float64Array;
  /** Metadata keys and values, alternating and joined; metaEnds[2i] ends key i, metaEnds[2i + 1] its value. */
  meta: string;
  metaEnds: Uint32Array;
}

export function packHeader(h: Header): PackedHeader {
  const n = h.tensors.length;
  const keyEnds = new Uint32Array(n);
  const dtypes = new Uint8Array(n);
  const ranks = new Uint8Array(n);
  const offsets = new Float64Array(n);
  const dims = new Float64Array(h.tensors.reduce((s, t) => s + t.shape.length, 0));
  const keys: string[] = [];
  let keyEnd = 0;
  let d = 0;
  for (const [i, t] of h.tensors.entries()) {
    keys.push(t.key);
    keyEnds[i] = keyEnd += t.key.length;
    dtypes[i] = DTYPE_INDEX.get(t.dtype)!;
    ranks[i] = t.shape.length;
    for (const x of t.shape) dims[d++] = x;
    offsets[i] = t.offset;
  }
  const metaKeys = Object.keys(h.metadata);
  const metaEnds = new Uint32Array(2 * metaKeys.length);
  const meta: string[] = [];
  let metaEnd = 0;
  for (const [i, k] of metaKeys.entries()) {
    const v = h.metadata[k];
    meta.push(k, v);
    metaEnds[2 * i] = metaEnd += k.length;
    metaEnds[2 * i + 1] = metaEnd += v.length;
  }
  return {
    headerBytes: h.headerBytes, dataStart: h.dataStart,
    keys: keys.join(""), keyEnds, dtypes, ranks, dims, offsets,
    meta: meta.join(""), metaEnds,
  };
}

/** The buffers to transfer (not copy) with a PackedHeader. */
export function packedTransferList(p: PackedHeader): ArrayBuffer[] {
  return [p.keyEnds, p.dtypes, p.ranks, p.dims, p.offsets, p.metaEnds].map((a) => a.buffer as ArrayBuffer);
}

/** The Header again, exactly as checkLayout built it (numel and nbytes recomputed the same way). */
export async function unpackHeader(p: PackedHeader, slicer = new TimeSlicer()): Promise<Header> {
  let step = 0;
  const due = () => (++step & 1023) === 0 && slicer.due();
  const metadata: Record<string, string> = Object.create(null);
  for (let i = 0, at = 0; i < p.metaEnds.length; i += 2) {
    const kEnd = p.metaEnds[i], vEnd = p.metaEnds[i + 1];
    metadata[p.meta.slice(at, kEnd)] = p.meta.slice(kEnd, vEnd);
    at = vEnd;
    if (due()) await slicer.turn();
  }
  const tensors: TensorInfo[] = [];
  for (let i = 0, at = 0, d = 0; i < p.keyEnds.length; i++) {
    const dtype = DTYPES[p.dtypes[i]];
    const shape: number[] = [];
    let numel = 1;
    for (let r = p.ranks[i]; r > 0; r--) {
      const x = p.dims[d++];
      shape.push(x);
      numel *= x;
    }
    tensors.push({ key: p.keys.slice(at, p.keyEnds[i]), dtype, shape, numel, nbytes: numel * DTYPE_SIZE[dtype], offset: p.offsets[i] });
    at = p.keyEnds[i];
    if (due()) await slicer.turn();
  }
  return { headerBytes: p.headerBytes, dataStart: p.dataStart, tensors, metadata };
}

/**
 * A checked Header as a handful of flat arrays and a string, for the trip
 * from the header worker (header_thread.ts) to the main thread: a few
 * transfers instead of a structured clone of 10^6 small objects, so the main
 * heap never holds the parser's intermediates. Unpacking rebuilds the tensor
 * list in time slices, one entry at a time, so no step on the main thread is
 * long; the metadata is not rebuilt at all but read through a view over the
 * packed code units (metadata_view.ts).
 *
 * Every worker-read header gets the view, whatever its key count: the worker
 * only reads headers of 1 MiB or more, where the view costs nothing up front
 * and an object could cost a long step, and one representation per path
 * keeps a single way for the metadata to come back.
 */
import { DTYPE_SIZE, DType } from "./dtypes";
import { Header, TensorInfo } from "./header";
import { buildMetaIndex, metadataView, toUnits } from "./metadata_view";
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
  /** Metadata keys and values, alternating and joined, as UTF-16 code units; metaEnds[2i] ends key i, metaEnds[2i + 1] its value. */
  meta: Uint16Array;
  metaEnds: Uint32Array;
  /** The metadata keys' hash table (buildMetaIndex of metadata_view.ts). */
  metaIndex: Int32Array;
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
  const units = toUnits(meta, metaEnd);
  return {
    headerBytes: h.headerBytes, dataStart: h.dataStart,
    keys: keys.join(""), keyEnds, dtypes, ranks, dims, offsets,
    meta: units, metaEnds, metaIndex: buildMetaIndex(units, metaEnds),
  };
}

/** The buffers to transfer (not copy) with a PackedHeader. */
export function packedTransferList(p: PackedHeader): ArrayBuffer[] {
  return [p.keyEnds, p.dtypes, p.ranks, p.dims, p.offsets, p.meta, p.metaEnds, p.metaIndex].map((a) => a.buffer as ArrayBuffer);
}

/**
 * The Header again, as checkLayout built it (numel and nbytes recomputed the
 * same way), its metadata a read-only view that reads as the object did.
 */
export async function unpackHeader(p: PackedHeader, slicer = new TimeSlicer()): Promise<Header> {
  let step = 0;
  const due = () => (++step & 1023) === 0 && slicer.due();
  const metadata = metadataView(p.meta, p.metaEnds, p.metaIndex);
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

/**
 * A worker-read header's `__metadata__` as a read-only view over the packed
 * keys and values (header_pack.ts), never one JS object of all its entries.
 * Building such an object of 10^5+ keys on the main thread blocks the event loop in
 * steps no slicing can split: V8 grows the object's dictionary in one go
 * (~100 ms at 350,000 keys on a loaded machine), and its entries fill the heap.
 *
 * The view answers from the packed data: the keys and values as UTF-16 code
 * units in one transferred Uint16Array (not a string: a structured clone
 * copies a 16-million-character string in one 13 ms step), with their end
 * offsets, in the order Object.keys gave in the worker (integer-like keys
 * ascending, then header order), plus an open-addressing hash table of key
 * indices built in the worker (buildMetaIndex); strings are made per read.
 * Reads behave as on the plain null-prototype object the main-thread path
 * builds: `m[k]`, `k in m`, Object.keys/entries, JSON.stringify, for-in,
 * spread, hasOwnProperty, no prototype. Writes (set, define, delete,
 * preventExtensions, setPrototypeOf) throw a TypeError: the metadata is the
 * file's; copy it (`{ ...m }`) to edit.
 */
import { inspect } from "util";

/** Slots of the hash table for `n` keys: a power of two, at most half full. */
function tableSize(n: number): number {
  let size = 8;
  while (size < 2 * n) size *= 2;
  return size;
}

/** FNV-1a over UTF-16 code units: units[begin, end). */
function hashUnits(units: Uint16Array, begin: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = begin; i < end; i++) h = Math.imul(h ^ units[i], 0x01000193);
  return h >>> 0;
}

/** The same hash of a string's code units. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The joined strings' code units, for packing. */
export function toUnits(parts: string[], total: number): Uint16Array {
  const units = new Uint16Array(total);
  let at = 0;
  for (const p of parts) for (let i = 0; i < p.length; i++) units[at++] = p.charCodeAt(i);
  return units;
}

/** units[begin, end) as a string, exactly (any code unit), in chunks that fit an argument list. */
function unitsToString(units: Uint16Array, begin: number, end: number): string {
  const CHUNK = 8192;
  if (end - begin <= CHUNK) return String.fromCharCode.apply(null, units.subarray(begin, end) as unknown as number[]);
  const parts: string[] = [];
  for (let at = begin; at < end; at += CHUNK)
    parts.push(String.fromCharCode.apply(null, units.subarray(at, Math.min(end, at + CHUNK)) as unknown as number[]));
  return parts.join("");
}

/**
 * The lookup table for packed metadata (`meta` the joined code units,
 * `metaEnds` alternating key and value ends): slot → key index, -1 when
 * empty; linear probing. Built in the worker, so the main thread only probes it.
 */
export function buildMetaIndex(meta: Uint16Array, metaEnds: Uint32Array): Int32Array {
  const n = metaEnds.length / 2;
  const table = new Int32Array(tableSize(n)).fill(-1);
  const mask = table.length - 1;
  for (let i = 0; i < n; i++) {
    const begin = i === 0 ? 0 : metaEnds[2 * i - 1];
    let slot = hashUnits(meta, begin, metaEnds[2 * i]) & mask;
    while (table[slot] !== -1) slot = (slot + 1) & mask;
    table[slot] = i;
  }
  return table;
}

const readOnly = (): never => {
  throw new TypeError("the metadata of a safetensors file is read-only (copy it to edit: { ...metadata })");
};

/** The view over packed metadata (see the file comment); typed as the plain object it stands for. */
export function metadataView(meta: Uint16Array, metaEnds: Uint32Array, index: Int32Array): Record<string, string> {
  const n = metaEnds.length / 2;
  const mask = index.length - 1;
  const keyBegin = (i: number) => (i === 0 ? 0 : metaEnds[2 * i - 1]);

  const isKey = (i: number, k: string): boolean => {
    const begin = keyBegin(i);
    if (metaEnds[2 * i] - begin !== k.length) return false;
    for (let j = 0; j < k.length; j++) if (meta[begin + j] !== k.charCodeAt(j)) return false;
    return true;
  };
  /** Index of key k, or -1. */
  const find = (k: string): number => {
    for (let slot = hashString(k) & mask; ; slot = (slot + 1) & mask) {
      const i = index[slot];
      if (i === -1 || isKey(i, k)) return i;
    }
  };
  const value = (i: number) => unitsToString(meta, metaEnds[2 * i], metaEnds[2 * i + 1]);
  let keys: string[] | undefined; // made on the first enumeration, then kept
  const allKeys = () => {
    if (!keys) {
      keys = new Array<string>(n);
      for (let i = 0; i < n; i++) keys[i] = unitsToString(meta, keyBegin(i), metaEnds[2 * i]);
    }
    return keys;
  };

  // The target stays empty and extensible, so the traps may report any key as a
  // configurable own property. It holds only util.inspect's hook (util.inspect
  // looks at a proxy's target, not through the traps), so console.log shows
  // the entries as it would for the plain object.
  const target: Record<string | symbol, unknown> = Object.create(null);
  Object.defineProperty(target, inspect.custom, {
    value: () => Object.assign(Object.create(null), view), // formatted by util.inspect as the plain object
    configurable: true,
  });
  const view: Record<string, string> = new Proxy(target, {
    get: (_t, k) => {
      if (typeof k !== "string") return undefined;
      const i = find(k);
      return i === -1 ? undefined : value(i);
    },
    has: (_t, k) => typeof k === "string" && find(k) !== -1,
    ownKeys: () => allKeys(),
    getOwnPropertyDescriptor: (_t, k) => {
      if (typeof k !== "string") return undefined;
      const i = find(k);
      return i === -1 ? undefined : { value: value(i), writable: false, enumerable: true, configurable: true };
    },
    set: readOnly,
    defineProperty: readOnly,
    deleteProperty: readOnly,
    preventExtensions: readOnly,
    setPrototypeOf: readOnly,
  }) as Record<string, string>;
  return view;
}

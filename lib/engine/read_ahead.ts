/**
 * The one read-ahead loop of every streaming pass: items (the chunks of a
 * tensor, the experts of a layer) are read in order, item i+1 while item i is
 * used, so the disk and the compute overlap with at most two items in memory.
 */
import { throwIfAborted } from "../errors";

export interface ReadAheadOptions {
  /** Checked before each item is used. */
  signal?: AbortSignal;
  /** Called right after the last item's read has started: the moment to start reading what follows. */
  afterLastRead?: () => void;
}

/** Reads items 0..count-1 with read(i) and hands each to use(item, i), in order, one read ahead. */
export async function readAhead<T>(
  count: number,
  read: (i: number) => Promise<T>,
  use: (item: T, i: number) => Promise<void>,
  o: ReadAheadOptions = {},
): Promise<void> {
  if (count <= 0) return;
  let next: Promise<T> | undefined = read(0);
  if (count === 1) o.afterLastRead?.();
  for (let i = 0; next; i++) {
    const item: T = await next;
    next = i + 1 < count ? read(i + 1) : undefined;
    if (next && i + 2 === count) o.afterLastRead?.();
    // Keep the read-ahead's rejection from going unhandled if `use` throws first.
    next?.catch(() => undefined);
    throwIfAborted(o.signal);
    await use(item, i);
  }
}

/**
 * The chunks of a tensor of `numel` elements, `step` at a time: read(offset, n)
 * for each, handed to use(chunk, offset, n) in order, one chunk read ahead.
 */
export function readChunks<T>(
  numel: number,
  step: number,
  read: (offset: number, n: number) => Promise<T>,
  use: (chunk: T, offset: number, n: number) => Promise<void>,
  o: ReadAheadOptions = {},
): Promise<void> {
  const range = (i: number) => {
    const offset = i * step;
    return { offset, n: Math.min(step, numel - offset) };
  };
  return readAhead(
    numel > 0 ? Math.ceil(numel / step) : 0,
    (i) => {
      const r = range(i);
      return read(r.offset, r.n);
    },
    (c, i) => {
      const r = range(i);
      return use(c, r.offset, r.n);
    },
    o,
  );
}

/** What chunks are read from: a checkpoint or one safetensors file. */
export interface TensorSource {
  read(key: string, start?: number, count?: number, into?: Buffer): Promise<Buffer>;
}

/** Streams tensor `key` of `src` unchanged, chunk by chunk, to write (copies of non-float tensors, a finished file's tensors). */
export function copyChunks(
  src: TensorSource,
  key: string,
  numel: number,
  step: number,
  write: (data: Buffer, offset: number) => Promise<void>,
  o: ReadAheadOptions = {},
): Promise<void> {
  return readChunks(numel, Math.max(1, step), (offset, n) => src.read(key, offset, n), (data, offset) => write(data, offset), o);
}

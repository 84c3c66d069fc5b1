/**
 * State buffers for the selection ops: zeroed memory on one device's backend
 * that JS holds as a handle across op calls (native/boundary/state_buffer.h).
 * The caller that allocates one frees it (freeState in a finally); the
 * addon's finalizer only catches a handle dropped unfreed.
 */
import type { StateHandle } from "./addon";
import { runOp } from "./ops";

/** `bytes` zeroed bytes on `device`'s backend ("cpu" when absent). */
export async function allocState(bytes: number, device?: string): Promise<StateHandle> {
  return (await runOp("state_alloc", { bytes, device })).state;
}

/** Copies `into.byteLength` bytes of the state from byte `offset` into `into`, and returns it. */
export async function readState<V extends ArrayBufferView>(state: StateHandle, offset: number, into: V): Promise<V> {
  await runOp("state_read", { state, offset, bytes: into.byteLength, into });
  return into;
}

/** Frees the states given (undefined ones skipped). */
export async function freeState(...states: (StateHandle | undefined)[]): Promise<void> {
  for (const state of states) if (state) await runOp("state_free", { state });
}

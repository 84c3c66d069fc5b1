/**
 * The elected-sign rule of TIES and the majority sign of a scope: per entry,
 * sign(Σt τt over the tasks whose |τt| reaches their threshold); over the
 * scope, the sign of the sum of those (+1 when it is 0).
 */
import { runOp, TrimArgs } from "../native";
import { chunkArgs } from "../engine/stream";
import type { StreamContext } from "../engine/context";
import type { Scan } from "./scan";

/** The trim arguments the selection passes give the merge ops. */
export type OpArgs = TrimArgs;

export function bitsToFloat(bits: number): number {
  const u = new Uint32Array([bits]);
  return new Float32Array(u.buffer)[0];
}

/** The native ops' trim arguments for per-task magnitude thresholds (float32 bits). */
export function magnitudeArgs(bits: number[]): OpArgs {
  return { trim: "magnitude", thresholds: bits };
}

/** Elected sign of one entry from its T τ values and the thresholds (electedSign's rule). */
export function entrySign(tau: Float32Array, bits: Uint32Array, thr: number[]): number {
  let sum = 0;
  for (let t = 0; t < thr.length; t++) if ((bits[t] & 0x7fffffff) >= thr[t]) sum += tau[t];
  return Math.sign(sum);
}

export const fromSum = (signSum: number): 1 | -1 => (signSum < 0 ? -1 : 1);

/** Σ over the scope of the elected signs of the trimmed task vectors, and its sign. */
export async function majoritySign(ctx: StreamContext, scan: Scan, trim: (key: string) => OpArgs): Promise<{ majority: 1 | -1; signSum: number }> {
  let signSum = 0;
  await scan(async (c) => {
    const r = await runOp("ties_signs", { ...chunkArgs(ctx, c), ...trim(c.key) });
    signSum += r.signSum;
  });
  return { majority: signSum < 0 ? -1 : 1, signSum };
}

/**
 * The check every merge method's output passes through on its way to the
 * file: a NaN or ±Inf in the output dtype (an overflow of the method, e.g.
 * DARE's 1/density rescaling, or of the final narrowing to f16/bf16) fails the
 * run naming the key, before anything is committed. It lives in the engine's
 * sink, so a new method gets it without doing anything.
 */
import { runOp } from "../native";
import { TaskmergeError } from "../errors";
import type { FloatDType } from "../safetensors/dtypes";
import type { TensorSink } from "./context";

const SIZE: Record<FloatDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

/** Wraps `sink` (the output of float tensor `key`) so that each piece is checked before it is written. */
export function finiteSink(key: string, dtype: FloatDType, sink: TensorSink): TensorSink {
  let offset = 0;
  return async (data) => {
    const r = await runOp("check_finite", { data, dtype });
    const bad = r.bad;
    if (bad >= 0)
      throw new TaskmergeError(
        `the merged tensor holds a non-finite value (NaN or Inf) at element ${offset + bad} in ${dtype}: the method's result overflows ` +
          `from finite inputs (a smaller lambda, a larger density or a wider --dtype may help)`,
        undefined, key, { role: "output" },
      );
    offset += data.length / SIZE[dtype];
    await sink(data);
  };
}

/**
 * What a merge method is: a unit that declares its parameters and merges one
 * tensor at a time through the context the engine hands it. The loader,
 * planner and writer never know which method runs.
 */
import type { Checkpoint } from "../checkpoint";
import type { SafetensorsFile } from "../safetensors/file";
import type { FloatDType } from "../safetensors/dtypes";
import type { ProgressTracker } from "../engine/progress";

export interface ParamSpec {
  name: string;
  type: "number" | "integer" | "string" | "boolean";
  default: number | string | boolean;
  choices?: readonly string[];
  min?: number;
  max?: number;
  description: string;
}

export type Params = Record<string, number | string | boolean>;

export interface Expert {
  name: string;
  checkpoint: Checkpoint;
  /** Per-expert weight (task_arithmetic), 1 by default. */
  weight: number;
  /** Statistics file (regmean, lot), when given. */
  stats?: SafetensorsFile;
}

export interface MergeContext {
  base: Checkpoint;
  experts: Expert[];
  params: Params;
  /** Floating-point keys, in output order: the ones methods merge. */
  floatKeys: string[];
  outDtype(key: string): FloatDType;
  signal?: AbortSignal;
  progress: ProgressTracker;
  /** Elements per streamed chunk. */
  chunkElems: number;
  /** Method-specific details for the final report (thresholds, fallbacks...). */
  details: Record<string, unknown>;
}

/** Receives a tensor's output bytes in order, possibly in several pieces. */
export type TensorSink = (data: Uint8Array) => Promise<void>;

export interface MergeMethod {
  name: string;
  description: string;
  params: readonly ParamSpec[];
  /** Whether the method reads per-expert statistics files. */
  needsStats?: boolean;
  /** Passes over the inputs before merging (e.g. a global threshold); reports its own progress phase. */
  prepare?(ctx: MergeContext): Promise<void>;
  /** Writes the merged tensor `key` in the output dtype to `sink`. */
  mergeTensor(ctx: MergeContext, key: string, sink: TensorSink): Promise<void>;
}

/**
 * What a merge method is: a unit that declares its parameters and merges one
 * tensor at a time through the context the engine hands it. The loader,
 * planner and writer never know which method runs.
 */
import type { Checkpoint } from "../checkpoint";
import type { SafetensorsFile } from "../safetensors/file";
import type { FloatDType } from "../safetensors/dtypes";
import type { ProgressTracker } from "../engine/progress";
import type { Setting } from "./mergekit/settings";

export interface ParamSpec {
  name: string;
  type: "number" | "integer" | "string";
  default: number | string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  description: string;
}

export type Params = Record<string, number | string>;

export interface Expert {
  name: string;
  checkpoint: Checkpoint;
  /** Per-expert weight (task_arithmetic), 1 by default. */
  weight: number;
  /** Statistics file (regmean, lot), when given. */
  stats?: SafetensorsFile;
  /** Per-tensor settings of mergekit's methods (weight, density: numbers, gradients or filters). */
  parameters?: Record<string, Setting>;
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
  /** Checks the inputs against the parameters before any data is read (merge and --dry-run). */
  validate?(base: Checkpoint, experts: readonly Expert[], params: Params): void;
  /** An expert's resolved per-model parameters (mergekit:* methods), for --dry-run and the manifest. */
  expertParameters?(expert: Expert, params: Params): Record<string, unknown>;
  /** Passes over the inputs before merging (e.g. a global threshold); reports its own progress phase. */
  prepare?(ctx: MergeContext): Promise<void>;
  /** Writes the merged tensor `key` in the output dtype to `sink`. */
  mergeTensor(ctx: MergeContext, key: string, sink: TensorSink): Promise<void>;
}

/**
 * Declares a method keeping the literal types of its name and parameters, so
 * that the library's per-method option types (MethodSpec) derive from the
 * declaration itself.
 */
export function defineMethod<const N extends string, const P extends readonly ParamSpec[]>(
  m: MergeMethod & { name: N; params: P },
): MergeMethod & { name: N; params: P } {
  return m;
}

/** The TypeScript type of one declared parameter's value. */
export type ParamValue<P> = P extends { choices: readonly (infer C)[] }
  ? C
  : P extends { type: "string" }
    ? string
    : P extends { type: "boolean" }
      ? boolean
      : number;

/** `{ name, ...parameters }` of one declared method, every parameter optional (its default applies). */
export type MethodOptionsOf<M extends { name: string; params: readonly ParamSpec[] }> = { name: M["name"] } & {
  [K in M["params"][number] as K["name"]]?: ParamValue<K>;
};

/**
 * The context types: what a merge method is (a unit that declares its
 * parameters and merges one tensor at a time) and the context the engine
 * hands it. Below methods, select and stats, so all of them can use it. The loader,
 * planner and writer never know which method runs.
 */
import type { Checkpoint } from "../checkpoint";
import type { SafetensorsFile } from "../safetensors/file";
import type { FloatDType } from "../safetensors/dtypes";
import type { ProgressTracker } from "./progress";

export interface ParamSpec {
  name: string;
  type: "number" | "integer" | "string" | "boolean";
  default: number | string | boolean;
  choices?: readonly string[];
  min?: number;
  max?: number;
  description: string;
  /**
   * Left out of the output's manifest (taskmerge.json, model card) while at its
   * default: a parameter added after outputs were first written, so that those
   * outputs stay the same byte for byte.
   */
  omitAtDefault?: boolean;
}

export type Params = Record<string, number | string | boolean>;

/**
 * A per-tensor setting of mergekit's methods: a number; a gradient (numbers
 * interpolated over the layers); or a list of {filter, value}. Declared here,
 * with the Expert that carries it; methods/mergekit/settings.ts evaluates it.
 */
export type Scalar = number | boolean | string;
export interface Conditional {
  filter?: string;
  value: Scalar | number[];
}
export type Setting = Scalar | number[] | Conditional[];

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

/**
 * What streaming the inputs chunk by chunk needs (engine/stream.ts): merges,
 * top-k selection (lib/select) and TALL compression all read through it.
 */
export interface StreamContext {
  base: Checkpoint;
  experts: Expert[];
  /** Floating-point keys, in output order: the ones methods merge. */
  floatKeys: string[];
  signal?: AbortSignal;
  progress: ProgressTracker;
  /** Elements per streamed chunk. */
  chunkElems: number;
  /** The backend every native op of the job runs on (lib/device.ts resolved it); "cpu" when absent. */
  device?: "cpu" | "cuda";
}

/** What the engine hands a method: the streamed inputs, the parameters, the output dtypes and the report. */
export interface MergeContext extends StreamContext {
  params: Params;
  outDtype(key: string): FloatDType;
  /** Method-specific details for the final report (thresholds, fallbacks...). */
  details: Record<string, unknown>;
  /**
   * Set in a progressive merge: the experts' statistics come from the collector, computed
   * on taskmerge's own partial checkpoint, so they are not bound to the expert's checkpoint
   * (checks of a statistics file's recorded source do not apply).
   */
  collectedStats?: boolean;
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

/**
 * The native ops, typed: OpSignatures gives each op's argument and result
 * interface (what native/kernels/*.cpp read and write), and runOp(name, args)
 * is the one way lib/ calls them. Numbers that are flags come back as 0 or 1.
 * The addon checks every argument again (native/boundary/args.h) and rejects
 * a wrong one with an error naming it (`arg`, `index`).
 */
import { OpArg, runRawOp, StateHandle } from "./addon";
import { noteDeviceOp } from "./device_use";

/** Raw bytes: a Buffer or any typed array, used in place (float64 accumulators must be 8-byte aligned). */
export type Bytes = Uint8Array | ArrayBufferView;
/** A safetensors float dtype name: "F64", "F32", "F16", "BF16". */
export type DTypeName = string;

/** Which backend runs the op (info().backends): "cpu" when absent. */
export interface OnDevice {
  device?: string;
}

/** The precision of the closed-form solves (backend.h tm_precision); the CPU backend does float64 only. */
export type SolvePrecision = "float64" | "float32" | "tf32";

/** Forces the built-in linear algebra for this call ("builtin"), for tests and benchmarks. */
export interface LinalgChoice {
  linalg?: string;
}

/** One chunk of one tensor: n elements of the base and of every expert from tensor index `offset`. */
export interface ChunkArgs extends OnDevice {
  n: number;
  offset?: number;
  base: Bytes;
  baseDtype: DTypeName;
  experts: Bytes[];
  expertDtypes: DTypeName[];
  /** The merged chunk (written), n elements of outDtype. */
  out?: Bytes;
  outDtype?: DTypeName;
}

/** How task vectors are trimmed (native/core/trim.h). */
export interface TrimArgs {
  trim?: "none" | "magnitude" | "dare" | "bernoulli" | "magnitude_cut";
  /** magnitude, magnitude_cut: float32 bits of |τ| per expert. */
  thresholds?: number[];
  /** magnitude_cut: per expert, the tensor index below which entries at the threshold are kept. */
  cuts?: number[];
  /** dare: keep probability. */
  density?: number;
  /** bernoulli: keep probability per expert. */
  densities?: number[];
  /** dare, bernoulli: the counter-based RNG's seed and tensor key. */
  seed?: number;
  key?: string;
  /** TIES-family ops: the scope's majority sign (±1) for entries whose elected sign is 0. */
  majority?: number;
}

type Empty = Record<string, never>;

/** The low-precision dtype mergekit computes in. */
interface LowCompute {
  compute: "BF16" | "F16";
}

/** Breadcrumbs: per expert the top sets dropped (the largest `top`) and kept from (the largest top + k), as bits + cut. */
export interface TopSetArgs {
  dropBits: number[];
  dropCuts: number[];
  keepBits: number[];
  keepCuts: number[];
}

interface Linear {
  n: number;
  merged: Bytes;
  mergedDtype: DTypeName;
  expert: Bytes;
  expertDtype: DTypeName;
  base: Bytes;
  baseDtype: DTypeName;
}

/** Every native op: its arguments and its results. */
export interface OpSignatures {
  task_arithmetic: { args: ChunkArgs & { coeffs: number[] }; result: Empty };
  dare_linear: { args: ChunkArgs & TrimArgs & { coeffs: number[] }; result: Empty };
  ties_signs: { args: ChunkArgs & TrimArgs; result: { signSum: number } };
  ties_merge: { args: ChunkArgs & TrimArgs & { merge?: string; lambda: number }; result: Empty };
  consensus: { args: ChunkArgs & TrimArgs & { kind: "sum" | "ties"; k: number; tallLambda: number; lambda: number }; result: Empty };
  mergekit_gta: {
    args: ChunkArgs & TrimArgs & { weights: number[]; scales: number[]; consensus: "none" | "sum"; normalize: number; lambda: number; divisor?: number; baseScale?: number };
    result: Empty;
  };
  trim_l1: { args: ChunkArgs & TrimArgs; result: { l1: number[]; l1Kept: number[] } };
  breadcrumbs_merge: {
    args: ChunkArgs & TopSetArgs & { weights: number[]; scales: number[]; consensus: number; normalize: number; lambda: number; divisor?: number };
    result: Empty;
  };
  breadcrumbs_l1: { args: ChunkArgs & TopSetArgs; result: { l1: number[]; l1Kept: number[] } };
  /** mergekit in bfloat16 / float16 (`compute`), as torch on the CPU (native/kernels/mergekit_lowp.cpp; backend.h's mergekit_lowp_* entries). */
  /** hist: a state (T × 32768 float64) on the op's device. */
  mergekit_lowp_hist: { args: ChunkArgs & LowCompute & { hist: StateHandle }; result: Empty };
  mergekit_lowp_tie_cut: { args: ChunkArgs & LowCompute & { thresholds: number[]; need: number[] }; result: { count: number[]; at: number[] } };
  mergekit_lowp_l1: { args: ChunkArgs & LowCompute & TrimArgs; result: { l1: number[]; l1Kept: number[] } };
  mergekit_lowp_gta: {
    args: ChunkArgs & LowCompute & TrimArgs & { weights: number[]; scales: number[]; consensus: "none" | "sum"; normalize: number; divisor?: number; lambda: number };
    result: Empty;
  };
  mergekit_lowp_linear: { args: ChunkArgs & LowCompute & { weights: number[]; baseWeight: number; normalize: number; divisor?: number }; result: Empty };
  magnitude_tie_cut: { args: ChunkArgs & { thresholds: number[]; need: number[] }; result: { count: number[]; at: number[] } };
  lot_norm: { args: ChunkArgs & { scales: Bytes[]; scaleDtypes: DTypeName[]; total: number; lambda?: number }; result: Empty };
  tall_compress: {
    args: ChunkArgs & TrimArgs & { kind: "sum" | "ties"; tau: Bytes; tauDtype: DTypeName; lambdas?: number[]; masks?: Bytes[] };
    result: Empty;
  };
  tall_mask: { args: ChunkArgs & { tau: Bytes; tauDtype: DTypeName; lambdas: number[]; masks: Bytes[] }; result: Empty };
  tall_apply: {
    args: OnDevice & {
      n: number; offset?: number; base: Bytes; baseDtype: DTypeName; tau: Bytes; tauDtype: DTypeName; out: Bytes; outDtype: DTypeName;
      mask?: Bytes; expert?: Bytes; expertDtype?: DTypeName; lambda?: number;
    };
    result: Empty;
  };
  /** State buffers (native/boundary/state_buffer.h): zeroed `bytes` on the device's backend; a handle to pass to the ops below. */
  state_alloc: { args: OnDevice & { bytes: number }; result: { state: StateHandle } };
  state_fill: { args: { state: StateHandle; offset?: number; bytes: number; value?: number }; result: Empty };
  /** Copies bytes [offset, offset + bytes) of the state into `into` (exactly `bytes` long). */
  state_read: { args: { state: StateHandle; offset?: number; bytes: number; into: Bytes }; result: Empty };
  state_free: { args: { state: StateHandle }; result: Empty };
  /** hist, signDiff: states on the op's device (T × 32768 or T × 65536 float64; T × 65536 float64). */
  magnitude_hist: {
    args: ChunkArgs & { level: 0 | 1; hist: StateHandle; prefix?: number[]; signDiff?: StateHandle; multiCap?: number };
    /** With signDiff: the sign reduction's known part, whether `multi` overflowed, and the entries it holds (T float32 each). */
    result: { signBase?: number; overflow?: number; multi?: Buffer };
  };
  magnitude_pick: { args: OnDevice & { hist: StateHandle; bins: number; ks: number[] }; result: { bin: number[]; rank: number[] } };
  magnitude_small: { args: ChunkArgs & { k: number }; result: { thresholds: number[]; signSum: number } };
  /** bits: a state of T × m uint32 on the op's device (the sample). */
  ties_sample: { args: ChunkArgs & { bits: StateHandle; m: number; at: number }; result: Empty };
  /** On the host: reads the sample state once. */
  ties_window_bounds: {
    args: { bits: StateHandle; m: number; blockLens: number[]; p: number; z: number };
    result: { lo: number[]; hi: number[]; se: number[]; inWindow: number[]; table: number[] };
  };
  /** The lists, cursors and tabled counts are states on the op's device (T × capacity uint32 / int8, T uint64, T × 16 uint64 / int64). */
  ties_window: {
    args: ChunkArgs & {
      lo: number[]; hi: number[]; table: number[]; tableCounts: StateHandle; tableDiffs: StateHandle; capacity: number;
      cand: StateHandle; candDiff: StateHandle; used: StateHandle; multiCap: number;
    };
    result: { above: number[]; atHi: number[]; signBase: number; overflow: number; full: number; multi: Buffer };
  };
  /** On the host: reads ties_window's states once (of each list only its used entries). */
  ties_window_pick: {
    args: {
      cand: StateHandle; candDiff: StateHandle; used: StateHandle; capacity: number; table: number[]; tableCounts: StateHandle;
      tableDiffs: StateHandle; above: number[]; atHi: number[]; hi: number[]; k: number;
    };
    result: { thresholds: number[]; ok: number[]; diffSum: number };
  };
  check_finite: { args: OnDevice & { data: Bytes; dtype: DTypeName }; result: { bad: number } };
  gram_check: { args: { gram: Bytes; gramDtype: DTypeName; n: number; tol: number }; result: Empty };
  convert: { args: OnDevice & { src: Bytes; dst: Bytes; fromDtype: DTypeName; toDtype: DTypeName }; result: Empty };
  /** Frees the staging buffers the ops keep for `device` between calls (a job's end: native/device_use.ts). */
  device_release: { args: { device: string }; result: { freed: number } };
  gram_accumulate: { args: LinalgChoice & { rows: Bytes; rowsDtype: DTypeName; width: number; gram: Bytes; sum: Bytes }; result: Empty };
  norm_accumulate: { args: OnDevice & { rows: Bytes; rowsDtype: DTypeName; width: number; sqsum: Bytes; sum: Bytes }; result: Empty };
  gram_products_accumulate: {
    args: LinalgChoice & OnDevice & {
      out: number; in: number; base: Bytes; baseDtype: DTypeName; expert: Bytes; expertDtype: DTypeName; gram: Bytes; gramDtype: DTypeName;
      A: Bytes; BT: Bytes; scale?: number; alpha?: number;
    };
    result: Empty;
  };
  /** A batch of equal-shape layers in one solve_psd_rows_batched call (A, BT destroyed); `solved` layers were done (see gram_solve.cpp). */
  gram_solve: {
    args: LinalgChoice & OnDevice & {
      out: number; in: number; A: Bytes[]; BT: Bytes[]; solver?: string; ridge?: number; rcond?: number; precision?: SolvePrecision;
      base: Bytes[]; baseDtypes: DTypeName[]; lambda?: number; result: Bytes[]; resultDtypes: DTypeName[];
    };
    result: { solved: number; eigh: number[]; rank: number[] };
  };
  drift_linear: { args: LinalgChoice & Omit<Linear, "n"> & { out: number; in: number; gram: Bytes; gramDtype: DTypeName }; result: { drift: number; baseDrift: number } };
  drift_norm: { args: LinalgChoice & Linear & { scale: Bytes; scaleDtype: DTypeName }; result: { drift: number; baseDrift: number } };
  linalg_gemm: {
    args: LinalgChoice & { m: number; n: number; k: number; transA?: number; transB?: number; alpha?: number; beta?: number; A: Bytes; B: Bytes; C?: Bytes };
    result: { C: Buffer; seconds: number };
  };
  linalg_syrk: { args: LinalgChoice & { n: number; k: number; alpha?: number; beta?: number; X: Bytes; C?: Bytes }; result: { C: Buffer; seconds: number } };
  linalg_cholesky: { args: LinalgChoice & { n: number; A: Bytes }; result: { L: Buffer; ok: number; seconds: number } };
  linalg_eigh: { args: LinalgChoice & { n: number; A: Bytes }; result: { w: Buffer; V: Buffer; seconds: number } };
  linalg_axpy: { args: OnDevice & { n: number; alpha?: number; x: Bytes; y: Bytes }; result: { Y: Buffer; seconds: number } };
  linalg_solve: {
    args: LinalgChoice & { n: number; nrhs: number; A: Bytes; B: Bytes; solver?: string; ridge?: number; rcond?: number };
    result: { X: Buffer; eigh: number; rank: number; seconds: number };
  };
}

export type OpName = keyof OpSignatures;
export type OpArgsOf<K extends OpName> = OpSignatures[K]["args"];
export type OpResultOf<K extends OpName> = OpSignatures[K]["result"];

/** The ops that write a merged chunk to `out` (what mergeElementwise runs). */
export type MergeOpName =
  | "task_arithmetic" | "dare_linear" | "ties_merge" | "consensus" | "mergekit_gta" | "lot_norm" | "breadcrumbs_merge"
  | "mergekit_lowp_gta" | "mergekit_lowp_linear";
/** A merge op's own arguments, without the chunk ones the stream adds. */
export type MergeOpArgs<K extends MergeOpName> = Omit<OpArgsOf<K>, keyof ChunkArgs> & OnDevice;

/**
 * Runs native op `op` on a worker thread. An op on a device other than the CPU
 * is noted in the job's DeviceUse, with the entry it lacked when it ran on the
 * CPU instead (the addon's `deviceFallback`, not passed on).
 */
export async function runOp<K extends OpName>(op: K, args: OpArgsOf<K>): Promise<OpResultOf<K>> {
  const r = await runRawOp(op, args as unknown as Record<string, OpArg | undefined>);
  const device = (args as OnDevice).device;
  if (device && device !== "cpu") noteDeviceOp(op, device, r.deviceFallback as string | undefined);
  delete r.deviceFallback;
  return r as unknown as OpResultOf<K>;
}

/**
 * The skeleton every command runs on (merge, compress, extract, drift): before
 * anything is read, no input at the output path and the path claimed (lock,
 * leftovers of killed runs); then the job opens its inputs once and runs its
 * passes; the output is staged and committed by the job, and aborted
 * otherwise. Whatever way the job ends, everything it opened is closed, then
 * an uncommitted output removed, then the output's lock released.
 */
import { OutputSlot } from "../out_path/slot";
import { checkInputClash } from "../out_path/clash";
import type { OutputKind } from "../out_path/owned";
import { throwIfAborted } from "../errors";
import type { FloatDType } from "../safetensors/dtypes";
import type { Progress } from "../engine/progress";
import type { ResolvedDevice } from "../device";
import { DeviceUse, trackDeviceUse } from "../native";

interface Closable {
  close(): Promise<void>;
}
interface Abortable {
  abort(): Promise<void>;
}

/** What every job that writes a checkpoint (merge, extract) takes about its output and its run. */
export interface CheckpointJobOptions {
  base: string;
  out: string;
  dtype?: FloatDType;
  /** The base's Hub id for the model card. */
  baseModel?: string;
  maxShardSize?: number;
  chunkElems?: number;
  /** The backend every native op of the job runs on (lib/device.ts resolved it); "cpu" when absent. */
  device?: ResolvedDevice;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface JobSpec {
  /** The paths the options name (checkpoints, statistics, bundles), checked against the output before anything is read. */
  named: string[];
  /** The output path and what it is; none for a job that only reads (drift). */
  out?: { path: string; kind: OutputKind };
  signal?: AbortSignal;
}

/** What a job's report says about its device: the ops that ran on the CPU because the device lacks them. */
export interface DeviceReport {
  /** Op names, when any fell back (native/boundary/device_call.h, CpuFallback). */
  deviceFallbacks?: string[];
}

export class Job {
  private readonly opened: Closable[] = [];
  private readonly outputs: Abortable[] = [];
  /** The devices the job's ops ran on and the ops that fell back to the CPU. */
  readonly devices = new DeviceUse();

  constructor(
    private readonly spec: JobSpec,
    private readonly claimed?: OutputSlot,
  ) {}

  /** The claimed output slot (a job without an output has none). */
  get slot(): OutputSlot {
    if (!this.claimed) throw new Error("internal: this job writes no output");
    return this.claimed;
  }

  /** Closes `x` when the job ends (last tracked, first closed). */
  track<T extends Closable>(x: T): T {
    this.opened.push(x);
    return x;
  }

  /** Removes `x` (a staged output, a checkpoint being written) when the job ends without committing it. */
  output<T extends Abortable>(x: T): T {
    this.outputs.push(x);
    return x;
  }

  /** Once the inputs are open: none of their files (shards, indexes) is the output either. */
  async checkInputFiles(files: string[]): Promise<void> {
    if (this.spec.out) await checkInputClash(this.spec.out.path, [...this.spec.named, ...files]);
  }

  /** The report's device part: empty unless an op fell back to the CPU. */
  deviceReport(): DeviceReport {
    return this.devices.fallbacks.size ? { deviceFallbacks: [...this.devices.fallbacks.keys()] } : {};
  }

  /** Closes, then aborts, in that order; errors here never hide the job's own. */
  async end(): Promise<void> {
    for (const x of this.opened.splice(0).reverse()) await x.close().catch(() => undefined);
    for (const x of this.outputs.splice(0)) await x.abort().catch(() => undefined);
  }
}

/** Runs `run` as a job (see above); its result is the job's. */
export async function runJob<R>(spec: JobSpec, run: (job: Job) => Promise<R>): Promise<R> {
  throwIfAborted(spec.signal);
  let slot: OutputSlot | undefined;
  if (spec.out) {
    await checkInputClash(spec.out.path, spec.named);
    slot = await OutputSlot.claim(spec.out.path, spec.out.kind, spec.signal);
  }
  const job = new Job(spec, slot);
  try {
    return await trackDeviceUse(job.devices, () => run(job));
  } finally {
    await job.end();
    await job.devices.release();
    await slot?.release();
  }
}

/**
 * What a job's native ops did on devices other than the CPU: the devices they
 * ran on (whose staging buffers the job frees at its end: op device_release)
 * and the ops that ran on the CPU instead because the device's backend lacks
 * an entry they need (native/boundary/device_call.h, CpuFallback). A job runs
 * its passes inside trackDeviceUse; runOp notes every op there.
 */
import { AsyncLocalStorage } from "async_hooks";
import { runRawOp } from "./addon";

export class DeviceUse {
  readonly devices = new Set<string>();
  /** Op name → the backend entry it lacked, in the order they first fell back. */
  readonly fallbacks = new Map<string, string>();

  /** Frees the idle staging buffers of every device used; never throws (the job's own error wins). */
  async release(): Promise<void> {
    for (const device of this.devices) await runRawOp("device_release", { device }).catch(() => undefined);
  }
}

const current = new AsyncLocalStorage<DeviceUse>();

/** Runs `fn` with the ops it starts (across awaits) noted in `use`. */
export function trackDeviceUse<R>(use: DeviceUse, fn: () => Promise<R>): Promise<R> {
  return current.run(use, fn);
}

/** Notes an op that ran with `device`; `fallback` is the entry it lacked when it ran on the CPU instead. */
export function noteDeviceOp(op: string, device: string, fallback: string | undefined): void {
  const use = current.getStore();
  if (!use) return;
  use.devices.add(device);
  if (fallback && !use.fallbacks.has(op)) use.fallbacks.set(op, fallback);
}

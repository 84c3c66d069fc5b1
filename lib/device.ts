/**
 * Device selection from the addon's backend registry (info().backends):
 * "cpu" always has a backend; "cuda" needs one that was loaded
 * (taskmerge_cuda.so beside the addon) and reports a device; "auto" takes
 * cuda when it does, else cpu. merge, compress and extract take the option
 * (DEVICE_PARAM: their --device flag) and resolve it here, once, before a job
 * starts; the job hands the result to every native op it runs.
 */
import { nativeInfo } from "./native";
import { UsageError } from "./errors";
import type { ParamSpec } from "./engine/context";

export type Device = "auto" | "cpu" | "cuda";
/** What a job runs on: a device resolved by resolveDevice. */
export type ResolvedDevice = "cpu" | "cuda";

/** The `device` option of the commands that run native ops, declared once (cli/param_flags.ts makes its flag). */
export const DEVICE_PARAM = {
  name: "device",
  type: "string",
  default: "auto",
  choices: ["auto", "cpu", "cuda"],
  description: "compute device; auto: cuda where a CUDA backend reports a device, else cpu",
} as const satisfies ParamSpec;

/** Why the CUDA backend cannot be used, or undefined when it can. */
function cudaUnavailable(): string | undefined {
  const info = nativeInfo();
  const cuda = info.backends.find((b) => b.name === "cuda");
  if (cuda) return cuda.available ? undefined : `its CUDA backend (${cuda.origin}) reports no device: ${cuda.description}`;
  const load = info.backendLoads.find((l) => l.name === "cuda");
  if (!load || load.status === "absent") return `no CUDA backend is installed (${load?.path ?? "taskmerge_cuda.so beside the addon"} is absent)`;
  return `its CUDA backend ${load.path} ${load.status}`;
}

/** The device a job runs on; an unknown device, or cuda where none is usable, is a UsageError saying why. */
export function resolveDevice(d: Device | undefined): ResolvedDevice {
  const want = d ?? DEVICE_PARAM.default;
  if (!(DEVICE_PARAM.choices as readonly unknown[]).includes(want))
    throw new UsageError(`unknown device ${typeof want === "string" ? `'${want}'` : JSON.stringify(want)} (auto, cpu or cuda)`);
  if (want === "cpu") return "cpu";
  const why = cudaUnavailable();
  if (want === "cuda" && why) throw new UsageError(`device 'cuda' requested but ${why}`);
  return why ? "cpu" : "cuda";
}

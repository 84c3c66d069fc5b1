/**
 * Device selection from the addon's backend registry (info().backends):
 * "cpu" always has a backend; "cuda" needs one that was loaded
 * (taskmerge_cuda.so beside the addon) and reports a device; "auto" takes
 * cuda when it does, else cpu.
 */
import { nativeInfo } from "./native";
import { UsageError } from "./errors";

export type Device = "auto" | "cpu" | "cuda";

/** Why the CUDA backend cannot be used, or undefined when it can. */
function cudaUnavailable(): string | undefined {
  const info = nativeInfo();
  const cuda = info.backends.find((b) => b.name === "cuda");
  if (cuda) return cuda.available ? undefined : `its CUDA backend (${cuda.origin}) reports no device: ${cuda.description}`;
  const load = info.backendLoads.find((l) => l.name === "cuda");
  if (!load || load.status === "absent") return `no CUDA backend is installed (${load?.path ?? "taskmerge_cuda.so beside the addon"} is absent)`;
  return `its CUDA backend ${load.path} ${load.status}`;
}

export function resolveDevice(d: Device | undefined): "cpu" | "cuda" {
  const want = d ?? "auto";
  if (want !== "auto" && want !== "cpu" && want !== "cuda") throw new UsageError(`unknown device '${want}' (auto, cpu or cuda)`);
  if (want === "cpu") return "cpu";
  const why = cudaUnavailable();
  if (want === "cuda" && why) throw new UsageError(`device 'cuda' requested but ${why}`);
  return why ? "cpu" : "cuda";
}

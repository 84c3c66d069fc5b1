/** Device selection: the CPU backend always; CUDA only when the addon was built with it. */
import { nativeInfo } from "./native";
import { UsageError } from "./errors";

export type Device = "auto" | "cpu" | "cuda";

export function resolveDevice(d: Device | undefined): "cpu" | "cuda" {
  const want = d ?? "auto";
  if (want !== "auto" && want !== "cpu" && want !== "cuda") throw new UsageError(`unknown device '${want}' (auto, cpu or cuda)`);
  const hasCuda = nativeInfo().ops.some((o) => o.startsWith("cuda_"));
  if (want === "cuda" && !hasCuda) throw new UsageError("device 'cuda' requested but this build of taskmerge has no CUDA backend");
  return want === "cpu" || !hasCuda ? "cpu" : "cuda";
}

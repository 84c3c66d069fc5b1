/**
 * The fake backend library of test/fixtures/backends/fake_backend.c, built
 * at test time, and a fresh node to load it in (the loader runs once per
 * process): TASKMERGE_CUDA_LIBRARY points at it, FAKE_CPU_ADDON names the
 * addon whose CPU kernels its copying mode runs.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { addonLocation } from "../../lib/native";
import { ROOT, tmpDir } from "./fixtures";

export const cc = ["cc", "gcc", "clang"].find((c) => spawnSync(c, ["--version"]).status === 0);

/**
 * Builds fake_backend.c in FAKE_MODE `mode` (0 no device, 1 a device, 2 another ABI, 3 a copying
 * device), or with "streaming" fake_streaming_backend.c (counted buffers, async copies, pinning).
 */
export function buildFake(mode: number | "streaming"): string {
  const dir = tmpDir("tm-fake-backend-");
  const out = path.join(dir, `fake_${mode}.so`);
  const source = mode === "streaming" ? "fake_streaming_backend.c" : "fake_backend.c";
  const r = spawnSync(cc!, ["-shared", "-fPIC", "-std=c99", `-DFAKE_MODE=${mode === "streaming" ? 0 : mode}`, "-I", path.join(ROOT, "native", "backend"),
    path.join(ROOT, "test", "fixtures", "backends", source), "-o", out, "-ldl"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return out;
}

/** Runs `script` in a fresh node from the checkout's root with `lib` as the CUDA backend; its stdout parsed as JSON. */
export function probe(lib: string, script: string, env: NodeJS.ProcessEnv = {}): { out: unknown; stderr: string } {
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: ROOT, env: { ...process.env, TASKMERGE_CUDA_LIBRARY: lib, FAKE_CPU_ADDON: addonLocation().path, ...env }, encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return { out: JSON.parse(r.stdout), stderr: r.stderr };
}

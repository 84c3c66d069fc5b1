/**
 * A separately built backend for tests: test/fixtures/backends/fake_backend.c
 * compiled at test time against native/backend/backend.h, loaded in a fresh
 * node (the loader runs once per process) through TASKMERGE_CUDA_LIBRARY.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { tmpDir } from "./fixtures";

const ROOT = path.join(__dirname, "..", "..");
/** A C compiler, when the machine has one (the tests that need it are skipped otherwise). */
export const cc = ["cc", "gcc", "clang"].find((c) => spawnSync(c, ["--version"]).status === 0);

/** The fake backend library: FAKE_MODE 0 no device, 1 a device (identity entries only), 2 another ABI version. */
export function buildFake(mode: number): string {
  const dir = tmpDir("tm-fake-backend-");
  const out = path.join(dir, `fake_${mode}.so`);
  const r = spawnSync(cc!, ["-shared", "-fPIC", "-std=c99", `-DFAKE_MODE=${mode}`, "-I", path.join(ROOT, "native", "backend"),
    path.join(ROOT, "test", "fixtures", "backends", "fake_backend.c"), "-o", out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return out;
}

/** Runs `script` in a fresh node with the built dist/ and TASKMERGE_CUDA_LIBRARY=lib; its stdout is JSON. */
export function probe(lib: string, script: string): { out: unknown; stderr: string } {
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: ROOT, env: { ...process.env, TASKMERGE_CUDA_LIBRARY: lib }, encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return { out: JSON.parse(r.stdout), stderr: r.stderr };
}

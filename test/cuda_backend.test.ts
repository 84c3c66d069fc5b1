/**
 * The CUDA backend, build/Release/taskmerge_cuda.so (`npm run build:cuda`),
 * through its check program build/cuda/taskmerge_cuda_check, which loads it
 * with dlopen and tm_backend_init as the addon's loader does. Skipped, with
 * the reason in the test name, when the library was not built (no nvcc or no
 * wheels); CI builds it. Without a GPU the backend must load, say "no device"
 * and refuse every entry; with one, every entry is compared with the CPU ops.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { checkEnvironment } from "../lib/env";
import * as native from "../lib/native";

// The untyped op call: runRawOp once lib/native/ has typed ops (i13-native's seam), runOp before.
type RawRun = (op: string, args: Record<string, unknown>) => Promise<unknown>;
const nativeAny = native as unknown as { runRawOp?: RawRun; runOp: RawRun; nativeInfo: () => unknown };
const runAny: RawRun = nativeAny.runRawOp ?? nativeAny.runOp;

const root = path.join(__dirname, "..");
const lib = process.env.TASKMERGE_CUDA_LIBRARY ?? path.join(root, "build", "Release", "taskmerge_cuda.so");
const check = path.join(root, "build", "cuda", "taskmerge_cuda_check");
const built = fs.existsSync(lib) && fs.existsSync(check);

interface Info {
  name: string;
  abi: number;
  tableBytes: number;
  hostTableBytes: number;
  linalg: string;
  device: { available: number; description: string; memoryBytes: number };
  otherAbiStatus: number;
  entries: string[];
}

function runCheck(args: string[], timeout = 120_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(check, args, { encoding: "utf8", timeout, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const info: Info | undefined = built ? JSON.parse(execFileSync(check, ["info", lib], { encoding: "utf8" })) : undefined;
const hasDevice = !!info?.device.available;

/** TM_BACKEND_ABI_VERSION and a status value of native/backend/backend.h, read from the header the host is built with. */
function headerValue(name: string): number {
  const h = fs.readFileSync(path.join(root, "native", "backend", "backend.h"), "utf8");
  const m = new RegExp(`\\b${name}\\s*(?:=\\s*)?(\\d+)`).exec(h);
  if (!m) throw new Error(`${name} not found in backend.h`);
  return Number(m[1]);
}

test("the CUDA backend's environment knobs are validated like the others", () => {
  expect(() => checkEnvironment({ TASKMERGE_CUDA_PRECISION: "fp16" })).toThrow(/TASKMERGE_CUDA_PRECISION="fp16" is not one of f64, f32, tf32/);
  expect(() => checkEnvironment({ TASKMERGE_CUDA_DEVICE: "-1" })).toThrow(/TASKMERGE_CUDA_DEVICE/);
  expect(() => checkEnvironment({ TASKMERGE_CUDA_PRECISION: "tf32", TASKMERGE_CUDA_DEVICE: "1" })).not.toThrow();
});

/** The entries the CUDA backend gained with the mergekit, breadcrumbs and TIES-window kernels. */
const newerEntries = ["mergekit_gta", "trim_l1", "magnitude_tie_cut", "magnitude_small", "ties_sample", "ties_window", "breadcrumbs_merge", "breadcrumbs_l1"];

/** Entries the CUDA backend leaves NULL on purpose: their ops run on the CPU (docs/cuda.md). */
const cpuOnlyEntries = ["norm_accumulate", "drift_norm", "mergekit_lowp_hist", "mergekit_lowp_tie_cut", "mergekit_lowp_l1", "mergekit_lowp_gta", "mergekit_lowp_linear"];

/** The tm_backend_iface entries of backend.h that take a chunk or a histogram (the block and selection kernels), less cpuOnlyEntries: every one must be implemented. */
function tableKernelEntries(): string[] {
  const h = fs.readFileSync(path.join(root, "native", "backend", "backend.h"), "utf8");
  const iface = h.slice(h.indexOf("typedef struct tm_backend_iface {"), h.indexOf("} tm_backend_iface;"));
  const all = [...iface.matchAll(/tm_status \(\*(\w+)\)\(tm_backend\* be, (?:const tm_chunk\*|const tm_tall_apply_args\*|const double\* hist)/g)].map((m) => m[1]);
  return all.filter((e) => !cpuOnlyEntries.includes(e));
}

const suite = built ? describe : describe.skip;
const why = built ? "" : ` (skipped: ${path.relative(root, lib)} not built; run npm run build:cuda)`;

suite(`CUDA backend${why}`, () => {
  test("loads through tm_backend_init: name, ABI, table size and implemented entries", () => {
    expect(info!.name).toBe("cuda");
    expect(info!.linalg).toBe("cublas+cusolver");
    expect(info!.abi).toBe(headerValue("TM_BACKEND_ABI_VERSION"));
    expect(info!.tableBytes).toBe(info!.hostTableBytes);
    expect(info!.otherAbiStatus).toBe(headerValue("TM_ABI_MISMATCH"));
    expect(info!.entries).toEqual(
      expect.arrayContaining(["convert", "linear_combine", "ties_merge", "ties_signs", "consensus", "tall_compress", "tall_mask", "tall_apply", "magnitude_hist", "gemm", "syrk_rows", "cholesky", "cholesky_solve_rows", "eigh"]),
    );
    // mergekit:*, breadcrumbs and TIES's global (sampled window) and small-tensor selections
    expect(info!.entries).toEqual(expect.arrayContaining(newerEntries));
    // Every block kernel and selection entry of the table is implemented (buffer views, the rest of the
    // buffer and identity entries are not listed: they cannot refuse).
    expect(info!.entries).toEqual(expect.arrayContaining(tableKernelEntries()));
    for (const e of cpuOnlyEntries) expect(info!.entries).not.toContain(e);
    expect(info!.device.description.length).toBeGreaterThan(0);
  });

  (hasDevice ? test.skip : test)("without a device: says so and every implemented entry refuses with TM_NO_DEVICE", () => {
    expect(info!.device).toMatchObject({ available: 0, memoryBytes: 0 });
    expect(info!.device.description).toMatch(/^no CUDA device: /);
    const r = runCheck(["refuse", lib]);
    expect(r.stderr).toBe("");
    const rep = JSON.parse(r.stdout) as { calls: { entry: string; status: number; message: string }[]; listed: number; called: number };
    expect(rep.called).toBe(info!.entries.length);
    expect(rep.calls.map((c) => c.entry).sort()).toEqual([...info!.entries].sort());
    expect(rep.calls.map((c) => c.entry)).toEqual(expect.arrayContaining([...newerEntries, ...tableKernelEntries()]));
    for (const c of rep.calls) expect(c).toEqual({ entry: c.entry, status: headerValue("TM_NO_DEVICE"), message: expect.stringMatching(/no CUDA device/) });
    expect(r.status).toBe(0);
  });

  test("the kernels' per-element maths (element.h) equal the CPU code bit for bit", () => {
    const r = runCheck(["host"]);
    expect(r.stderr).toBe("");
    const rep = JSON.parse(r.stdout) as { checks: number; failures: number };
    expect(rep.checks).toBeGreaterThan(10_000_000);
    expect(rep.failures).toBe(0);
    expect(r.status).toBe(0);
  });

  test("the main addon links no CUDA library (a CPU-only user never needs one)", () => {
    const addon = path.join(root, "build", "Release", "taskmerge.node");
    if (!fs.existsSync(addon)) return; // the CUDA library alone was built
    const needed = execFileSync("readelf", ["-d", addon], { encoding: "utf8" });
    expect(needed).not.toMatch(/libcu|libnv/);
  });

  (hasDevice ? test : test.skip)("on a GPU: every implemented entry against the CPU ops (masks, DARE, histograms bit-identical)", () => {
    const r = runCheck(["compare", lib], 300_000);
    expect(r.stdout).toMatch(/ 0 failed\n$/);
    expect(r.status).toBe(0);
  }, 320_000);

  // Through the main addon: its backend loader (native/backend/loader.cpp)
  // opens taskmerge_cuda.so from the addon's directory and lists it in info().
  interface BackendInfo { name: string; origin: string; available: boolean; description: string; linalg: string }
  const backends = (): BackendInfo[] | undefined => (nativeAny.nativeInfo() as { backends?: BackendInfo[] }).backends;
  const sameDir = fs.existsSync(path.join(path.dirname(lib), "taskmerge.node")) && !process.env.TASKMERGE_ADDON;
  const viaAddon = sameDir && !!backends();
  const addonWhy = viaAddon ? "" : " (skipped: the addon has no backend loader, or is not beside the library)";

  // Where the CUDA driver is missing or reports no device, the loader does not open the
  // default library (mapping cuBLAS/cuSOLVER costs ~190 MB of RSS); a library named by
  // TASKMERGE_CUDA_LIBRARY is always opened, so that path is checked in a child process.
  type LoadInfo = { name: string; path: string; status: string };
  const cudaLoad = (): LoadInfo | undefined =>
    ((nativeAny.nativeInfo() as { backendLoads?: LoadInfo[] }).backendLoads ?? []).find((l) => l.name === "cuda");
  const skippedByDriver = viaAddon && /^was not loaded: /.test(cudaLoad()?.status ?? "");

  (skippedByDriver ? test : test.skip)(`without a CUDA device the addon does not open it, and says why${addonWhy}`, () => {
    expect(hasDevice).toBe(false);
    expect(backends()!.some((b) => b.name === "cuda")).toBe(false);
    expect(cudaLoad()).toEqual({ name: "cuda", path: path.resolve(lib), status: expect.stringMatching(/^was not loaded: .*(no CUDA driver|no device)/) });
  });

  (viaAddon && !hasDevice ? test : test.skip)(`the addon loads it and runs ops with device 'cuda' only where there is a device${addonWhy}`, () => {
    const addon = path.join(path.dirname(lib), "taskmerge.node");
    const script = `
      const a = require(${JSON.stringify(addon)});
      const cuda = a.info().backends.find((b) => b.name === "cuda");
      const f = () => Buffer.alloc(32);
      Promise.resolve().then(() => a.run("task_arithmetic", { n: 8, base: f(), baseDtype: "F32", experts: [f()], expertDtypes: ["F32"], coeffs: [1], out: f(), outDtype: "F32", device: "cuda" }))
        .then(() => null, (e) => e.message).then((err) => console.log(JSON.stringify({ cuda, err })));`;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env, TASKMERGE_CUDA_LIBRARY: path.resolve(lib) } });
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout) as { cuda: BackendInfo; err: string | null };
    expect(out.cuda).toEqual({ name: "cuda", origin: path.resolve(lib), available: false, description: info!.device.description, linalg: "cublas+cusolver" });
    expect(out.err).toMatch(/no CUDA device/);
  });

  (viaAddon && hasDevice ? test : test.skip)(`on a GPU, through the addon: ops with device 'cuda' give the CPU's bytes${addonWhy}`, async () => {
    // Above one sub-block of DeviceCall::blocks (2^20): three, the last partial, at a nonzero offset.
    const n = 2 * (1 << 20) + 4099;
    // bf16 test data: θ0 in [-0.01, 0.01), experts θ0 plus as much again (bf16 = the top half of a float32).
    let seed = 12345;
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const bf16 = (around?: Buffer) => {
      const b = Buffer.alloc(n * 2);
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        u32[0] = around ? around.readUInt16LE(2 * i) << 16 : 0;
        f32[0] += ((seed >>> 8) / 16777216 - 0.5) * 0.02;
        b.writeUInt16LE(u32[0] >>> 16, 2 * i);
      }
      return b;
    };
    const base = bf16();
    const experts = [bf16(base), bf16(base), bf16(base)];
    const common = { n, base, baseDtype: "BF16", experts, expertDtypes: ["BF16", "BF16", "BF16"], outDtype: "BF16", offset: 4096 };
    const cases: [string, Record<string, unknown>][] = [
      ["task_arithmetic", { coeffs: [0.3, 0.3, 0.3] }],
      ["dare_linear", { coeffs: [1, 1, 1], trim: "dare", density: 0.4, seed: 7, key: "layers.0.mlp.weight" }],
      ["ties_merge", { trim: "dare", density: 0.5, seed: 3, key: "k", majority: 1, merge: "mean", lambda: 1 }],
      ["consensus", { kind: "sum", tallLambda: 0.4, lambda: 0.3, k: 2 }],
    ];
    // The device's inputs and output also in pinned memory (the streaming engine's chunk buffers on cuda).
    const pinnedCopy = (b: Buffer) => {
      const p = native.pinnedBuffer(b.length, "cuda");
      if (!p) throw new Error("pinnedBuffer refused on a device");
      b.copy(p);
      return p;
    };
    const pinned = { ...common, base: pinnedCopy(base), experts: experts.map(pinnedCopy) };
    for (const [op, extra] of cases) {
      const outs = [Buffer.alloc(n * 2), Buffer.alloc(n * 2), pinnedCopy(Buffer.alloc(n * 2))];
      await runAny(op, { ...common, ...extra, out: outs[0], device: "cpu" });
      await runAny(op, { ...common, ...extra, out: outs[1], device: "cuda" });
      await runAny(op, { ...pinned, ...extra, out: outs[2], device: "cuda" });
      expect([op, outs[1].equals(outs[0]), outs[2].equals(outs[0])]).toEqual([op, true, true]);
    }
    // A non-finite input in the last sub-block: the CPU's error, element and all.
    const bad = Buffer.from(experts[1]);
    bad.writeUInt16LE(0x7fc0, 2 * (n - 3)); // bf16 NaN
    const errorOf = (device: string) =>
      runAny("task_arithmetic", { ...common, experts: [experts[0], bad, experts[2]], coeffs: [1, 1, 1], out: Buffer.alloc(n * 2), device }).then(
        () => "no error",
        (e: Error & { element?: number; index?: number }) => `${e.message} @${e.index} ${e.element}`,
      );
    expect(await errorOf("cuda")).toBe(await errorOf("cpu"));
  });
});


/**
 * The backend registry and device resolution: the CPU backend is always
 * there; an optional backend library (taskmerge_cuda.so, here a fake built
 * from test/fixtures/backends/fake_backend.c, picked with
 * TASKMERGE_CUDA_LIBRARY) is listed when it loads, noted when it does not,
 * and `device` resolves from what the registry reports.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { nativeInfo } from "../lib/native";
import { resolveDevice } from "../lib/device";
import { UsageError } from "../lib/errors";
import { makeZoo, ROOT, runCli, tmpDir } from "./helpers/fixtures";
import { buildFake, cc, probe } from "./helpers/fake_backend";

/** What the registry says and what each device resolves to, as \`rep\`. */
const GATHER = `
const { nativeInfo, runOp } = require("./dist/native");
const { resolveDevice } = require("./dist/device");
const tryDev = (d) => { try { return resolveDevice(d); } catch (e) { return "error: " + e.message; } };
const i = nativeInfo();
const rep = { backends: i.backends, loads: i.backendLoads, cpu: tryDev("cpu"), auto: tryDev("auto"), cuda: tryDev("cuda") };`;
const REPORT = `${GATHER}\nconsole.log(JSON.stringify(rep));`;

describe("backend registry", () => {
  test("lists the CPU backend with its device and linear algebra", () => {
    const info = nativeInfo();
    expect(info.backends[0]).toMatchObject({ name: "cpu", origin: "built in", available: true, linalg: info.blas });
    expect(info.backends[0].description).toMatch(/threads/);
  });

  test("looks for taskmerge_cuda.so beside the addon; its absence is no error", () => {
    const load = nativeInfo().backendLoads.find((l) => l.name === "cuda")!;
    if (process.env.TASKMERGE_CUDA_LIBRARY) return; // pointed elsewhere on purpose
    expect(path.basename(load.path)).toBe("taskmerge_cuda.so");
    if (!fs.existsSync(load.path)) expect(load.status).toBe("absent");
  });

  test("a library that does not load is noted in info(), and cuda is then a usage error", () => {
    const bad = path.join(tmpDir("tm-bad-backend-"), "taskmerge_cuda.so");
    fs.writeFileSync(bad, "not a shared object");
    const { out } = probe(bad, REPORT) as { out: { backends: { name: string }[]; loads: { status: string }[]; auto: string; cuda: string } };
    expect(out.backends.map((b) => b.name)).toEqual(["cpu"]);
    expect(out.loads[0].status).toMatch(/^does not load: /);
    expect(out.auto).toBe("cpu");
    expect(out.cuda).toMatch(/^error: device 'cuda' requested but its CUDA backend .* does not load/);
  });

  (cc ? test : test.skip)("a separately built backend is registered; 'no device' is a valid answer", () => {
    const { out } = probe(buildFake(0), REPORT) as { out: { backends: Record<string, unknown>[]; loads: { status: string }[]; auto: string; cuda: string } };
    expect(out.loads[0].status).toBe("loaded");
    expect(out.backends[1]).toMatchObject({ name: "cuda", available: false, description: "fake: no device found", linalg: "none" });
    expect(out.auto).toBe("cpu");
    expect(out.cuda).toMatch(/reports no device: fake: no device found/);
  });

  (cc ? test : test.skip)("auto picks a backend that reports a device; an op it lacks the entries for runs on the CPU", () => {
    const script = `${GATHER}
const data = new Float32Array([1, 2, NaN, 4]);
Promise.all([runOp("check_finite", { data, dtype: "F32", device: "cuda" }), runOp("check_finite", { data, dtype: "F32", device: "cpu" })]).then(
  ([g, c]) => console.log(JSON.stringify({ ...rep, op: [g, c] })), (e) => console.log(JSON.stringify({ ...rep, op: e.message })));`;
    const { out } = probe(buildFake(1), script) as { out: { auto: string; cuda: string; op: unknown } };
    expect(out.auto).toBe("cuda");
    expect(out.cuda).toBe("cuda");
    expect(out.op).toEqual([{ bad: 2 }, { bad: 2 }]);
  });

  (cc ? test : test.skip)("on a backend without host views every output of an op comes back after its kernel", () => {
    // The copying fake (the CPU kernels behind buffers of its own): tall_compress stages τ and two masks, all outputs.
    const script = `
const { runOp } = require("./dist/native");
const n = 64, mk = (s) => Buffer.from(new Float32Array(n).map((_, i) => Math.sin(i * s)).buffer);
const c = { n, base: mk(0.1), baseDtype: "F32", experts: [mk(0.3), mk(0.7)], expertDtypes: ["F32", "F32"] };
(async () => {
  const res = {};
  for (const device of ["cpu", "cuda"]) {
    const tau = Buffer.alloc(n * 4), masks = [Buffer.alloc(n / 8), Buffer.alloc(n / 8)];
    await runOp("tall_compress", { ...c, device, kind: "sum", tau, tauDtype: "F32", lambdas: [0.4, 0.4], masks });
    res[device] = [tau, ...masks].map((b) => b.toString("hex"));
  }
  console.log(JSON.stringify(res));
})();`;
    const { out } = probe(buildFake(3), script) as { out: { cpu: string[]; cuda: string[] } };
    expect(out.cpu[1]).not.toMatch(/^0+$/);
    expect(out.cuda).toEqual(out.cpu);
  });

  (cc ? test : test.skip)("a backend built for another ABI version is refused and noted", () => {
    const { out } = probe(buildFake(2), REPORT) as { out: { backends: unknown[]; loads: { status: string }[] } };
    expect(out.backends).toHaveLength(1);
    expect(out.loads[0].status).toMatch(/another backend ABI version/);
  });
});

/**
 * A backend without host views (fake mode 3: counted buffers and copies,
 * linear_combine for float32 without a trim, the asynchronous copies, every
 * other kernel NULL): the staging pool, the sub-block pipeline, pinned chunk
 * buffers and the CPU fallback, against the CPU's bytes.
 */
describe("transfers to a backend without host views", () => {
  const counts = `
const counts = () => Object.fromEntries([...nativeInfo().backends[1].description.matchAll(/(\\w+) (\\d+)/g)].map((m) => [m[1], +m[2]]));`;
  // Integer-valued float32 chunks: the fake's float64 sums are exact, so its bytes must be the CPU's.
  const chunk = `
const chunkOf = (n, T) => {
  const f = (s) => Float32Array.from({ length: n }, (_, i) => ((i * 7 + s * 13) % 61) - 30);
  return { n, base: f(0), baseDtype: "F32", experts: Array.from({ length: T }, (_, t) => f(t + 1)), expertDtypes: Array(T).fill("F32"), outDtype: "F32", coeffs: [0.5, -2].slice(0, T) };
};
const run = async (op, c, device, extra = {}) => {
  const out = new Float32Array(c.n);
  const r = await runOp(op, { ...c, ...extra, out, device });
  return { out: Buffer.from(out.buffer).toString("base64"), r };
};`;
  let fake = "";
  beforeAll(() => {
    if (cc) fake = buildFake("streaming");
  });

  (cc ? test : test.skip)("steady state: a chunk op stages through pooled buffers, no allocation after the first chunk", () => {
    const script = `${GATHER}${counts}${chunk}
(async () => {
  const c = chunkOf(1000, 2), cpu = await run("task_arithmetic", c, "cpu");
  const steps = [];
  for (let i = 0; i < 4; i++) {
    const g = await run("task_arithmetic", c, "cuda");
    steps.push({ same: g.out === cpu.out, ...counts() });
  }
  const freed = (await runOp("device_release", { device: "cuda" })).freed;
  console.log(JSON.stringify({ steps, freed, after: counts() }));
})();`;
    const { out } = probe(fake, script) as { out: { steps: Record<string, number | boolean>[]; freed: number; after: Record<string, number> } };
    expect(out.steps.every((s) => s.same)).toBe(true);
    // base + 2 experts + out on the first chunk, then none; 3 copies in and 1 out per chunk.
    expect(out.steps.map((s) => s.allocs)).toEqual([4, 4, 4, 4]);
    expect(out.steps.map((s) => s.in)).toEqual([3, 6, 9, 12]);
    expect(out.steps.map((s) => s.out)).toEqual([1, 2, 3, 4]);
    expect(out.steps.map((s) => s.frees)).toEqual([0, 0, 0, 0]);
    expect(out.freed).toBe(4);
    expect(out.after.frees).toBe(4);
  });

  (cc ? test : test.skip)("a chunk above one sub-block runs in overlapped sub-blocks with the CPU's bytes", () => {
    const n = 3 * 2 ** 20 + 5; // four sub-blocks of 2^20 elements, the last of 5
    const script = `${GATHER}${counts}${chunk}
(async () => {
  const c = chunkOf(${n}, 2), cpu = await run("task_arithmetic", c, "cpu"), g = await run("task_arithmetic", c, "cuda");
  const again = await run("task_arithmetic", c, "cuda");
  console.log(JSON.stringify({ same: g.out === cpu.out && again.out === cpu.out, ...counts() }));
})();`;
    const { out } = probe(fake, script) as { out: Record<string, number | boolean> };
    expect(out.same).toBe(true);
    // Per call: 4 sub-blocks × (base + 2 experts) uploads, 4 downloads, 4 waits, 4 kernels; buffers allocated once.
    expect(out).toMatchObject({ allocs: 4, in: 0, out: 0, in_async: 24, out_async: 8, waits: 8, kernels: 8 });
  });

  (cc ? test : test.skip)("an entry the backend lacks (NULL) or refuses runs on the CPU, and the result says which", () => {
    const script = `${GATHER}${counts}${chunk}
(async () => {
  const c = chunkOf(5000, 2);
  const ties = { trim: "magnitude", thresholds: [0, 0], majority: 1, merge: "sum", lambda: 0.7 };
  const dare = { trim: "dare", density: 0.5, seed: 3, key: "w" };
  const res = {};
  for (const [op, extra] of [["ties_merge", ties], ["dare_linear", dare]]) {
    const g = await runRawOp(op, { ...c, ...extra, out: new Float32Array(c.n), device: "cuda" });
    const cpu = await run(op, c, "cpu", extra), dev = await run(op, c, "cuda", extra);
    res[op] = { same: dev.out === cpu.out, fallback: g.deviceFallback, passedOn: "deviceFallback" in dev.r };
  }
  console.log(JSON.stringify({ res, ...counts() }));
})();`;
    const { out } = probe(fake, script.replace('require("./dist/native")', 'require("./dist/native"); const { runRawOp } = require("./dist/native")')) as {
      out: { res: Record<string, { same: boolean; fallback: string; passedOn: boolean }>; kernels: number };
    };
    expect(out.res.ties_merge).toEqual({ same: true, fallback: "ties_merge", passedOn: false });
    expect(out.res.dare_linear).toEqual({ same: true, fallback: "linear_combine", passedOn: false });
    expect(out.kernels).toBe(0);
  });

  (cc ? test : test.skip)("pinned buffers are registered once and unregistered when collected", () => {
    const script = `${GATHER}${counts}
const { pinnedBuffer } = require("./dist/native");
let b = pinnedBuffer(10000, "cuda");
const made = { length: b.length, cpu: pinnedBuffer(100, "cpu") === undefined, ...counts() };
b = undefined;
// The chunk pool pins a device's buffers once and reuses them; CPU requests get ordinary ones.
const { BufferPool } = require("./dist/engine/buffer_pool");
const pool = new BufferPool();
const first = pool.acquire(5000, "cuda");
pool.release(first);
const again = pool.acquire(4000, "cuda"), cpuBuf = pool.acquire(4000, "cpu");
const pooled = { reused: again.buffer === first.buffer, cpuOwn: cpuBuf.buffer !== first.buffer, ...counts() };
global.gc();
setTimeout(() => { global.gc(); setTimeout(() => console.log(JSON.stringify({ made, pooled, after: counts() })), 50); }, 50);`;
    const r = spawnSync(process.execPath, ["--expose-gc", "-e", script], { cwd: ROOT, env: { ...process.env, TASKMERGE_CUDA_LIBRARY: fake }, encoding: "utf8" });
    if (r.status !== 0) throw new Error(r.stderr);
    const out = JSON.parse(r.stdout) as { made: Record<string, number | boolean>; pooled: Record<string, number | boolean>; after: Record<string, number> };
    expect(out.made).toMatchObject({ length: 10000, cpu: true, registered: 1, unregistered: 0 });
    expect(out.pooled).toMatchObject({ reused: true, cpuOwn: true, registered: 2 });
    // The collected one is unregistered; the pool's are still held.
    expect(out.after).toMatchObject({ registered: 2, unregistered: 1 });
  });

  (cc ? test : test.skip)("a merge on the device lists the ops that fell back; the CLI notes them for --device cuda", async () => {
    const dir = tmpDir("tm-fallback-");
    makeZoo(dir, { T: 2 });
    const args = ["merge", "--base", path.join(dir, "base.safetensors"), "--expert", path.join(dir, "task0.safetensors"),
      "--expert", path.join(dir, "task1.safetensors")];
    const env = { TASKMERGE_CUDA_LIBRARY: fake };
    const dev = await runCli([...args, "--method", "dare_linear", "--device", "cuda", "--out", path.join(dir, "dev.safetensors"), "--json", "-q"], { env });
    const cpu = await runCli([...args, "--method", "dare_linear", "--device", "cpu", "--out", path.join(dir, "cpu.safetensors"), "-q"], { env });
    const ta = await runCli([...args, "--method", "task_arithmetic", "--device", "cuda", "--out", path.join(dir, "ta.safetensors"), "--json", "-q"], { env });
    expect([dev.code, cpu.code, ta.code]).toEqual([0, 0, 0]);
    expect(JSON.parse(dev.stdout).deviceFallbacks).toEqual(["dare_linear"]);
    expect(dev.stderr).toContain("note: ran on the CPU (the cuda backend lacks them): dare_linear\n");
    expect(fs.readFileSync(path.join(dir, "dev.safetensors")).equals(fs.readFileSync(path.join(dir, "cpu.safetensors")))).toBe(true);
    expect(cpu.stderr).not.toContain("note:");
    // task_arithmetic runs on the fake itself: nothing fell back.
    expect(JSON.parse(ta.stdout).deviceFallbacks).toBeUndefined();
    expect(ta.stderr).not.toContain("note:");
  });
});

describe("device resolution", () => {
  const hasCuda = () => nativeInfo().backends.some((b) => b.name === "cuda" && b.available);

  test("cpu is always cpu; auto is cpu without a usable CUDA backend", () => {
    expect(resolveDevice("cpu")).toBe("cpu");
    expect(resolveDevice(undefined)).toBe(hasCuda() ? "cuda" : "cpu");
    expect(resolveDevice("auto")).toBe(hasCuda() ? "cuda" : "cpu");
  });

  test("cuda without a CUDA backend and an unknown device are usage errors", () => {
    if (!hasCuda()) {
      expect(() => resolveDevice("cuda")).toThrow(UsageError);
      // Without the library: not installed; with it (CI builds it) on a machine without a GPU: no device
      // (the library is not even opened where the CUDA driver reports no device).
      const info = nativeInfo();
      const status = info.backendLoads.find((l) => l.name === "cuda")?.status ?? "absent";
      expect(() => resolveDevice("cuda")).toThrow(
        info.backends.some((b) => b.name === "cuda")
          ? /device 'cuda' requested but its CUDA backend \(.*taskmerge_cuda\.so\) reports no device: /
          : status === "absent"
            ? /device 'cuda' requested but no CUDA backend is installed/
            : /device 'cuda' requested but its CUDA backend .*taskmerge_cuda\.so was not loaded: /,
      );
    }
    expect(() => resolveDevice("tpu" as "cpu")).toThrow(/unknown device 'tpu'/);
  });
});

/**
 * The backend registry and device resolution: the CPU backend is always
 * there; an optional backend library (taskmerge_cuda.so, here a fake built
 * from test/fixtures/backends/fake_backend.c, picked with
 * TASKMERGE_CUDA_LIBRARY) is listed when it loads, noted when it does not,
 * and `device` resolves from what the registry reports.
 */
import * as fs from "fs";
import * as path from "path";
import { nativeInfo } from "../lib/native";
import { resolveDevice } from "../lib/device";
import { UsageError } from "../lib/errors";
import { tmpDir } from "./helpers/fixtures";
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

  (cc ? test : test.skip)("auto picks a backend that reports a device; an entry it lacks is a clear error", () => {
    const script = `${GATHER}
runOp("check_finite", { data: Buffer.alloc(8), dtype: "F32", device: "cuda" }).then(
  () => console.log(JSON.stringify({ ...rep, op: "ok" })), (e) => console.log(JSON.stringify({ ...rep, op: e.message })));`;
    const { out } = probe(buildFake(1), script) as { out: { auto: string; cuda: string; op: string } };
    expect(out.auto).toBe("cuda");
    expect(out.cuda).toBe("cuda");
    expect(out.op).toBe("check_finite: not supported by the 'cuda' backend");
  });

  (cc ? test : test.skip)("a backend built for another ABI version is refused and noted", () => {
    const { out } = probe(buildFake(2), REPORT) as { out: { backends: unknown[]; loads: { status: string }[] } };
    expect(out.backends).toHaveLength(1);
    expect(out.loads[0].status).toMatch(/another backend ABI version/);
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

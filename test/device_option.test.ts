/**
 * compress and extract take merge's `device` option: resolved by the one
 * resolveDevice (lib/device.ts), checked before anything is written, handed
 * by the job to every native op it runs, and named in the report. A spy at
 * the lib/native boundary (runRawOp) records each op's device.
 */
import * as fs from "fs";
import * as path from "path";
import * as addon from "../lib/native/addon";
import { compress } from "../lib/api/compress";
import { extract } from "../lib/api/extract";
import { merge } from "../lib/api/merge";
import { runCompress } from "../lib/job/compress";
import { runExtract } from "../lib/job/extract";
import { nativeInfo } from "../lib/native";
import { listTree, makeZoo, runCli, smallModel, tmpDir } from "./helpers/fixtures";

/** Ops that take no device: the host-side window ops (backend.h: what stays on the host) and the
 * state buffer ops after state_alloc, whose handle carries its device. */
const HOST_ONLY = new Set(["ties_window_bounds", "ties_window_pick", "state_fill", "state_read", "state_free"]);
const hasCuda = () => nativeInfo().backends.some((b) => b.name === "cuda" && b.available);

/** Runs `fn` recording every native op and its `device`; the ops themselves run on the CPU. */
async function recordingOps<T>(fn: () => Promise<T>): Promise<{ result: T; calls: [string, unknown][] }> {
  const real = addon.runRawOp;
  const calls: [string, unknown][] = [];
  const spy = jest.spyOn(addon, "runRawOp").mockImplementation((op, args) => {
    calls.push([op, args.device]);
    return real(op, { ...args, device: args.device === undefined ? undefined : "cpu" });
  });
  try {
    return { result: await fn(), calls };
  } finally {
    spy.mockRestore();
  }
}

const dir = tmpDir("device-");
const zoo = makeZoo(dir, { T: 2, keys: smallModel("F32"), seed: 9 });
const experts = zoo.experts.map((e, t) => ({ path: e.path, name: `task${t}`, weight: 1 }));

describe("the job hands its device to every native op", () => {
  const searchAll = { grid: [0.3, 0.5], score: async () => 1 };
  test.each([
    ["sum", "τ sum, fixed λ", { tau: "sum" as const, tallLambda: [0.4, 0.4] }, ["tall_compress"]],
    ["window", "τ TIES global (sampled window), λ search", { tau: "ties" as const, scope: "global" as const, tallLambda: searchAll },
      ["tall_compress", "tall_mask", "tall_apply", "ties_sample", "ties_window"]],
    ["histogram", "τ TIES global (histogram passes)", { tau: "ties" as const, scope: "global" as const, tallLambda: [0.4, 0.4] },
      ["tall_compress", "magnitude_hist", "magnitude_pick"]],
    ["tensor", "τ TIES per tensor", { tau: "ties" as const, scope: "tensor" as const, tallLambda: [0.4, 0.4] }, ["tall_compress", "magnitude_small"]],
  ])("compress, %s: %s", async (name, _what, o, expected) => {
    const out = path.join(dir, `bundle-${name}`);
    if (name === "histogram") process.env.TASKMERGE_TIES_SELECT = "histogram";
    try {
      const { result, calls } = await recordingOps(() =>
        runCompress({ base: zoo.base.path, experts, out, density: 0.3, scope: "global", device: "cuda", chunkElems: 64, ...o }),
      );
      const ops = new Set(calls.map(([op]) => op));
      for (const op of expected) expect(ops).toContain(op);
      expect(calls.filter(([op, d]) => !HOST_ONLY.has(op) && d !== "cuda")).toEqual([]);
      expect(result.device).toBe("cuda");
    } finally {
      delete process.env.TASKMERGE_TIES_SELECT;
    }
  });

  test("extract", async () => {
    const bundle = path.join(dir, "bundle-sum");
    const out = path.join(dir, "rebuilt.safetensors");
    const { result, calls } = await recordingOps(() => runExtract({ bundle, task: "task1", base: zoo.base.path, out, device: "cuda", chunkElems: 64 }));
    expect(calls.map(([op]) => op)).toContain("tall_apply");
    expect(calls.filter(([, d]) => d !== "cuda")).toEqual([]);
    expect(result.device).toBe("cuda");
  });
});

describe("the option is checked and reported like merge's", () => {
  test("a bad device is one clear UsageError and nothing is written", async () => {
    const out = path.join(dir, "bad-bundle");
    const bad = "tpu" as "cpu";
    await expect(compress({ base: zoo.base.path, experts: experts.map((e) => e.path), out, device: bad })).rejects.toThrow(
      /^unknown device 'tpu' \(auto, cpu or cuda\)$/,
    );
    await expect(extract({ bundle: path.join(dir, "bundle-sum"), task: "task0", base: zoo.base.path, out, device: bad })).rejects.toThrow(
      /^unknown device 'tpu' \(auto, cpu or cuda\)$/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  test("the reports name the device resolved (auto is cpu without a usable CUDA backend)", async () => {
    const want = hasCuda() ? "cuda" : "cpu";
    const bundle = path.join(dir, "auto-bundle");
    expect((await compress({ base: zoo.base.path, experts: experts.map((e) => e.path), out: bundle })).device).toBe(want);
    expect((await compress({ base: zoo.base.path, experts: experts.map((e) => e.path), out: path.join(dir, "cpu-bundle"), device: "cpu" })).device).toBe("cpu");
    expect((await extract({ bundle, task: "task0", base: zoo.base.path, out: path.join(dir, "auto.safetensors") })).device).toBe(want);
    expect((await merge({ base: zoo.base.path, experts: experts.map((e) => e.path), method: "average", out: path.join(dir, "m.safetensors"), device: "cpu" })).device).toBe("cpu");
  });
});

describe("the CLI's --device (from DEVICE_PARAM)", () => {
  const compressArgs = (out: string) => ["compress", "--base", zoo.base.path, ...experts.flatMap((e) => ["--expert", e.path]), "--out", out];
  const extractArgs = (out: string) => ["extract", "--bundle", path.join(dir, "bundle-sum"), "--task", "task0", "--base", zoo.base.path, "--out", out];

  test.each([
    ["compress", compressArgs],
    ["extract", extractArgs],
  ])("%s: an unknown device is one line, nothing written", async (_cmd, args) => {
    const before = listTree(dir);
    const r = await runCli([...args(path.join(dir, "cli-bad")), "--device", "tpu"]);
    expect(r.code).not.toBe(0);
    // The error on one line, then commander's usual pointer to --help.
    const [line, ...rest] = r.stderr.trim().split("\n");
    expect(line).toBe("error: option '--device <s>' argument 'tpu' is invalid. Allowed choices are auto, cpu, cuda.");
    expect(rest).toEqual(["(run with --help for usage)"]);
    expect(listTree(dir)).toEqual(before);
  });

  (hasCuda() ? test.skip : test).each([
    ["compress", compressArgs],
    ["extract", extractArgs],
  ])("%s: --device cuda without a usable CUDA backend is refused, saying why; nothing written", async (_cmd, args) => {
    const before = listTree(dir);
    const r = await runCli([...args(path.join(dir, "cli-cuda")), "--device", "cuda"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^taskmerge: device 'cuda' requested but (no CUDA backend is installed|its CUDA backend) .*$/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(listTree(dir)).toEqual(before);
  });

  test("--device cpu runs, and --json says so", async () => {
    const out = path.join(dir, "cli-cpu");
    const c = await runCli([...compressArgs(out), "--device", "cpu", "--json"]);
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout).device).toBe("cpu");
    const e = await runCli(["extract", "--bundle", out, "--task", "task1", "--base", zoo.base.path, "--out", path.join(dir, "cli-cpu.safetensors"), "--device", "cpu", "--json"]);
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout).device).toBe("cpu");
  });
});

/**
 * `taskmerge info` and `taskmerge --version` name the native addon in use:
 * its file, whether it is a local build (and by which tool) or the prebuilt
 * one, its linear algebra and threads — as the loaded addon itself reports.
 */
import * as fs from "fs";
import * as path from "path";
import { addonLocation, nativeInfo } from "../lib/native";
import { runCli } from "./helpers/fixtures";

const gypPath = process.env.TASKMERGE_GYP_ADDON;
const noOverride = { TASKMERGE_ADDON: "" };

describe("taskmerge info", () => {
  test("reports the addon the library loads", async () => {
    const r = await runCli(["info", "--json"], { env: noOverride });
    expect(r.code).toBe(0);
    const native = nativeInfo();
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({
      addon: { path: addonLocation().path, origin: addonLocation().origin, builtWith: native.build },
      linearAlgebra: native.blas,
      threads: native.threads,
    });
    expect(["cmake-js", "node-gyp"]).toContain(native.build);
    expect(["openblas", "builtin"]).toContain(native.blas);
    const text = await runCli(["info"], { env: noOverride });
    expect(text.stdout).toContain(`addon:          ${addonLocation().path}`);
    expect(text.stdout).toContain(`linear algebra: ${native.blas}`);
    expect(text.stdout).toContain(`built from source with ${native.build}`);
  });

  test("the thread count follows TASKMERGE_THREADS", async () => {
    const r = await runCli(["info", "--json"], { env: { ...noOverride, TASKMERGE_THREADS: "3" } });
    expect(JSON.parse(r.stdout).threads).toBe(3);
  });

  (gypPath ? test : test.skip)("names an addon chosen by TASKMERGE_ADDON (the node-gyp build)", async () => {
    const r = await runCli(["info", "--json"], { env: { TASKMERGE_ADDON: gypPath } });
    expect(JSON.parse(r.stdout)).toMatchObject({
      addon: { path: path.resolve(gypPath!), origin: "TASKMERGE_ADDON", builtWith: "node-gyp" },
      linearAlgebra: "builtin",
    });
  });

  test("an addon that does not load: info fails in one line, --version still prints the version", async () => {
    const missing = path.join(fs.realpathSync("/tmp"), "no-such-taskmerge.node");
    const r = await runCli(["info"], { env: { TASKMERGE_ADDON: missing } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringContaining(`taskmerge: error: the native addon ${missing} (TASKMERGE_ADDON) does not load`)]);
    const v = await runCli(["--version"], { env: { TASKMERGE_ADDON: missing } });
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(new RegExp(`^\\d+\\.\\d+\\.\\d+\\naddon: none loads \\(the native addon ${missing}`));
  });
});

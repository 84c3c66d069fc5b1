/**
 * compress's τMTL options (tau, density, scope) are ParamSpec declarations
 * (lib/tall/params.ts): the CLI's flags come from them and both the CLI and
 * compress() check values with them, with the same messages as merge's
 * method parameters; nothing is written for a bad value.
 */
import * as fs from "fs";
import * as path from "path";
import { buildProgram } from "../lib/cli/main";
import { compress } from "../lib/api/compress";
import { COMPRESS_PARAMS } from "../lib/tall/params";
import { makeZoo, runCli, smallModel, tmpDir } from "./helpers/fixtures";

const helpOf = () => buildProgram().commands.find((c) => c.name() === "compress")!.helpInformation();

test("the --tau, --density and --scope flags follow their declarations", () => {
  const help = helpOf();
  for (const p of COMPRESS_PARAMS) expect(help).toContain(`--${p.name} <${p.type === "number" ? "x" : "s"}>`);
  const density = COMPRESS_PARAMS.find((p) => p.name === "density")! as { default: number };
  const saved = density.default;
  density.default = 0.35;
  try {
    expect(helpOf().replace(/\s+/g, " ")).toContain("TIES density for --tau ties (default 0.35)");
  } finally {
    density.default = saved;
  }
});

describe("values are checked against the declarations", () => {
  const dir = tmpDir("compress-params-");
  const zoo = makeZoo(dir, { T: 2, keys: smallModel("F32"), seed: 5 });
  const experts = zoo.experts.map((e) => e.path);

  test.each([
    [{ density: 1.5 }, "compress: parameter 'density' must be ≤ 1 (got 1.5)"],
    [{ density: -0.1 }, "compress: parameter 'density' must be ≥ 0 (got -0.1)"],
    [{ density: NaN }, "compress: parameter 'density' must be a finite number (got null)"],
    [{ tau: "mean" }, "compress: parameter 'tau' must be one of sum, ties (got 'mean')"],
    [{ scope: "layer" }, "compress: parameter 'scope' must be one of global, tensor (got 'layer')"],
  ])("compress(%p) is refused", async (bad, message) => {
    const out = path.join(dir, "api-out");
    await expect(compress({ base: zoo.base.path, experts, out, ...(bad as object) })).rejects.toThrow(message);
    expect(fs.existsSync(out)).toBe(false);
  });

  test("the CLI: exit 2, one line, nothing written; a string density is converted", async () => {
    const out = path.join(dir, "cli-out");
    const args = ["compress", "--base", zoo.base.path, ...experts.flatMap((e) => ["--expert", e]), "--out", out, "-q"];
    const bad = await runCli([...args, "--tau", "ties", "--density", "2"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe("taskmerge: compress: parameter 'density' must be ≤ 1 (got 2)");
    expect(fs.existsSync(out)).toBe(false);
    const ok = await runCli([...args, "--tau", "ties", "--density", "0.3", "--scope", "tensor"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, "bundle.json"), "utf8")).tau).toMatchObject({ kind: "ties", density: 0.3, scope: "tensor" });
  });
});

/**
 * The methods' parameters as the command line shows them, checked against the
 * declarations (ParamSpec): `taskmerge methods`, `merge --help`, a flag for
 * every parameter, the parameters in the summary line, and mergekit's dtype
 * names accepted by --dtype.
 */
import * as path from "path";
import { listMethods } from "../lib";
import { makeZoo, readHeader, runCli, tmpDir } from "./helpers/fixtures";

const flag = (name: string) => `--${name.replace(/_/g, "-")}`;
const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/** The line of `text` that names parameter `label` in `method`'s block. */
function paramLine(text: string, method: string, label: string): string | undefined {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l === method || l.startsWith(`${method} (`));
  if (start < 0) return undefined;
  const end = lines.findIndex((l, i) => i > start && l === "");
  return lines.slice(start, end).find((l) => l.trim().startsWith(`${label} `));
}

describe("taskmerge methods", () => {
  test("lists every method with every parameter, its default and description", async () => {
    const r = await runCli(["methods"]);
    expect(r.code).toBe(0);
    for (const m of listMethods()) {
      expect(r.stdout).toContain(`${m.name}${m.needsStats ? " (needs statistics" : "\n"}`);
      for (const p of m.params) {
        const line = paramLine(r.stdout, m.name, p.name);
        expect({ method: m.name, p: p.name, line }).toEqual({ method: m.name, p: p.name, line: expect.stringContaining(`default ${show(p.default)}`) });
        expect(line).toContain(p.description);
      }
    }
  });

  test("one method; --json gives the declarations; an unknown method is a usage error", async () => {
    const one = await runCli(["methods", "ties"]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^ties\n/);
    expect(one.stdout).not.toContain("dare_linear");
    const json = await runCli(["methods", "--json"]);
    const decl = listMethods().map((m) => ({ name: m.name, description: m.description, needsStats: !!m.needsStats, params: m.params }));
    expect(JSON.parse(json.stdout)).toEqual(JSON.parse(JSON.stringify(decl)));
    const bad = await runCli(["methods", "slerp"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown method 'slerp'/);
  });
});

describe("taskmerge merge", () => {
  test("--help has a flag for every parameter and each method's parameters with defaults", async () => {
    const r = await runCli(["merge", "--help"]);
    expect(r.code).toBe(0);
    const options = r.stdout.slice(0, r.stdout.indexOf("Methods and their parameters"));
    for (const m of listMethods())
      for (const p of m.params) {
        expect(options).toMatch(new RegExp(`^  ${flag(p.name)} <`, "m"));
        expect(paramLine(r.stdout, m.name, flag(p.name))).toContain(`default ${show(p.default)}`);
      }
  });

  test("the summary line prints the parameters used; generated flags (--merge-func) and mergekit dtype names work", async () => {
    const dir = tmpDir("cli-methods-");
    makeZoo(dir, { T: 2 });
    const out = path.join(dir, "m.safetensors");
    const r = await runCli(["merge", "--base", path.join(dir, "base.safetensors"), "--expert", path.join(dir, "task0.safetensors"),
      "--expert", path.join(dir, "task1.safetensors"), "--method", "ties", "--density", "0.3", "--merge-func", "sum", "--dtype", "bfloat16", "--out", out]);
    expect(r.stderr).toMatch(/^merged \d+ tensors with ties \(density=0\.3, scope=global, lambda=1, merge_func=sum\) into /m);
    expect(r.code).toBe(0);
    expect(readHeader(out)["embed.weight"].dtype).toBe("BF16");
  });
});

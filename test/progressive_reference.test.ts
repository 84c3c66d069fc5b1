/**
 * Progressive lot / regmean against a reference loop in PyTorch
 * (test/progressive/reference.py: its own hooks, groups and float64 closed
 * forms, nothing of taskmerge). taskmerge runs the CLI with
 * scripts/collect_stats.py as --stats-command (--weights {model} --keys {keys}),
 * so the collector's item is checked on the way. The same reference in its
 * non-progressive mode differs by far more than the tolerance, so the test
 * tells statistics on the partial model from statistics on each expert.
 * Skipped, with a message, when /usr/bin/python3 has no torch.
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { ROOT, readSafetensors, values, tmpDir, runCli, listTree } from "./helpers/fixtures";

const PY = "/usr/bin/python3";
const hasTorch = fs.existsSync(PY) && spawnSync(PY, ["-c", "import torch, numpy"], { stdio: "ignore" }).status === 0;
if (!hasTorch) console.warn("progressive_reference.test: skipped, /usr/bin/python3 with torch and numpy not found");
const maybe = hasTorch ? test : test.skip;

const SCRIPTS = path.join(ROOT, "scripts");
const HERE = path.join(ROOT, "test", "progressive");

function py(args: string[]): void {
  const r = spawnSync(PY, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`python ${args[0]} failed:\n${r.stderr}`);
}

/** max |a − b| over every key, relative to the largest |b|. */
function maxDiff(a: string, b: string): number {
  const A = readSafetensors(a), B = readSafetensors(b);
  expect(Object.keys(A).sort()).toEqual(Object.keys(B).sort());
  let diff = 0, scale = 0;
  for (const k of Object.keys(B)) {
    const x = values(A[k]), y = values(B[k]);
    for (let i = 0; i < y.length; i++) {
      diff = Math.max(diff, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(y[i]));
    }
  }
  return diff / scale;
}

async function check(o: { depth: number; method: string; params: string[]; granularity: "block" | "module"; order?: string[] }) {
  const dir = tmpDir("tm-prog-ref-");
  py([path.join(HERE, "generate.py"), SCRIPTS, HERE, dir, String(o.depth)]);
  const args = ["--granularity", o.granularity];
  const refArgs: string[] = [];
  if (o.order) {
    fs.writeFileSync(path.join(dir, "order.txt"), o.order.join("\n") + "\n");
    args.push("--module-order", path.join(dir, "order.txt"));
    refArgs.push(path.join(dir, "order.txt"));
  }
  const out = path.join(dir, "merged.safetensors");
  const cmd =
    `${PY} ${SCRIPTS}/collect_stats.py --module ${HERE}/model.py --factory make${o.depth} --threads 1 ` +
    `--weights {model} --keys {keys} --inputs ${dir}/inputs_{expert}.npy --out {out}`;
  const r = await runCli([
    "merge", "--base", path.join(dir, "base.safetensors"), "--expert", path.join(dir, "a.safetensors"), "--expert", path.join(dir, "b.safetensors"),
    "--method", o.method, ...o.params, "--progressive", ...args, "--stats-command", cmd, "--out", out, "--json", "-q",
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const ref = path.join(dir, "ref.safetensors");
  const usual = path.join(dir, "usual.safetensors");
  py([path.join(HERE, "reference.py"), SCRIPTS, HERE, dir, String(o.depth), o.method, o.granularity, ref, ...refArgs]);
  py([path.join(HERE, "reference.py"), SCRIPTS, HERE, dir, String(o.depth), o.method, "none", usual]);
  // Elementwise parts (norm scales, biases) are computed in float32 by design: 1e-6, not 1e-12.
  expect(maxDiff(out, ref)).toBeLessThan(1e-6);
  expect(maxDiff(usual, ref)).toBeGreaterThan(1e-2);
  // Only the inputs and the result remain: the temporary folder is gone.
  expect(listTree(dir).filter((f) => f.startsWith("."))).toEqual([]);
  return JSON.parse(r.stdout).details.progressive;
}

describe("progressive merge vs a PyTorch layer-by-layer reference", () => {
  maybe("lot, block granularity: embedding first, blocks in order, head last", async () => {
    const d = await check({ depth: 2, method: "lot", params: ["--lambda", "1.5"], granularity: "block" });
    expect(d.groups.map((g: { name: string }) => g.name)).toEqual(["first", "blocks.0", "blocks.1", "last"]);
    expect(d.groups[0].keys).toEqual(["embed.bias", "embed.weight"]);
    expect(d.collectorRuns).toBe(8);
  });

  maybe("regmean, module granularity in the order of a file", async () => {
    const order = ["embed", "blocks.0.ln", "blocks.0.fc1", "blocks.0.fc2", "head"];
    const d = await check({ depth: 1, method: "regmean", params: ["--alpha", "0.9"], granularity: "module", order });
    expect(d.groups.map((g: { name: string }) => g.name)).toEqual(order);
    expect(d.collectorRuns).toBe(10);
  });
});

/**
 * Progressive lot / regmean against a reference loop in PyTorch
 * (test/progressive/reference.py: its own hooks, groups and float64 closed
 * forms, nothing of taskmerge). Block granularity runs the CLI with
 * scripts/collect_stats.py as --stats-command (--weights {model} --keys {keys});
 * module granularity runs merge() with a collectStats callback served by one
 * long-lived Python process calling collect_stats() (one torch import, not ten). The same reference in its
 * non-progressive mode differs by far more than the tolerance, so the test
 * tells statistics on the partial model from statistics on each expert.
 * Skipped, with a message, when /usr/bin/python3 has no torch.
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { spawn } from "child_process";
import * as readline from "readline";
import { ROOT, readSafetensors, values, tmpDir, runCli, listTree } from "./helpers/fixtures";
import { merge } from "../lib";

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

// One block keeps the collector runs (a torch import each) few: first, blocks.0, last.
const DEPTH = 1;
let data = "";
beforeAll(() => {
  if (!hasTorch) return;
  data = tmpDir("tm-prog-data-");
  py([path.join(HERE, "generate.py"), SCRIPTS, HERE, data, String(DEPTH)]);
});

/** Statistics through one Python process: request lines in, "ok" lines out. */
function pythonCollector(dir: string) {
  const child = spawn(PY, [path.join(HERE, "stats_server.py"), SCRIPTS, HERE, dir, String(DEPTH)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: ((l: string) => void)[] = [];
  lines.on("line", (l) => waiting.shift()?.(l));
  return {
    collect: async ({ model, expert, keys, out }: { model: string; expert: string; keys: string[]; out: string }) => {
      const answer = new Promise<string>((resolve) => waiting.push(resolve));
      child.stdin.write(JSON.stringify({ model, expert, keys, out }) + "\n");
      const a = await answer;
      if (a !== "ok") throw new Error(`collector: ${a}`);
      return out;
    },
    close: () => child.stdin.end(),
  };
}

async function check(o: { method: string; params: Record<string, unknown>; granularity: "block" | "module"; order?: string[] }) {
  const dir = tmpDir("tm-prog-ref-");
  for (const f of fs.readdirSync(data)) fs.copyFileSync(path.join(data, f), path.join(dir, f));
  const refArgs: string[] = [];
  const orderFile = path.join(dir, "order.txt");
  if (o.order) {
    fs.writeFileSync(orderFile, o.order.join("\n") + "\n");
    refArgs.push(orderFile);
  }
  const out = path.join(dir, "merged.safetensors");
  const inputs = { base: path.join(dir, "base.safetensors"), experts: ["a", "b"].map((e) => path.join(dir, `${e}.safetensors`)) };
  let details;
  if (o.granularity === "block") {
    const cmd =
      `${PY} ${SCRIPTS}/collect_stats.py --module ${HERE}/model.py --factory make${DEPTH} --threads 1 ` +
      `--weights {model} --keys {keys} --inputs ${dir}/inputs_{expert}.npy --out {out}`;
    const flags = Object.entries(o.params).flatMap(([k, v]) => [`--${k}`, String(v)]);
    const r = await runCli([
      "merge", "--base", inputs.base, ...inputs.experts.flatMap((e) => ["--expert", e]),
      "--method", o.method, ...flags, "--progressive", "--stats-command", cmd, "--out", out, "--json", "-q",
    ]);
    if (r.code !== 0) throw new Error(r.stderr);
    details = JSON.parse(r.stdout).details.progressive;
  } else {
    const server = pythonCollector(dir);
    try {
      const report = await merge({
        ...inputs, out, collectStats: server.collect,
        method: { name: o.method, ...o.params, progressive: true, granularity: "module", module_order: orderFile },
      });
      details = report.details.progressive;
    } finally {
      server.close();
    }
  }
  const ref = path.join(dir, "ref.safetensors");
  const usual = path.join(dir, "usual.safetensors");
  py([path.join(HERE, "reference.py"), SCRIPTS, HERE, dir, String(DEPTH), o.method, o.granularity, ref, ...refArgs, "+", "none", usual]);
  // Elementwise parts (norm scales, biases) are computed in float32 by design: 1e-6, not 1e-12.
  expect(maxDiff(out, ref)).toBeLessThan(1e-6);
  expect(maxDiff(usual, ref)).toBeGreaterThan(1e-2);
  // Only the inputs and the result remain: the temporary folder is gone.
  expect(listTree(dir).filter((f) => f.startsWith("."))).toEqual([]);
  return details as { groups: { name: string; keys: number | string[] }[]; collectorRuns: number };
}

describe("progressive merge vs a PyTorch layer-by-layer reference", () => {
  maybe("lot, block granularity: embedding first, blocks in order, head last", async () => {
    const d = await check({ method: "lot", params: { lambda: 1.5 }, granularity: "block" });
    expect(d.groups.map((g) => g.name)).toEqual(["first", "blocks.0", "last"]);
    expect(d.groups[0].keys).toEqual(["embed.bias", "embed.weight"]);
    expect(d.collectorRuns).toBe(6);
  });

  maybe("regmean, module granularity in the order of a file, through the library callback", async () => {
    const order = ["embed", "blocks.0.ln", "blocks.0.fc1", "blocks.0.fc2", "head"];
    const d = await check({ method: "regmean", params: { alpha: 0.9 }, granularity: "module", order });
    expect(d.groups.map((g) => g.name)).toEqual(order);
    expect(d.collectorRuns).toBe(10);
  });
});

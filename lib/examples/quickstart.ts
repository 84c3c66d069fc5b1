/**
 * `npm run example`: generates a small base model and three fine-tuned
 * experts (a two-layer MLP with a LayerNorm and an integer buffer) under
 * ./example-out, merges them with Task Arithmetic and TIES through the CLI,
 * inspects a result, and compresses the experts into a TALL-mask bundle from
 * which one expert is rebuilt.
 */
import * as path from "path";
import { promises as fsp } from "fs";
import { spawnSync } from "child_process";
import { SafetensorsWriter, OutTensor } from "../safetensors/writer";

// A small deterministic generator (mulberry32) so the example is reproducible.
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}

const LAYERS: [string, number[]][] = [
  ["mlp.fc1.weight", [64, 32]],
  ["mlp.fc1.bias", [64]],
  ["mlp.fc2.weight", [16, 64]],
  ["mlp.fc2.bias", [16]],
  ["norm.weight", [16]],
  ["norm.bias", [16]],
];

async function writeModel(dir: string, seed: number, base?: Map<string, Float32Array>): Promise<Map<string, Float32Array>> {
  await fsp.mkdir(dir, { recursive: true });
  const r = rng(seed);
  const values = new Map<string, Float32Array>();
  for (const [key, shape] of LAYERS) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = base ? base.get(key)![i] + 0.05 * r() : r();
    values.set(key, v);
  }
  const tensors: OutTensor[] = [
    ...LAYERS.map(([key, shape]) => ({ key, shape, dtype: "F32" as const })),
    { key: "position_ids", shape: [8], dtype: "I64" },
  ];
  const file = path.join(dir, "model.safetensors");
  const w = await SafetensorsWriter.create(file, `${file}.part`, tensors, { format: "pt" });
  for (const [key] of LAYERS) {
    const v = values.get(key)!;
    await w.write(key, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  await w.write("position_ids", new Uint8Array(BigInt64Array.from([0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n]).buffer));
  await w.finish();
  await fsp.writeFile(path.join(dir, "config.json"), JSON.stringify({ model_type: "tiny-mlp", hidden: 16 }, null, 2));
  return values;
}

async function main(): Promise<void> {
  const root = path.resolve("example-out");
  await fsp.rm(root, { recursive: true, force: true });
  const base = await writeModel(path.join(root, "base"), 1);
  for (const [i, name] of ["math", "code", "chat"].entries()) await writeModel(path.join(root, name), 100 + i, base);
  console.log(`wrote a base and 3 experts under ${root}`);

  const cli = path.join(__dirname, "..", "cli", "main.js");
  const run = (args: string[]) => {
    console.log(`$ taskmerge ${args.join(" ")}`);
    const r = spawnSync(process.execPath, [cli, ...args], { stdio: "inherit" });
    if (r.status !== 0) process.exit(r.status ?? 1);
  };
  const rel = (p: string) => path.relative(process.cwd(), path.join(root, p));
  const experts = ["math", "code", "chat"].flatMap((e) => ["--expert", rel(e)]);
  run(["merge", "--base", rel("base"), ...experts, "--method", "task_arithmetic", "--lambda", "0.4", "--dtype", "bf16", "--out", rel("merged")]);
  run(["inspect", rel("merged")]);
  // TIES with an exact global top-20% trim per task.
  run(["merge", "--base", rel("base"), ...experts, "--method", "ties", "--density", "0.2", "--out", rel("merged-ties.safetensors")]);
  // TALL masks: one shared vector and one bit per parameter per task, then one expert rebuilt from it.
  run(["compress", "--base", rel("base"), ...experts, "--tall-lambda", "0.4", "--out", rel("bundle")]);
  run(["extract", "--bundle", rel("bundle"), "--task", "math", "--base", rel("base"), "--out", rel("math-rebuilt.safetensors")]);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

/**
 * Progressive merges without Python: the groups formed from key names and
 * module order files, what a collector is shown (the partial checkpoint holds
 * the merge so far, the expert's weights of the group, the base after it),
 * failing and aborted collectors (callback and --stats-command, SIGINT
 * included: the child is killed, nothing is left), and usage errors.
 */
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { blockGroups, moduleGroups, parseModuleOrder } from "../lib/progressive/groups";
import { merge, GramAccumulator, AbortError, UsageError, TaskmergeError } from "../lib";
import type { CollectStatsRequest } from "../lib";
import { CLI, makeZoo, readSafetensors, values, rng, runCli, tmpDir, listTree, KeySpec } from "./helpers/fixtures";

describe("groups", () => {
  test("timm ViT: embeddings first, blocks by index (10 after 9), final norm and head last", () => {
    const keys = ["blocks.10.mlp.fc1.weight", "blocks.9.attn.qkv.weight", "blocks.0.norm1.weight", "cls_token", "head.bias", "head.weight", "norm.weight", "patch_embed.proj.weight", "pos_embed"];
    expect(blockGroups(keys)).toEqual([
      { name: "first", keys: ["cls_token", "patch_embed.proj.weight", "pos_embed"] },
      { name: "blocks.0", keys: ["blocks.0.norm1.weight"] },
      { name: "blocks.9", keys: ["blocks.9.attn.qkv.weight"] },
      { name: "blocks.10", keys: ["blocks.10.mlp.fc1.weight"] },
      { name: "last", keys: ["head.bias", "head.weight", "norm.weight"] },
    ]);
  });

  test("GPT-2, Llama, HF ViT, CLIP and encoder-decoder names", () => {
    const names = (keys: string[]) => blockGroups(keys).map((g) => `${g.name}:${g.keys.length}`);
    expect(names(["transformer.h.1.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.ln_f.weight", "transformer.wpe.weight", "transformer.wte.weight", "lm_head.weight"]))
      .toEqual(["first:2", "transformer.h.0:1", "transformer.h.1:1", "last:2"]);
    expect(names(["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight"])).toEqual(["first:1", "model.layers.0:1", "last:1"]);
    expect(names(["vit.embeddings.cls_token", "vit.encoder.layer.0.output.dense.weight", "vit.layernorm.weight", "classifier.weight"]))
      .toEqual(["first:1", "vit.encoder.layer.0:1", "last:2"]);
    expect(names(["visual.conv1.weight", "visual.ln_pre.weight", "visual.transformer.resblocks.0.attn.in_proj_weight", "visual.ln_post.weight", "visual.proj"]))
      .toEqual(["first:2", "visual.transformer.resblocks.0:1", "last:2"]);
    expect(names(["decoder.layers.0.fc.weight", "encoder.layers.1.fc.weight", "encoder.layers.0.fc.weight"]))
      .toEqual(["encoder.layers.0:1", "encoder.layers.1:1", "decoder.layers.0:1"]);
  });

  test("module order: longest listed name owns a key, M_weight / M_bias included; gaps and typos are errors", () => {
    const keys = ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "fc.weight", "fc_norm.weight", "cls"];
    const order = parseModuleOrder("# forward order\ncls\nattn.in_proj\n\nattn\nfc   # the mlp\nfc_norm\n", "order.txt");
    expect(moduleGroups(keys, order, "order.txt")).toEqual([
      { name: "cls", keys: ["cls"] },
      { name: "attn.in_proj", keys: ["attn.in_proj_weight", "attn.in_proj_bias"] },
      { name: "attn", keys: ["attn.out_proj.weight"] },
      { name: "fc", keys: ["fc.weight"] },
      { name: "fc_norm", keys: ["fc_norm.weight"] },
    ]);
    expect(() => moduleGroups(keys, ["attn", "fc", "fc_norm"], "order.txt")).toThrow(/no listed module owns 1 floating-point key\(s\), e.g. 'cls'.*order\.txt/);
    expect(() => moduleGroups(keys, ["cls", "attn", "fc", "fc_norm", "fc2"], "order.txt")).toThrow(/module 'fc2' owns no floating-point key/);
    expect(() => parseModuleOrder("a\nb\na\n", "o.txt")).toThrow(/line 3: module 'a' is listed twice \(also line 1\)/);
    expect(() => parseModuleOrder("# nothing\n", "o.txt")).toThrow(/lists no module/);
  });
});

const KEYS: KeySpec[] = [
  { name: "embed.weight", shape: [4, 3], dtype: "F32" },
  { name: "blocks.0.fc.weight", shape: [4, 4], dtype: "F32" },
  { name: "blocks.0.fc.bias", shape: [4], dtype: "F32" },
  { name: "blocks.1.fc.weight", shape: [4, 4], dtype: "F32" },
  { name: "head.weight", shape: [2, 4], dtype: "F32" },
  { name: "steps", shape: [1], dtype: "I64" },
];

/** Statistics with random rows for every 2-D weight among the keys (the values do not matter here). */
async function randomStats(req: CollectStatsRequest, seed: number): Promise<string> {
  const acc = new GramAccumulator();
  const shapes = Object.fromEntries(KEYS.map((k) => [k.name, k.shape]));
  const r = rng(seed);
  for (const key of req.keys) {
    const shape = shapes[key];
    if (shape.length !== 2) continue;
    const rows = Float64Array.from({ length: 10 * shape[1] }, () => r.normal());
    await acc.add(key.replace(/\.weight$/, ""), rows, shape[1]);
  }
  await acc.save(req.out);
  return req.out;
}

function zoo() {
  const dir = tmpDir("tm-prog-");
  const z = makeZoo(dir, { T: 2, keys: KEYS, scale: 0.5 });
  return { dir, base: z.base.path, experts: z.experts.map((e) => e.path), z };
}

describe("the collector's view", () => {
  test("each call sees earlier groups merged, this group from the expert, later groups from the base; temporaries sit beside the output and go", async () => {
    const { dir, base, experts, z } = zoo();
    const out = path.join(dir, "merged.safetensors");
    const seen: { req: CollectStatsRequest; model: Record<string, Float64Array> }[] = [];
    const report = await merge({
      base, experts, out, method: { name: "lot", progressive: true },
      collectStats: async (req) => {
        const raw = readSafetensors(req.model);
        expect(raw.steps).toEqual(z.base.raw.steps); // every key, non-float ones from the base
        seen.push({ req, model: Object.fromEntries(Object.keys(z.base.floats).map((k) => [k, values(raw[k])])) });
        return randomStats(req, seen.length);
      },
    });
    const groups = [["embed.weight"], ["blocks.0.fc.weight", "blocks.0.fc.bias"], ["blocks.1.fc.weight"], ["head.weight"]];
    expect(report.details.progressive).toMatchObject({
      granularity: "block", collectorRuns: 8,
      groups: [{ name: "first", keys: ["embed.weight"] }, { name: "blocks.0", keys: 2 }, { name: "blocks.1", keys: 1 }, { name: "last", keys: ["head.weight"] }],
    });
    const merged = readSafetensors(out);
    const close = (a: Float64Array, b: Float64Array) => expect(Array.from(a)).toEqual(Array.from(b));
    expect(seen.map((s) => `${s.req.group}/${s.req.expert}`)).toEqual(
      ["first", "blocks.0", "blocks.1", "last"].flatMap((g) => [`${g}/task0`, `${g}/task1`]),
    );
    seen.forEach(({ req, model }, i) => {
      const g = Math.floor(i / 2), t = i % 2;
      expect(req.keys).toEqual(groups[g]);
      expect([req.groupIndex, req.groups]).toEqual([g, 4]);
      // Temporaries: a hidden folder beside the output.
      expect(path.dirname(path.dirname(req.out))).toBe(dir);
      expect(path.basename(path.dirname(req.out))).toMatch(/^\.merged\.safetensors\.tmp-/);
      groups.forEach((keys, h) => {
        for (const k of keys) close(model[k], h < g ? values(merged[k]) : h === g ? z.experts[t].floats[k] : z.base.floats[k]);
      });
    });
    expect(listTree(dir)).toEqual(["base.safetensors", "merged.safetensors", "task0.safetensors", "task1.safetensors"]);
  });

  test("statistics files the callback writes elsewhere are the caller's: read, never removed", async () => {
    const { dir, base, experts } = zoo();
    const mine = path.join(dir, "mine");
    fs.mkdirSync(mine);
    let n = 0;
    await merge({
      base, experts, out: path.join(dir, "m.safetensors"), method: { name: "regmean", progressive: true },
      collectStats: (req) => randomStats({ ...req, out: path.join(mine, `s${n++}.safetensors`) }, n),
    });
    expect(fs.readdirSync(mine)).toHaveLength(8);
  });
});

describe("failing and aborted collectors", () => {
  test("a throwing callback stops the merge with its error; nothing is left", async () => {
    const { dir, base, experts } = zoo();
    let calls = 0;
    await expect(
      merge({
        base, experts, out: path.join(dir, "m"), method: { name: "lot", progressive: true },
        collectStats: async (req) => {
          if (++calls === 3) throw new Error("GPU fell off");
          return randomStats(req, calls);
        },
      }),
    ).rejects.toThrow("GPU fell off");
    expect(listTree(dir)).toEqual(["base.safetensors", "task0.safetensors", "task1.safetensors"]);
  });

  test("an abort while a callback runs rejects at once with AbortError and leaves nothing", async () => {
    const { dir, base, experts } = zoo();
    const ac = new AbortController();
    let seenSignal: AbortSignal | undefined;
    const p = merge({
      base, experts, out: path.join(dir, "m.safetensors"), method: { name: "lot", progressive: true }, signal: ac.signal,
      collectStats: (req) => {
        seenSignal = req.signal;
        setTimeout(() => ac.abort(), 20);
        return new Promise<string>(() => undefined); // a collector that never finishes
      },
    });
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(seenSignal?.aborted).toBe(true);
    expect(listTree(dir)).toEqual(["base.safetensors", "task0.safetensors", "task1.safetensors"]);
  });

  test("--stats-command failing: taskmerge exits with its code and last stderr line, nothing is left", async () => {
    const { dir, base, experts } = zoo();
    const cmd = `test -s {model} && test -s {keys} && echo starting >&2 && echo no GPU for {expert} >&2 && exit 3 # {out}`;
    const r = await runCli(["merge", "--base", base, "--expert", experts[0], "--expert", experts[1], "--method", "lot", "--progressive", "--stats-command", cmd, "--out", path.join(dir, "m")]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/statistics command failed for expert 'task0', group 'first' \(exit code 3\): no GPU for task0\n/);
    expect(listTree(dir)).toEqual(["base.safetensors", "task0.safetensors", "task1.safetensors"]);
  });

  test("--stats-command that writes no {out}", async () => {
    const { dir, base, experts } = zoo();
    const r = await runCli(["merge", "--base", base, "--expert", experts[0], "--expert", experts[1], "--method", "regmean", "--progressive", "--stats-command", "true {model} {out}", "--out", path.join(dir, "m")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/exited 0 for expert 'task0', group 'first' but wrote no file/);
    expect(listTree(dir)).toEqual(["base.safetensors", "task0.safetensors", "task1.safetensors"]);
  });

  test("SIGINT while the command runs kills it and its children; exit 130, nothing is left", async () => {
    const { dir, base, experts } = zoo();
    const work = tmpDir("tm-prog-pid-");
    const pidFile = path.join(work, "pid");
    // A child of the shell (not the shell itself) must die too.
    const cmd = `sleep 30 & echo $! > ${pidFile}.tmp && mv ${pidFile}.tmp ${pidFile}; wait # {model} {out}`;
    const child = spawn(process.execPath, [CLI, "merge", "--base", base, "--expert", experts[0], "--expert", experts[1], "--method", "lot", "--progressive", "--stats-command", cmd, "--out", path.join(dir, "m.safetensors")]);
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    for (let i = 0; i < 400 && !fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 50));
    const pid = Number(fs.readFileSync(pidFile, "utf8"));
    expect(alive(pid)).toBe(true);
    child.kill("SIGINT");
    expect(await closed).toBe(130);
    expect(stderr).toMatch(/interrupted by SIGINT/);
    for (let i = 0; i < 40 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(false);
    expect(listTree(dir)).toEqual(["base.safetensors", "task0.safetensors", "task1.safetensors"]);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("usage errors", () => {
  test("progressive without a collector, a collector without progressive, statistics files with progressive, progressive on another method", async () => {
    const { dir, base, experts } = zoo();
    const out = path.join(dir, "m");
    await expect(merge({ base, experts, out, method: { name: "lot", progressive: true } })).rejects.toThrow(/needs a statistics collector/);
    await expect(merge({ base, experts, out, method: "lot", collectStats: () => "x" })).rejects.toThrow(/used only by a progressive merge/);
    await expect(merge({ base, experts: experts.map((p) => ({ path: p, stats: p })), out, method: { name: "lot", progressive: true }, collectStats: () => "x" }))
      .rejects.toThrow(/drop the statistics files given for 'task0', 'task1'/);
    await expect(merge({ base, experts, out, method: { name: "ties", progressive: true } })).rejects.toBeInstanceOf(UsageError);
    await expect(merge({ base, experts, out, method: { name: "lot", progressive: "yes" }, collectStats: () => "x" })).rejects.toThrow(/must be true or false/);
    await expect(merge({ base, experts, out, method: { name: "lot", progressive: true, granularity: "module" }, collectStats: () => "x" })).rejects.toThrow(/needs module_order/);
    await expect(merge({ base, experts, out, method: { name: "lot", progressive: true, granularity: "module", module_order: path.join(dir, "none.txt") }, collectStats: () => "x" }))
      .rejects.toBeInstanceOf(TaskmergeError);
    const r = await runCli(["merge", "--base", base, "--expert", experts[0], "--method", "lot", "--progressive", "--stats-command", "collect {model}", "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--stats-command must use \{out\}/);
    expect(listTree(dir)).toEqual(["base.safetensors", "task0.safetensors", "task1.safetensors"]);
  });

  test("--dry-run lists the groups; YAML takes progressive, granularity, module_order (relative to the file) and stats_command", async () => {
    const { dir, base, experts } = zoo();
    fs.writeFileSync(path.join(dir, "order.txt"), "embed\nblocks.0.fc\nblocks.1.fc\nhead\n");
    fs.writeFileSync(
      path.join(dir, "merge.yaml"),
      `base: ${base}\nexperts: [${experts.join(", ")}]\nmethod: {name: lot, progressive: true, granularity: module, module_order: order.txt}\nstats_command: "false {model} {out}"\nout: m.safetensors\n`,
    );
    const r = await runCli(["merge", "--config", path.join(dir, "merge.yaml"), "--dry-run", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).progressive.groups).toEqual([
      { name: "embed", keys: 1 }, { name: "blocks.0.fc", keys: 2 }, { name: "blocks.1.fc", keys: 1 }, { name: "head", keys: 1 },
    ]);
    const run = await runCli(["merge", "--config", path.join(dir, "merge.yaml"), "-q"]);
    expect(run.code).toBe(1); // `false` exits 1
    expect(run.stderr).toMatch(/group 'embed' \(exit code 1\)/);
  });
});

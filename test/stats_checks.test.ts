/**
 * Statistics are checked before a merge uses them (issue 11, items 10 and 11):
 * Grams that cannot be Σ x xᵀ, bad counts, F16/BF16 statistics, statistics that
 * cover no weight, --stats for a method that reads none; and statistics bound
 * to the checkpoint they were collected from (GramAccumulator records it,
 * merges check it, files without the record warn).
 */
import * as fs from "fs";
import * as path from "path";
import { drift, merge, GramAccumulator, MethodName } from "../lib";
import { Checkpoint } from "../lib/checkpoint";
import { fingerprint } from "../lib/fingerprint";
import { readHeader, runCli, tmpDir } from "./helpers/fixtures";
import { experts, lotReference, expectClose, setup, writeStats } from "./reference/lot";

const QKV = "blocks.0.attn.qkv";

describe.each(["lot", "regmean"])("%s refuses statistics that cannot be right (error names file, key and expert; nothing written)", (method) => {
  const s = setup(2, 10);
  const n = 6; // width of qkv
  const run = async (bad: string, t = 1) => {
    const out = path.join(s.dir, `${method}-${path.basename(bad)}.safetensors`);
    const ex = experts(s).map((e, i) => ({ ...e, name: ["math", "code"][i], stats: i === t ? bad : e.stats }));
    const err = await merge({ base: s.zoo.base.path, experts: ex, method: method as MethodName, out }).catch((e) => e);
    expect(fs.existsSync(out)).toBe(false);
    expect(err?.name).toBe("TaskmergeError");
    expect(err.file).toBe(bad);
    return err;
  };
  const withGram = (name: string, edit: (G: Float64Array) => void, dtype?: "F32" | "F64") => {
    const G = Float64Array.from(s.stats[1].grams[QKV]);
    edit(G);
    return writeStats(path.join(s.dir, `${method}-${name}.stats.safetensors`), { ...s.stats[1], grams: { ...s.stats[1].grams, [QKV]: G } }, { dtype });
  };

  test("a non-symmetric Gram", async () => {
    const err = await run(withGram("asym", (G) => (G[1 * n + 4] += 0.5 * Math.sqrt(G[1 * n + 1] * G[4 * n + 4]))));
    expect(err.message).toMatch(/statistics of expert 'code': Gram is not symmetric: .* at \[1, 4\]/);
    expect(err.key).toBe(`${QKV}.input_gram`);
    expect(err.source).toEqual({ role: "stats", index: 1, name: "code" });
  });

  test("a negative diagonal", async () => {
    const err = await run(withGram("negdiag", (G) => (G[2 * n + 2] = -1)));
    expect(err.message).toMatch(/negative diagonal entry -1 at \[2, 2\]/);
    expect(err.key).toBe(`${QKV}.input_gram`);
  });

  test("a symmetric Gram breaking |G_ij| ≤ √(G_ii G_jj) (not positive semidefinite), stored as F32", async () => {
    const err = await run(withGram("cs", (G) => (G[0 * n + 3] = G[3 * n + 0] = 1.5 * Math.sqrt(G[0] * G[3 * n + 3])), "F32"));
    expect(err.message).toMatch(/Gram is not positive semidefinite: .* at \[0, 3\]/);
  });

  test("a Gram within the documented tolerance (float32-summed asymmetry) is accepted", async () => {
    const ok = withGram("near", (G) => (G[1 * n + 4] += 1e-5 * Math.sqrt(G[1 * n + 1] * G[4 * n + 4])));
    const out = path.join(s.dir, `${method}-near-out.safetensors`);
    await merge({ base: s.zoo.base.path, experts: experts(s).map((e, i) => (i === 1 ? { ...e, stats: ok } : e)), method: method as MethodName, out });
    expect(fs.existsSync(out)).toBe(true);
  });

  test.each([[-3], [0], [NaN]])("input_count %d", async (c) => {
    const bad = writeStats(path.join(s.dir, `${method}-count${c}.stats.safetensors`), { ...s.stats[1], counts: { ...s.stats[1].counts, [QKV]: c } });
    const err = await run(bad);
    expect(err.message).toMatch(/input_count must be a positive finite number/);
    expect(err.key).toBe(`${QKV}.input_count`);
  });

  test.each(["F16", "BF16"])("%s statistics (the format says F32 or F64)", async (dtype) => {
    const G = s.stats[1].grams[QKV];
    const bad = writeStats(path.join(s.dir, `${method}-${dtype}.stats.safetensors`), s.stats[1], {
      override: { [`${QKV}.input_gram`]: { dtype, shape: [n, n], data: Buffer.alloc(G.length * 2) } },
    });
    const err = await run(bad);
    expect(err.message).toMatch(new RegExp(`statistics tensor is ${dtype} .* needs an F32 or F64`));
    expect(err.key).toBe(`${QKV}.input_gram`);
  });

  test("statistics covering no weight of the model (a key prefix differs) are an error, not a fallback to the mean", async () => {
    const f = path.join(s.dir, `${method}-prefixed.stats.safetensors`);
    const st = s.stats[1];
    const prefixed = (o: Record<string, any>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [`model.${k}`, v]));
    writeStats(f, { grams: prefixed(st.grams), counts: prefixed(st.counts), norms: prefixed(st.norms) });
    const err = await run(f);
    expect(err.message).toMatch(/statistics of expert 'code' cover no weight of the model \(first statistics key 'model\.blocks.*', first weight 'embed\.weight'\); .*key prefix differ/);
  });
});

test("statistics that leave every weight to the mean (no weight has them from every expert) are an error", async () => {
  const s = setup(2, 10);
  const all = ["blocks.0.attn.qkv", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.0.norm1"];
  const a = writeStats(path.join(s.dir, "a.stats.safetensors"), s.stats[0], { omit: all.slice(1) });
  const b = writeStats(path.join(s.dir, "b.stats.safetensors"), s.stats[1], { omit: all.slice(0, 1) });
  const err = await merge({ base: s.zoo.base.path, experts: [{ ...experts(s)[0], stats: a }, { ...experts(s)[1], stats: b }], method: "lot", out: path.join(s.dir, "m.safetensors") }).catch((e) => e);
  expect(err.message).toMatch(/lot: no weight has statistics from every expert/);
});

test("--stats with a method that reads none is a usage error (exit 2, nothing written)", async () => {
  const s = setup(2, 10);
  const out = path.join(s.dir, "ties.safetensors");
  const r = await runCli(["merge", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--method", "ties", "--out", out]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/statistics given .* but the method uses none/);
  expect(fs.existsSync(out)).toBe(false);
});

describe("statistics bound to the checkpoint they were collected from", () => {
  const s = setup(2, 10);
  /** The fixture's statistics, saved through GramAccumulator with a recorded source. */
  const recorded = async (t: number, checkpoint?: string) => {
    const acc = await GramAccumulator.load(s.files[t]);
    const f = path.join(s.dir, `rec${t}-${checkpoint ? path.basename(checkpoint) : "none"}.stats.safetensors`);
    await acc.save(f, { checkpoint });
    return f;
  };

  test("GramAccumulator records the fingerprint TALL bundles use; merges in order pass with no warning, swapped fail naming both experts", async () => {
    const files = [await recorded(0, experts(s)[0].path), await recorded(1, experts(s)[1].path)];
    const meta = readHeader(files[1]).__metadata__;
    const ck = await Checkpoint.open(experts(s)[1].path);
    const fp = await fingerprint(ck);
    await ck.close();
    expect(meta).toMatchObject({
      checkpoint: experts(s)[1].path, checkpoint_bytes: String(fp.bytes), checkpoint_header_sha256: fp.headerHash, checkpoint_sample_sha256: fp.sampleHash,
    });

    const ex = (order: number[]) => experts(s).map((e, i) => ({ path: e.path, name: ["math", "code"][i], stats: files[order[i]] }));
    const warnings: string[] = [];
    const out = path.join(s.dir, "inorder.safetensors");
    const report = await merge({ base: s.zoo.base.path, experts: ex([0, 1]), method: "lot", out, onWarning: (w) => warnings.push(w) });
    expect([warnings, report.warnings]).toEqual([[], []]);
    expectClose(out, s.zoo, s.keys, lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { solve: { kind: "ridge", eps: 1e-6 } }), 1e-10);

    const swapped = path.join(s.dir, "swapped.safetensors");
    const err = await merge({ base: s.zoo.base.path, experts: ex([1, 0]), method: "lot", out: swapped }).catch((e) => e);
    expect(err?.name).toBe("TaskmergeError");
    expect(err.message).toMatch(/^statistics 1 were collected from 'code', not from 'math'/);
    expect([err.file, err.source]).toEqual([files[1], { role: "stats", index: 0, name: "math" }]);
    expect(fs.existsSync(swapped)).toBe(false);

    // The CLI too, with --stats swapped: exit 1, one line.
    const r = await runCli(["merge", "--base", s.zoo.base.path, "--expert", experts(s)[0].path, "--stats", files[1], "--expert", experts(s)[1].path,
      "--stats", files[0], "--method", "regmean", "-q", "--out", swapped]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(/statistics 1 were collected from 'task1', not from 'task0'/)]);
  });

  test("drift checks the statistics' source too", async () => {
    const files = [await recorded(0, experts(s)[0].path), await recorded(1, experts(s)[1].path)];
    const merged = path.join(s.dir, "for-drift.safetensors");
    await merge({ base: s.zoo.base.path, experts: experts(s).map((e) => e.path), method: "average", out: merged });
    const ok = await drift({ base: s.zoo.base.path, merged, experts: experts(s).map((e) => e.path), stats: files });
    expect(ok.warnings).toEqual([]);
    await expect(drift({ base: s.zoo.base.path, merged, experts: experts(s).map((e) => e.path), stats: [files[1], files[0]] })).rejects.toThrow(
      /statistics 1 were collected from 'task1', not from 'task0'/,
    );
  });

  test("statistics from a checkpoint that is no expert of the merge name its recorded path", async () => {
    const f = await recorded(0, s.zoo.base.path);
    const err = await merge({ base: s.zoo.base.path, experts: [{ ...experts(s)[0], stats: f }, experts(s)[1]], method: "lot", out: path.join(s.dir, "o.safetensors") }).catch((e) => e);
    expect(err.message).toContain(`statistics 1 were collected from ${s.zoo.base.path} (`);
  });

  test("load() keeps the record; saving it for another checkpoint is refused", async () => {
    const f = await recorded(1, experts(s)[1].path);
    const again = path.join(s.dir, "again.stats.safetensors");
    await (await GramAccumulator.load(f)).save(again);
    expect(readHeader(again).__metadata__.checkpoint_sample_sha256).toBe(readHeader(f).__metadata__.checkpoint_sample_sha256);
    await expect((await GramAccumulator.load(f)).save(again, { checkpoint: experts(s)[0].path })).rejects.toThrow(/collected from .*task1/);
  });

  test("files without the record give one warning line each (CLI and report), and the merge proceeds", async () => {
    const out = path.join(s.dir, "norecord.safetensors");
    const r = await runCli(["merge", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--method", "lot", "-q", "--out", out]);
    expect(r.code).toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    lines.forEach((l, i) => expect(l).toBe(`warning: ${s.files[i]}: the statistics do not record which checkpoint they were collected from; cannot check that they belong to expert 'task${i}'`));
  });
});

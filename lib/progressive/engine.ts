/**
 * Progressive merging (lot, regmean with progressive: true): layer groups in
 * forward order; before each group every expert's statistics of that group
 * are collected on the partially merged checkpoint (earlier groups merged,
 * this group the expert's own weights, later groups the base's), then the
 * method's usual closed form merges the group's keys into that checkpoint.
 * The output is written from it at the end, in the base's key order.
 *
 * Everything temporary (the partial checkpoint, key lists, statistics) lives
 * in one hidden folder beside the output and is removed however the run ends.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import type { Expert, MergeContext, MergeMethod } from "../engine/context";
import type { OutTensor } from "../safetensors/writer";
import type { Output } from "../output";
import { SafetensorsFile } from "../safetensors/file";
import { AbortError, TaskmergeError, UsageError, throwIfAborted } from "../errors";
import { finiteSink } from "../engine/finite_output";
import { copyChunks } from "../engine/read_ahead";
import { blockGroups, moduleGroups, parseModuleOrder, KeyGroup } from "./groups";
import { callCollector, CollectStats } from "./collect";
import { PartialCheckpoint } from "./partial";
import type { OutputSlot } from "../out_path/slot";

export interface ProgressiveOptions {
  method: MergeMethod;
  plan: OutTensor[];
  collect: CollectStats;
  /** The output's slot: the temporary folder is staged beside the output and never committed. */
  slot: OutputSlot;
  output: Output;
  /** Wraps an error of merging `key` with the key and file. */
  keyError(e: unknown, key: string): unknown;
}

export interface ProgressiveDetails {
  granularity: string;
  /** Groups in merge order: name and key count; "first" and "last" list their keys. */
  groups: { name: string; keys: number | string[] }[];
  collectorRuns: number;
  /** Seconds in the collector, in the closed-form merges, and writing the partial checkpoint and the output. */
  collectSeconds: number;
  mergeSeconds: number;
  writeSeconds: number;
}

export async function formGroups(ctx: MergeContext): Promise<KeyGroup[]> {
  const granularity = ctx.params.granularity as string;
  if (granularity === "block") {
    if (ctx.params.module_order) throw new UsageError("module_order is for granularity 'module'; drop it or set granularity: module");
    return blockGroups(ctx.floatKeys);
  }
  const file = ctx.params.module_order as string;
  if (!file) throw new UsageError("granularity 'module' needs module_order: a file of module names in forward order (--module-order)");
  let text: string;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch (e) {
    throw new TaskmergeError(`cannot read the module order file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, file);
  }
  return moduleGroups(ctx.floatKeys, parseModuleOrder(text, file), file);
}

export async function mergeProgressive(ctx: MergeContext, o: ProgressiveOptions): Promise<void> {
  const groups = await formGroups(ctx);
  const d: ProgressiveDetails = {
    granularity: ctx.params.granularity as string,
    groups: groups.map((g) => ({ name: g.name, keys: g.name === "first" || g.name === "last" ? g.keys : g.keys.length })),
    collectorRuns: 0, collectSeconds: 0, mergeSeconds: 0, writeSeconds: 0,
  };
  ctx.details.progressive = d;
  const fallback: string[] = [];
  // The collector sees a signal even when the caller gave none.
  const ac = new AbortController();
  const forward = () => ac.abort(ctx.signal?.reason);
  ctx.signal?.addEventListener("abort", forward, { once: true });
  if (ctx.signal?.aborted) ac.abort(ctx.signal.reason);
  const timed = async <T>(field: "collectSeconds" | "mergeSeconds" | "writeSeconds", f: () => Promise<T>): Promise<T> => {
    const t0 = process.hrtime.bigint();
    try {
      return await f();
    } finally {
      d[field] += Number(process.hrtime.bigint() - t0) / 1e9;
    }
  };

  // Staged like an output, so a killed run's folder is reclaimed by the next run; removed however this one ends.
  const scratch = await o.slot.stage("dir");
  const tmp = scratch.path;
  let partial: PartialCheckpoint | undefined;
  const open: SafetensorsFile[] = [];
  try {
    ctx.progress.phase("partial checkpoint", o.plan.length, ctx.base.totalBytes);
    partial = await timed("writeSeconds", () => PartialCheckpoint.create(path.join(tmp, "model.safetensors"), ctx.base, o.plan, ctx.chunkElems, ctx.signal));
    const p = partial;
    for (const [gi, g] of groups.entries()) {
      throwIfAborted(ctx.signal);
      ctx.progress.phase(`group ${gi + 1}/${groups.length} ${g.name}: statistics`, ctx.experts.length, 0);
      const experts: Expert[] = [];
      for (const [t, e] of ctx.experts.entries()) {
        await timed("writeSeconds", async () => {
          for (const key of g.keys) await p.copyFrom(e.checkpoint, key, ctx.signal);
        });
        const out = path.join(tmp, `stats-${gi}-${t}.safetensors`);
        const file = await timed("collectSeconds", () =>
          callCollector(o.collect, { model: p.path, expert: e.name, keys: g.keys, group: g.name, groupIndex: gi, groups: groups.length, out, signal: ac.signal }),
        );
        d.collectorRuns++;
        const stats = await SafetensorsFile.open(file, { signal: ctx.signal }).catch((err) => {
          if (err instanceof AbortError) throw err;
          throw new TaskmergeError(`statistics of expert '${e.name}' for group '${g.name}' from the collector: ${(err as Error).message}`);
        });
        open.push(stats);
        experts.push({ ...e, stats });
        ctx.progress.tensorDone(e.name);
      }
      // The method's own checks and closed form, on this group's keys and statistics.
      const gctx: MergeContext = { ...ctx, experts, floatKeys: g.keys, collectedStats: true };
      ctx.progress.phase(`group ${gi + 1}/${groups.length} ${g.name}: merge`, g.keys.length, 0);
      await timed("mergeSeconds", async () => {
        if (o.method.prepare) await o.method.prepare(gctx);
        fallback.push(...((ctx.details.statsFallback as string[] | undefined) ?? []));
        for (const key of g.keys) {
          throwIfAborted(ctx.signal);
          try {
            await o.method.mergeTensor(gctx, key, finiteSink(key, ctx.outDtype(key), p.sink(key)));
          } catch (e) {
            throw o.keyError(e, key);
          }
          ctx.progress.tensorDone(key);
        }
      });
      for (const f of open.splice(0)) await f.close();
      // Statistics written into the temporary folder are ours to remove; others belong to the caller.
      for (const f of experts.map((e) => e.stats!.path)) if (path.dirname(path.resolve(f)) === tmp) await fsp.rm(f, { force: true });
    }
    ctx.details.statsFallback = fallback;
    throwIfAborted(ctx.signal);
    await timed("writeSeconds", () => writeOutput(ctx, p, o));
  } finally {
    ctx.signal?.removeEventListener("abort", forward);
    for (const f of open) await f.close().catch(() => undefined);
    await partial?.close().catch(() => undefined);
    await scratch.abort();
  }
}

/** The output, in the base's key order: float tensors from the partial checkpoint, the rest from the base. */
async function writeOutput(ctx: MergeContext, partial: PartialCheckpoint, o: ProgressiveOptions): Promise<void> {
  const f = await partial.open();
  try {
    ctx.progress.phase("write", o.plan.length, f.size);
    for (const t of o.plan) {
      throwIfAborted(ctx.signal);
      await copyChunks(f, t.key, f.tensor(t.key)!.numel, ctx.chunkElems, (buf) => {
        ctx.progress.bytes(buf.length, t.key);
        return o.output.write(t.key, buf);
      }, { signal: ctx.signal });
      ctx.progress.tensorDone(t.key);
    }
  } finally {
    await f.close();
  }
}

/**
 * The compress job: on the job skeleton (./run.ts), opens the experts once,
 * stages the bundle directory, runs the TALL passes (lib/tall/compress.ts):
 * τMTL (with the masks when λ is fixed), else the λ search and then the masks;
 * writes bundle.json last and commits the directory.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { SafetensorsFile } from "../safetensors/file";
import { SafetensorsWriter, OutTensor } from "../safetensors/writer";
import { FloatDType, isFloatDType } from "../safetensors/dtypes";
import { defaultChunkElems } from "../engine/stream";
import { namedPaths, openInputs, ResolvedExpert } from "../engine/inputs";
import { Progress, ProgressTracker } from "../engine/progress";
import { VERSION } from "../version";
import type { StreamContext } from "../engine/context";
import { describeTrim, globalTiesTrim } from "../select/trim";
import type { OutputKind } from "../out_path/owned";
import { roundUp8 } from "../tall/reconstruct";
import { createMaskWriter, LambdaSearch, masksFromTau, phaseBytes, searchLambdas, tauPass } from "../tall/compress";
import { BUNDLE_FORMAT, BUNDLE_JSON, BUNDLE_VERSION, BundleManifest, MASKS_FILE, maskBytes, maskKey, TAU_FILE } from "../tall/bundle";
import { fingerprint } from "../fingerprint";
import { runJob, DeviceReport } from "./run";
import type { ResolvedDevice } from "../device";

export { DEFAULT_GRID, DEFAULT_TALL_LAMBDA } from "../tall/compress";
export type { LambdaSearch } from "../tall/compress";

export interface CompressEngineOptions {
  base: string;
  experts: ResolvedExpert[];
  out: string;
  /** One λ for all tasks, one per task, or a search. */
  tallLambda: number[] | LambdaSearch;
  tau: "sum" | "ties";
  density: number;
  scope: "global" | "tensor";
  dtype?: FloatDType;
  chunkElems?: number;
  /** The backend every native op of the job runs on (lib/device.ts resolved it); "cpu" when absent. */
  device?: ResolvedDevice;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface CompressReport extends DeviceReport {
  out: string;
  tasks: { name: string; lambda: number; scores?: { lambda: number; score: number }[] }[];
  tau: BundleManifest["tau"];
  tensors: number;
  /** Bytes of the expert checkpoints, of the bundle, and their ratio. */
  bytesExperts: number;
  bytesBundle: number;
  ratio: number;
  bytesRead: number;
  seconds: number;
  details: Record<string, unknown>;
  /** Leftovers of killed runs on the same output that were removed or restored, one line each. */
  reclaimed: string[];
  /** The backend the native ops ran on. */
  device: ResolvedDevice;
}

/** A bundle directory: bundle.json marks it, and it holds nothing else than its three files. */
const BUNDLE_DIR: OutputKind = { kind: "dir", what: "bundle", marker: BUNDLE_JSON, files: [BUNDLE_JSON, TAU_FILE, MASKS_FILE] };

export async function runCompress(o: CompressEngineOptions): Promise<CompressReport> {
  const t0 = Date.now();
  return runJob({
    named: namedPaths(o.base, o.experts),
    out: { path: o.out, kind: BUNDLE_DIR },
    signal: o.signal,
  }, async (job) => {
    // Per-expert weights do not apply to TALL masks.
    const inputs = job.track(await openInputs(o.base, o.experts.map((e) => ({ ...e, weight: 1, stats: undefined })), false, { signal: o.signal }));
    const { base, experts } = inputs;
    await job.checkInputFiles(inputs.files);
    const floatKeys = base.keys().filter((k) => isFloatDType(base.get(k).dtype));
    const tauDtype = (k: string): FloatDType => o.dtype ?? (base.get(k).dtype as FloatDType);
    const progress = new ProgressTracker(o.onProgress);
    const ctx: StreamContext = { base, experts, floatKeys, signal: o.signal, progress, chunkElems: roundUp8(o.chunkElems ?? defaultChunkElems()), device: o.device };
    const details: Record<string, unknown> = {};

    const staged = job.output(await job.slot.stage("dir"));
    const tmpDir = staged.path;
    const maskPlan: OutTensor[] = experts.flatMap((e) => floatKeys.map((k) => ({ key: maskKey(e.name, k), dtype: "U8" as const, shape: [maskBytes(base.get(k).numel)] })));
    const fixed = Array.isArray(o.tallLambda) ? o.tallLambda : undefined;

    // Pass(es) 1: τMTL (and the masks when λ is fixed).
    const global = o.tau === "ties" && o.scope === "global" ? await globalTiesTrim(ctx, o.density) : undefined;
    if (global) details.global = describeTrim(ctx, global);
    const tauPath = path.join(tmpDir, TAU_FILE);
    const tauW = await SafetensorsWriter.create(tauPath, `${tauPath}.part`, floatKeys.map((k) => ({ key: k, dtype: tauDtype(k), shape: base.get(k).shape })), { format: "pt" });
    job.track({ close: () => tauW.close() });
    let maskW = fixed ? job.track(await createMaskWriter(tmpDir, maskPlan)) : undefined;
    progress.phase(fixed ? "compress" : "tau", floatKeys.length, phaseBytes(ctx, floatKeys));
    await tauPass(ctx, { tau: o.tau, density: o.density, global, tauDtype, lambdas: fixed, tauW, maskW, details });
    await tauW.finish();

    // λ search: score candidates, then write the masks with the winners.
    let lambdas = fixed;
    let scores: { lambda: number; score: number }[][] = [];
    if (!lambdas) {
      const tauFile = job.track(await SafetensorsFile.open(tauPath, { signal: o.signal }));
      ({ scores, lambdas } = await searchLambdas(ctx, tauFile, o.tallLambda as LambdaSearch, tmpDir));
      maskW = job.track(await createMaskWriter(tmpDir, maskPlan));
      await masksFromTau(ctx, tauFile, lambdas, maskW);
    }
    await maskW!.finish();

    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT, version: BUNDLE_VERSION, taskmerge: VERSION,
      tau: { kind: o.tau, file: TAU_FILE, dtype: o.dtype ?? (floatKeys.length ? tauDtype(floatKeys[0]) : "F32"), ...(o.tau === "ties" ? { density: o.density, scope: o.scope } : {}) },
      masks: { file: MASKS_FILE, bitorder: "big", name: "<task>::<key>" },
      tasks: experts.map((e, t) => ({ name: e.name, lambda: lambdas![t], expert: e.checkpoint.path, bytes: e.checkpoint.fileBytes })),
      base: { path: base.path, ...(await fingerprint(base)) },
      keys: floatKeys.map((k) => ({ key: k, shape: base.get(k).shape, dtype: base.get(k).dtype })),
    };
    await fsp.writeFile(path.join(tmpDir, BUNDLE_JSON), JSON.stringify(manifest, null, 2) + "\n");
    let bytesBundle = 0;
    for (const f of [TAU_FILE, MASKS_FILE, BUNDLE_JSON]) bytesBundle += (await fsp.stat(path.join(tmpDir, f))).size;
    const bytesExperts = experts.reduce((s, e) => s + e.checkpoint.fileBytes, 0);
    await staged.commit();
    return {
      out: job.slot.out,
      tasks: experts.map((e, t) => ({ name: e.name, lambda: lambdas![t], ...(scores[t] ? { scores: scores[t] } : {}) })),
      tau: manifest.tau, tensors: floatKeys.length, bytesExperts, bytesBundle, ratio: bytesExperts / bytesBundle,
      bytesRead: progress.bytesRead, seconds: (Date.now() - t0) / 1000, details, reclaimed: job.slot.reclaimed,
      device: o.device ?? "cpu",
      ...job.deviceReport(),
    };
  });
}

/**
 * Statistics bound to their expert: a statistics file's __metadata__ records
 * the fingerprint (lib/fingerprint.ts) of the checkpoint its activations came
 * from, and a merge checks it against the expert the file is given for, so
 * that swapped --stats files fail instead of merging wrong numbers.
 *
 *   checkpoint               the checkpoint's path as the collector saw it (for messages)
 *   checkpoint_bytes         its size in bytes (decimal)
 *   checkpoint_header_sha256 Fingerprint.headerHash
 *   checkpoint_sample_sha256 Fingerprint.sampleHash
 */
import type { Checkpoint } from "../checkpoint";
import type { SafetensorsFile } from "../safetensors/file";
import { Fingerprint, fingerprint, sameFingerprint } from "../fingerprint";
import { TaskmergeError } from "../errors";

export const SOURCE_KEYS = {
  path: "checkpoint",
  bytes: "checkpoint_bytes",
  headerHash: "checkpoint_header_sha256",
  sampleHash: "checkpoint_sample_sha256",
} as const;

export function sourceMetadata(checkpointPath: string, fp: Fingerprint): Record<string, string> {
  return {
    [SOURCE_KEYS.path]: checkpointPath,
    [SOURCE_KEYS.bytes]: String(fp.bytes),
    [SOURCE_KEYS.headerHash]: fp.headerHash,
    [SOURCE_KEYS.sampleHash]: fp.sampleHash,
  };
}

export interface RecordedSource {
  path: string;
  fingerprint: Fingerprint;
}

/** The source recorded in a statistics file; undefined when it records none. Throws on a partial or malformed record. */
export function recordedSource(stats: SafetensorsFile): RecordedSource | undefined {
  const m = stats.metadata ?? {};
  const has = (k: string) => Object.prototype.hasOwnProperty.call(m, k);
  const fields = [SOURCE_KEYS.bytes, SOURCE_KEYS.headerHash, SOURCE_KEYS.sampleHash];
  if (!fields.some(has)) return undefined;
  const bytes = Number(m[SOURCE_KEYS.bytes]);
  const hex = (k: string) => typeof m[k] === "string" && /^[0-9a-f]{64}$/.test(m[k]);
  if (!/^\d+$/.test(String(m[SOURCE_KEYS.bytes])) || !Number.isSafeInteger(bytes) || !hex(SOURCE_KEYS.headerHash) || !hex(SOURCE_KEYS.sampleHash))
    throw new TaskmergeError(`invalid record of the source checkpoint in __metadata__ (${fields.join(", ")})`, stats.path, "__metadata__", { role: "stats" });
  return { path: String(m[SOURCE_KEYS.path] ?? "?"), fingerprint: { bytes, headerHash: m[SOURCE_KEYS.headerHash], sampleHash: m[SOURCE_KEYS.sampleHash] } };
}

interface StatsExpert {
  name: string;
  checkpoint: Checkpoint;
  stats?: SafetensorsFile;
}

/**
 * Checks each expert's statistics against the expert: a mismatch is an error
 * naming the expert it was collected from when that is one of the others.
 * Returns one warning per file that records no source.
 */
export async function checkStatsSources(experts: readonly StatsExpert[]): Promise<string[]> {
  const warnings: string[] = [];
  const fps = new Map<number, Promise<Fingerprint>>();
  const fp = (i: number) => {
    if (!fps.has(i)) fps.set(i, fingerprint(experts[i].checkpoint));
    return fps.get(i)!;
  };
  for (const [i, e] of experts.entries()) {
    if (!e.stats) continue;
    const rec = recordedSource(e.stats);
    if (!rec) {
      warnings.push(`${e.stats.path}: the statistics do not record which checkpoint they were collected from; cannot check that they belong to expert '${e.name}'`);
      continue;
    }
    if (sameFingerprint(rec.fingerprint, await fp(i))) continue;
    let from = `${rec.path} (${rec.fingerprint.bytes} bytes)`;
    for (let j = 0; j < experts.length; j++)
      if (j !== i && sameFingerprint(rec.fingerprint, await fp(j))) {
        from = `'${experts[j].name}'`;
        break;
      }
    throw new TaskmergeError(
      `statistics ${i + 1} were collected from ${from}, not from '${e.name}' (statistics files go in the experts' order)`,
      e.stats.path, undefined, { role: "stats", index: i, name: e.name },
    );
  }
  return warnings;
}

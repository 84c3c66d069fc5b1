/**
 * A checkpoint's fingerprint: its size in bytes, a hash of its headers (the
 * layout) and a hash of the first entries of every key (the contents: two
 * fine-tunes of one model share size and headers). TALL bundles record their
 * base with it, statistics files the checkpoint they were collected from.
 * scripts/collect_stats.py computes the same (checkpoint_fingerprint).
 */
import { createHash } from "crypto";
import type { Checkpoint } from "./checkpoint";

export interface Fingerprint {
  bytes: number;
  /** sha256 over the hex sha256 of each shard's raw header, shards in name order. */
  headerHash: string;
  /** sha256 over every key (storage order) and the bytes of its first SAMPLE_ELEMS entries. */
  sampleHash: string;
}

export const SAMPLE_ELEMS = 256;

export async function sampleHash(ck: Checkpoint): Promise<string> {
  const h = createHash("sha256");
  for (const k of ck.keys()) {
    const t = ck.get(k);
    h.update(k);
    if (t.numel) h.update(await ck.read(k, 0, Math.min(t.numel, SAMPLE_ELEMS)));
  }
  return h.digest("hex");
}

export async function fingerprint(ck: Checkpoint): Promise<Fingerprint> {
  return { bytes: ck.fileBytes, headerHash: ck.headerHash, sampleHash: await sampleHash(ck) };
}

export function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  return a.bytes === b.bytes && a.headerHash === b.headerHash && a.sampleHash === b.sampleHash;
}

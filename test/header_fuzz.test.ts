/**
 * Fuzzing the safetensors reader: a few hundred mutants of valid files
 * (header bytes flipped or replaced by JSON punctuation, bytes inserted or
 * deleted, the length field shifted, numbers rewritten as 16.0 / 1e1 / 01,
 * entries duplicated, the file truncated or extended). Every mutant is either
 * refused with a TaskmergeError or read exactly as the independent strict
 * reader in test/reference/safetensors.ts reads it: same keys, dtypes,
 * shapes, offsets, metadata and bytes. The seed is fixed, so a failure
 * replays; FUZZ_SEED and FUZZ_N explore further.
 */
import * as fs from "fs";
import * as path from "path";
import { SafetensorsFile } from "../lib/safetensors/file";
import { TaskmergeError } from "../lib/errors";
import { refRead } from "./reference/safetensors";
import { rng, tmpDir } from "./helpers/fixtures";
import { mutate, seeds } from "./helpers/header_mutants";

const SEED = Number(process.env.FUZZ_SEED ?? 11);
const N = Number(process.env.FUZZ_N ?? 400);

describe("header fuzzing against an independent strict reader", () => {
  const dir = tmpDir();
  const rand = rng(SEED).u;
  const bases = seeds(rand);

  test("the seed files are valid for both readers", async () => {
    for (const [i, f] of bases.entries()) {
      expect(refRead(f).ok).toBe(true);
      const p = path.join(dir, `seed${i}.safetensors`);
      fs.writeFileSync(p, f);
      (await SafetensorsFile.open(p)).close();
    }
  });

  test(`${N} mutants: a clean TaskmergeError or the reference's exact reading`, async () => {
    let accepted = 0;
    for (let i = 0; i < N; i++) {
      let m = bases[i % bases.length];
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) m = mutate(m, rand);
      const p = path.join(dir, `m${i}.safetensors`);
      fs.writeFileSync(p, m);
      const ref = refRead(m);
      let f: SafetensorsFile | undefined;
      try {
        f = await SafetensorsFile.open(p);
      } catch (e) {
        if (!(e instanceof TaskmergeError)) throw new Error(`mutant ${i}: not a TaskmergeError: ${(e as Error).stack}`);
        expect((e as Error).message).not.toContain("\n");
        if (ref.ok) throw new Error(`mutant ${i}: refused (${(e as Error).message}) but valid for the reference`);
        continue;
      }
      try {
        if (!ref.ok) throw new Error(`mutant ${i}: read but the reference refuses it (${ref.reason})`);
        accepted++;
        expect(f.tensors.map((t) => [t.key, t.dtype, t.shape, t.offset, t.nbytes])).toEqual(
          ref.tensors.map((t) => [t.key, t.dtype, t.shape, ref.dataStart + t.begin, t.end - t.begin]),
        );
        expect(Object.entries(f.metadata).sort()).toEqual([...(ref.metadata ?? new Map())].sort());
        for (const t of ref.tensors) {
          const got = await f.read(t.key);
          expect(got.equals(m.subarray(ref.dataStart + t.begin, ref.dataStart + t.end))).toBe(true);
        }
      } finally {
        await f.close();
      }
      fs.rmSync(p);
    }
    if (process.env.FUZZ_VERBOSE) console.log(`accepted ${accepted} of ${N}`);
    // Most mutants break the file; some (a changed data byte, a space) stay valid.
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(N);
  });
});

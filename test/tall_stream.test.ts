/**
 * The streamed TALL passes (compress with fixed λ, masks after a λ grid):
 * pooled buffers and writes that trail the compute by one chunk must not
 * change a byte whatever the chunk size, and an abort or a failing write in
 * the middle of a pass leaves nothing behind.
 */
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { CLI, genTensors, KeySpec, listTree, saveModel, tmpDir } from "./helpers/fixtures";
import { runCompress } from "../lib/job/compress";
import { AbortError } from "../lib";

// Several keys of odd sizes, so chunks end mid-tensor and writes trail across key boundaries.
const KEYS: KeySpec[] = [
  { name: "a.weight", shape: [37, 29], dtype: "BF16" },
  { name: "b.bias", shape: [13], dtype: "BF16" },
  { name: "c.weight", shape: [64, 33], dtype: "BF16" },
  { name: "ids", shape: [4], dtype: "I64" },
  { name: "d.weight", shape: [5, 7], dtype: "BF16" },
];

function zoo(dir: string, T: number) {
  const base = genTensors(KEYS, 7);
  saveModel(base, path.join(dir, "base.safetensors"), "file");
  const experts = Array.from({ length: T }, (_, t) => saveModel(genTensors(KEYS, 70 + t, base), path.join(dir, `e${t}.safetensors`), "file"));
  return { base: base.path, experts };
}

const bundleFiles = (d: string) => ["tau.safetensors", "masks.safetensors"].map((f) => fs.readFileSync(path.join(d, f)));

describe("streamed compress passes", () => {
  const dir = tmpDir("tall-stream-");
  const z = zoo(dir, 3);
  const experts = z.experts.map((p, t) => ({ path: p, name: `t${t}`, weight: 1 }));

  test("fixed λ and λ grid: chunk sizes from 8 entries to whole tensors give the same bytes", async () => {
    for (const tallLambda of [[0.3, 0.45, 0.6], { grid: [0.2, 0.5], score: (task: string, p: string) => fs.statSync(p).size + (task === "t1" ? 1 : 0) }]) {
      const got: Buffer[][] = [];
      for (const chunkElems of [8, 24, 1 << 20]) {
        const out = path.join(dir, `b-${got.length}-${Array.isArray(tallLambda) ? "fixed" : "grid"}`);
        await runCompress({ base: z.base, experts, out, tallLambda, tau: "sum", density: 0.2, scope: "global", chunkElems });
        got.push(bundleFiles(out));
      }
      for (const g of got) g.forEach((b, i) => expect(b.equals(got[2][i])).toBe(true));
    }
  });

  test("an abort in the middle of the compress pass leaves no bundle and no temporary files", async () => {
    for (const tallLambda of [[0.4, 0.4, 0.4], { grid: [0.4], score: () => 1 }]) {
      const out = path.join(dir, "aborted");
      const ac = new AbortController();
      const p = runCompress({
        base: z.base, experts, out, tallLambda, tau: "sum", density: 0.2, scope: "global", chunkElems: 16, signal: ac.signal,
        // Abort once the streamed pass has some chunks behind it (so writes are in flight).
        onProgress: (pr) => void ((pr.phase === "compress" || pr.phase === "masks") && pr.bytesDone > 2000 && ac.abort()),
      });
      await expect(p).rejects.toBeInstanceOf(AbortError);
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(".aborted"))).toEqual([]);
    }
  });

  test("a write failing midway (file size limit, as a full disk) is one error line and leaves nothing", async () => {
    const d = tmpDir("tall-efbig-");
    // 2 × 128 × 1024 bf16 entries: a 512 KB τMTL, beyond a 256 KB limit, written in 32 K-entry chunks.
    const keys: KeySpec[] = [{ name: "w0", shape: [128, 1024], dtype: "BF16" }, { name: "w1", shape: [128, 1024], dtype: "BF16" }];
    const base = genTensors(keys, 1);
    saveModel(base, path.join(d, "base.safetensors"), "file");
    const es = [2, 3].map((s) => saveModel(genTensors(keys, s, base), path.join(d, `e${s}.safetensors`), "file"));
    const outParent = path.join(d, "out");
    fs.mkdirSync(outParent);
    const cmd = `ulimit -f 256; exec "${process.execPath}" "${CLI}" compress --base "${base.path}" ${es.map((e) => `--expert "${e}"`).join(" ")} --out "${path.join(outParent, "bundle")}" --quiet`;
    const child = spawn("bash", ["-c", cmd], { env: { ...process.env, TASKMERGE_CHUNK_ELEMS: String(32 << 10) } });
    let stderr = "";
    child.stderr.on("data", (x) => (stderr += x));
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    expect(code).toBe(1);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toMatch(/file size limit exceeded/);
    expect(listTree(outParent)).toEqual([]);
  });
});

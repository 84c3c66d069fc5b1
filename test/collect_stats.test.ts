/**
 * scripts/collect_stats.py against an independent float64 TypeScript forward pass.
 *
 * Python builds a tiny model (Linear -> LayerNorm -> MultiheadAttention -> Linear), saves
 * its weights, inputs and output; collect_stats.py (CLI) writes the statistics; this file
 * re-implements the forward pass from the saved weights (checked against torch's output)
 * and recomputes every Gram, sum and count from its own activations.
 * Skipped, with a message, when /usr/bin/python3 has no torch.
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { ROOT, readSafetensors, readHeader, values, tmpDir, maxRelErr, makeZoo, smallModel } from "./helpers/fixtures";
import { Checkpoint } from "../lib/checkpoint";
import { fingerprint } from "../lib/fingerprint";

const PY = "/usr/bin/python3";
const hasTorch = fs.existsSync(PY) && spawnSync(PY, ["-c", "import torch, numpy"], { stdio: "ignore" }).status === 0;
if (!hasTorch) console.warn("collect_stats.test: skipped, /usr/bin/python3 with torch and numpy not found");
const maybe = hasTorch ? test : test.skip;

const N = 3, L = 4, IN = 5, E = 8, H = 2, OUT = 3;

const MODEL_PY = `
import torch, torch.nn as nn
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(${IN}, ${E})
        self.ln = nn.LayerNorm(${E})
        self.attn = nn.MultiheadAttention(${E}, ${H}, batch_first=True)
        self.head = nn.Linear(${E}, ${OUT})
    def forward(self, x):
        h = self.embed(x)
        a = self.ln(h)
        h = h + self.attn(a, a, a)[0]
        return self.head(h)
def make():
    return Tiny().double()
`;

const GEN_PY = `
import sys, numpy as np, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
import safetensors_io, tiny
torch.manual_seed(0)
m = tiny.make().eval()
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for p in m.parameters():
        p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    m.ln.weight[0] = 0.0  # dividing the output by the weight would fail here
x = torch.randn(${N}, ${L}, ${IN}, generator=g, dtype=torch.float64)
with torch.no_grad():
    y = m(x)
safetensors_io.save_file(m.state_dict(), sys.argv[3] + "/weights.safetensors")
safetensors_io.save_file({"x": x, "y": y}, sys.argv[3] + "/io.safetensors")
np.save(sys.argv[3] + "/inputs.npy", x.numpy())
`;

type T = { v: Float64Array; shape: number[] };

/** rows [r, k] times W [o, k] transposed, plus bias [o]. */
function linear(x: Float64Array, rows: number, k: number, w: Float64Array, b: Float64Array, o: number, wOff = 0, bOff = 0): Float64Array {
  const y = new Float64Array(rows * o);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < o; j++) {
      let s = b[bOff + j];
      for (let i = 0; i < k; i++) s += x[r * k + i] * w[wOff + j * k + i];
      y[r * o + j] = s;
    }
  return y;
}

function gram(x: Float64Array, rows: number, k: number): Float64Array {
  const g = new Float64Array(k * k);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) g[i * k + j] += x[r * k + i] * x[r * k + j];
  return g;
}

function colSum(x: Float64Array, rows: number, k: number, sq = false): Float64Array {
  const s = new Float64Array(k);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) s[i] += sq ? x[r * k + i] ** 2 : x[r * k + i];
  return s;
}

/** Forward pass of Tiny; returns the output and each module's input rows. */
function forward(p: Record<string, Float64Array>, x: Float64Array) {
  const R = N * L;
  const h = linear(x, R, IN, p["embed.weight"], p["embed.bias"], E);
  const xhat = new Float64Array(R * E), a = new Float64Array(R * E);
  for (let r = 0; r < R; r++) {
    let mu = 0, v = 0;
    for (let i = 0; i < E; i++) mu += h[r * E + i] / E;
    for (let i = 0; i < E; i++) v += (h[r * E + i] - mu) ** 2 / E;
    for (let i = 0; i < E; i++) {
      xhat[r * E + i] = (h[r * E + i] - mu) / Math.sqrt(v + 1e-5);
      a[r * E + i] = xhat[r * E + i] * p["ln.weight"][i] + p["ln.bias"][i];
    }
  }
  const w = p["attn.in_proj_weight"], b = p["attn.in_proj_bias"];
  const q = linear(a, R, E, w, b, E, 0, 0), k = linear(a, R, E, w, b, E, E * E, E), v = linear(a, R, E, w, b, E, 2 * E * E, 2 * E);
  const d = E / H, heads = new Float64Array(R * E);
  for (let n = 0; n < N; n++)
    for (let hh = 0; hh < H; hh++)
      for (let i = 0; i < L; i++) {
        const s = new Float64Array(L);
        for (let j = 0; j < L; j++) {
          for (let c = 0; c < d; c++) s[j] += q[(n * L + i) * E + hh * d + c] * k[(n * L + j) * E + hh * d + c];
          s[j] /= Math.sqrt(d);
        }
        const mx = Math.max(...s);
        let z = 0;
        for (let j = 0; j < L; j++) z += (s[j] = Math.exp(s[j] - mx));
        for (let c = 0; c < d; c++) {
          let o = 0;
          for (let j = 0; j < L; j++) o += (s[j] / z) * v[(n * L + j) * E + hh * d + c];
          heads[(n * L + i) * E + hh * d + c] = o;
        }
      }
  const att = linear(heads, R, E, p["attn.out_proj.weight"], p["attn.out_proj.bias"], E);
  const h2 = h.map((t, i) => t + att[i]);
  const y = linear(h2, R, E, p["head.weight"], p["head.bias"], OUT);
  return { y, rows: { embed: [x, IN], ln: [xhat, E], "attn.in_proj": [a, E], "attn.out_proj": [heads, E], head: [h2, E] } as Record<string, [Float64Array, number]> };
}

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 60000 });
  if (r.status !== 0) throw new Error(`${path.basename(args[0] ?? cmd)} failed (${r.status}): ${r.stderr}`);
  return r;
}

maybe("collect_stats.py matches an independent forward pass (Linear, LayerNorm, MultiheadAttention)", async () => {
  const dir = tmpDir("tm-stats-");
  fs.writeFileSync(path.join(dir, "tiny.py"), MODEL_PY);
  fs.writeFileSync(path.join(dir, "gen.py"), GEN_PY);
  run(PY, [path.join(dir, "gen.py"), path.join(ROOT, "scripts"), dir, dir]);
  const out = path.join(dir, "stats.safetensors");
  run(PY, [path.join(ROOT, "scripts", "collect_stats.py"), "--module", path.join(dir, "tiny.py"), "--factory", "make",
    "--weights", path.join(dir, "weights.safetensors"), "--inputs", path.join(dir, "inputs.npy"), "--batch-size", "2", "--out", out]);

  const load = (f: string) => Object.fromEntries(Object.entries(readSafetensors(f)).map(([k, t]) => [k, { v: values(t), shape: t.shape } as T]));
  const w = load(path.join(dir, "weights.safetensors"));
  const io = load(path.join(dir, "io.safetensors"));
  const { y, rows } = forward(Object.fromEntries(Object.entries(w).map(([k, t]) => [k, t.v])), io.x.v);
  expect(maxRelErr(y, io.y.v, 1)).toBeLessThan(1e-12); // the TS forward is torch's forward

  const stats = load(out);
  const header = readHeader(out);
  const expected: Record<string, Float64Array> = {};
  for (const [m, [x, k]] of Object.entries(rows)) {
    const n = x.length / k;
    expected[`${m}.input_count`] = Float64Array.of(n);
    if (m === "ln") {
      expected[`${m}.norm_sq_sum`] = colSum(x, n, k, true);
      expected[`${m}.norm_sum`] = colSum(x, n, k);
    } else {
      expected[`${m}.input_gram`] = gram(x, n, k);
      expected[`${m}.input_sum`] = colSum(x, n, k);
    }
  }
  expect(Object.keys(stats).sort()).toEqual(Object.keys(expected).sort());
  for (const [key, want] of Object.entries(expected)) {
    expect([key, header[key].dtype]).toEqual([key, "F64"]);
    expect([key, maxRelErr(stats[key].v, want, 1) < 1e-12]).toEqual([key, true]);
  }
  expect(stats["attn.in_proj.input_gram"].shape).toEqual([E, E]);
  // The file records the checkpoint it was collected from (--weights), as taskmerge fingerprints it.
  const weights = path.join(dir, "weights.safetensors");
  expect(header.__metadata__).toMatchObject({ checkpoint: weights, ...(await tsFingerprint(weights)) });
  expect(stats["attn.out_proj.input_count"].shape).toEqual([1]);
  // weight key -> stats prefix: drop ".weight" / "_weight"
  for (const m of Object.keys(rows)) expect(Object.keys(w)).toContain(m === "attn.in_proj" ? "attn.in_proj_weight" : `${m}.weight`);
}, 30000);

/** The fingerprint taskmerge computes for a checkpoint, as the metadata keys statistics files use. */
async function tsFingerprint(p: string): Promise<Record<string, string>> {
  const ck = await Checkpoint.open(p);
  try {
    const fp = await fingerprint(ck);
    return { checkpoint_bytes: String(fp.bytes), checkpoint_header_sha256: fp.headerHash, checkpoint_sample_sha256: fp.sampleHash };
  } finally {
    await ck.close();
  }
}

maybe("collect_stats.py records the checkpoint it ran as taskmerge fingerprints it (file, HF directory, sharded)", async () => {
  const dir = tmpDir("tm-fp-");
  const keys = [...smallModel("BF16"), { name: "empty.weight", shape: [0, 3], dtype: "F32" }];
  const paths: string[] = [];
  for (const layout of ["file", "dir", "sharded"] as const) {
    const sub = path.join(dir, layout);
    fs.mkdirSync(sub);
    const z = makeZoo(sub, { T: 1, keys, layout, seed: 4 });
    paths.push(z.base.path, z.experts[0].path);
  }
  const code = `import sys, json; sys.path.insert(0, sys.argv[1]); import collect_stats
print(json.dumps([collect_stats.checkpoint_fingerprint(p) for p in sys.argv[2:]]))`;
  const py = JSON.parse(run(PY, ["-c", code, path.join(ROOT, "scripts"), ...paths]).stdout) as Record<string, string>[];
  for (const [i, p] of paths.entries()) expect(py[i]).toEqual({ checkpoint: p, ...(await tsFingerprint(p)) });
  // Base and expert share a layout (header hash) but not their weights (sample hash).
  expect(py[0].checkpoint_header_sha256).toBe(py[1].checkpoint_header_sha256);
  expect(py[0].checkpoint_sample_sha256).not.toBe(py[1].checkpoint_sample_sha256);
}, 30000);

// The Python-side suites: hand-built references for RMSNorm, multi-dim LayerNorm, masked and
// cross attention, the TransformerEncoderLayer fast path; safetensors_io round trips.
for (const script of ["test_collect_stats.py", "test_safetensors_io.py"])
  maybe(`scripts/${script}`, () => {
    const r = spawnSync(PY, [path.join(ROOT, "scripts", script)], { encoding: "utf8", timeout: 60000 });
    expect([r.status, r.stdout.trim().split("\n").at(-1)]).toEqual([0, expect.stringMatching(/^ok: /)]);
  }, 60000);

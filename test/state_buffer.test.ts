/**
 * State buffers (native/boundary/state_buffer.h): the selection state a
 * handle holds across op calls. A handle's life (alloc, fill, read, free,
 * refusals), the selection ops taking handles instead of typed arrays, and,
 * on a backend without host views (the copying fake backend), that the state
 * no longer crosses the boundary with every chunk while the merged bytes stay
 * those of the CPU.
 */
import * as fs from "fs";
import * as path from "path";
import { allocState, freeState, readState, runOp, runRawOp } from "../lib/native";
import { runMerge } from "../lib/job/merge";
import { makeZoo, rejection, tmpDir, ROOT } from "./helpers/fixtures";
import { buildFake, cc, probe } from "./helpers/fake_backend";

const f32 = (vals: ArrayLike<number>) => Buffer.from(new Float32Array(vals).buffer);

/** A chunk of T float32 experts over a base, n entries, deterministic values. */
function chunk(T: number, n: number) {
  const base = new Float32Array(n), experts: Float32Array[] = [];
  for (let i = 0; i < n; i++) base[i] = Math.sin(i) * 0.5;
  for (let t = 0; t < T; t++) {
    const e = new Float32Array(n);
    for (let i = 0; i < n; i++) e[i] = base[i] + Math.cos(i * (t + 1) * 0.37) * 0.01 * (1 + (i % 7));
    experts.push(e);
  }
  return { base, experts, args: { n, base: f32(base), baseDtype: "F32", experts: experts.map(f32), expertDtypes: experts.map(() => "F32") } };
}

describe("a state buffer's life", () => {
  test("alloc gives zeroed bytes; fill and read work on byte ranges", async () => {
    const s = await allocState(64);
    expect([...(await readState(s, 0, new Uint8Array(64)))]).toEqual(new Array(64).fill(0));
    await runOp("state_fill", { state: s, offset: 8, bytes: 16, value: 0xab });
    const back = await readState(s, 4, new Uint8Array(24));
    expect([...back]).toEqual([0, 0, 0, 0, ...new Array(16).fill(0xab), 0, 0, 0, 0]);
    await freeState(s);
  });

  test("out-of-range reads and fills, a bad fill value, a short `into` are refused naming the argument", async () => {
    const s = await allocState(32);
    expect(await rejection(runOp("state_read", { state: s, offset: 24, bytes: 16, into: new Uint8Array(16) }))).toMatchObject({
      kind: "argument", arg: "bytes", message: "bytes: bytes [24, 40) lie outside the state buffer of 32 bytes",
    });
    expect(await rejection(runOp("state_fill", { state: s, offset: 30, bytes: 4 }))).toMatchObject({ kind: "argument", arg: "bytes" });
    expect(await rejection(runOp("state_fill", { state: s, bytes: 4, value: 256 }))).toMatchObject({ kind: "argument", arg: "value" });
    expect(await rejection(runOp("state_read", { state: s, bytes: 8, into: new Uint8Array(4) }))).toMatchObject({
      kind: "argument", arg: "into", message: "into: expected 8 bytes, got 4",
    });
    await freeState(s);
  });

  test("a double free and any use after free are refused with a clear error", async () => {
    const T = 2;
    const c = chunk(T, 16);
    const hist = await allocState(T * 32768 * 8);
    await runOp("magnitude_hist", { ...c.args, level: 0, hist });
    await freeState(hist);
    expect(await rejection(runOp("state_free", { state: hist }))).toMatchObject({
      kind: "argument", arg: "state", message: "state: the state buffer was already freed",
    });
    expect(await rejection(runOp("magnitude_hist", { ...c.args, level: 0, hist }))).toMatchObject({
      kind: "argument", arg: "hist", message: "hist: the state buffer was freed (state_free) before this use",
    });
    expect(await rejection(readState(hist, 0, new Uint8Array(8)))).toMatchObject({ kind: "argument", arg: "state" });
  });

  test("a state of the wrong size is refused naming the argument", async () => {
    const c = chunk(3, 16);
    const small = await allocState(2 * 32768 * 8);
    expect(await rejection(runOp("magnitude_hist", { ...c.args, level: 0, hist: small }))).toMatchObject({
      kind: "argument", arg: "hist", message: `hist: state buffer of ${2 * 32768 * 8} bytes, expected ${3 * 32768 * 8}`,
    });
    const cand = await allocState(3 * 10 * 4), candDiff = await allocState(3 * 10), used = await allocState(3 * 8);
    const tableCounts = await allocState(3 * 16 * 8), tableDiffs = await allocState(3 * 16 * 8 - 1);
    const e = await rejection(runOp("ties_window", {
      ...c.args, lo: [0, 0, 0], hi: [1, 1, 1], table: new Array(48).fill(-1), tableCounts, tableDiffs, capacity: 10, cand, candDiff, used, multiCap: 0,
    }));
    expect(e).toMatchObject({ kind: "argument", arg: "tableDiffs" });
    await freeState(small, cand, candDiff, used, tableCounts, tableDiffs);
  });

  test("the selection ops take state handles, not typed arrays", async () => {
    const c = chunk(2, 16);
    // @ts-expect-error: hist is a StateHandle now
    const typed = runOp("magnitude_hist", { ...c.args, level: 0, hist: new Float64Array(2 * 32768) });
    expect(await rejection(typed)).toMatchObject({ kind: "argument", arg: "hist", message: "hist: missing state buffer (a handle from state_alloc)" });
    // @ts-expect-error: bits is a StateHandle now
    const bits = runOp("ties_sample", { ...c.args, bits: new Uint32Array(32), m: 16, at: 0 });
    expect(await rejection(bits)).toMatchObject({ kind: "argument", arg: "bits" });
    // Nothing else passes for a handle.
    expect((await rejection(runRawOp("magnitude_pick", { hist: {} as never, bins: 2, ks: [1] }))).message).toMatch(/argument 'hist' has an unsupported type/);
  });

  test("magnitude_hist counts into the state: the high 16 bits of |θt − θ0| per task (float32 reference)", async () => {
    const T = 3, n = 5000, BINS = 32768;
    const c = chunk(T, n);
    const hist = await allocState(T * BINS * 8);
    // In two chunks: the counts add up across calls in the state.
    const half = (lo: number, hi: number) => ({
      n: hi - lo, offset: lo, base: f32(c.base.subarray(lo, hi)), baseDtype: "F32",
      experts: c.experts.map((e) => f32(e.subarray(lo, hi))), expertDtypes: c.experts.map(() => "F32"),
    });
    await runOp("magnitude_hist", { ...half(0, 2000), level: 0, hist });
    await runOp("magnitude_hist", { ...half(2000, n), level: 0, hist });
    const got = await readState(hist, 0, new Float64Array(T * BINS));
    await freeState(hist);
    const want = new Float64Array(T * BINS);
    const f = new Float32Array(1), u = new Uint32Array(f.buffer);
    for (let t = 0; t < T; t++)
      for (let i = 0; i < n; i++) {
        f[0] = Math.abs(Math.fround(c.experts[t][i] - c.base[i]));
        want[t * BINS + (u[0] >>> 16)]++;
      }
    expect(got).toEqual(want);
  });
});

/** The fake copying backend's counters, read in the child. */
const COUNTERS = `
const native = require("./dist/native");
const fakeInfo = () => native.nativeInfo().backends.find((b) => b.name === "cuda").description;
const counters = () => { const m = /to_backend=(\\d+) to_host=(\\d+)/.exec(fakeInfo()); return [Number(m[1]), Number(m[2])]; };
const live = () => Number(/live=(-?\\d+)/.exec(fakeInfo())[1]);
const delta = async (fn) => { const a = counters(); await fn(); const b = counters(); return { toBackend: b[0] - a[0], toHost: b[1] - a[1] }; };
const refusal = (p) => p.then(() => "ok", (e) => e.message);`;

(cc ? describe : describe.skip)("on a backend without host views (the copying fake backend)", () => {
  let fake: string;
  beforeAll(() => {
    fake = buildFake(3);
  });

  test("a state of one device passed to an op on another is refused naming the argument", () => {
    const script = `${COUNTERS}
const T = 2, n = 8, f = (v) => Buffer.from(new Float32Array(n).fill(v).buffer);
const c = { n, base: f(0), baseDtype: "F32", experts: [f(1), f(2)], expertDtypes: ["F32", "F32"] };
(async () => {
  const onCuda = await native.allocState(T * 32768 * 8, "cuda"), onCpu = await native.allocState(T * 32768 * 8, "cpu");
  const out = {
    cpuOp: await refusal(native.runOp("magnitude_hist", { ...c, level: 0, hist: onCuda, device: "cpu" })),
    cudaOp: await refusal(native.runOp("magnitude_hist", { ...c, level: 0, hist: onCpu, device: "cuda" })),
    pick: await refusal(native.runOp("magnitude_pick", { hist: onCuda, bins: 32768, ks: [1, 1], device: "cpu" })),
    lowp: await refusal(native.runOp("mergekit_lowp_hist", { ...c, compute: "BF16", hist: onCuda })),
    same: await refusal(native.runOp("magnitude_hist", { ...c, level: 0, hist: onCuda, device: "cuda" })),
  };
  await native.freeState(onCuda, onCpu);
  console.log(JSON.stringify(out));
})();`;
    const { out } = probe(fake, script) as { out: Record<string, string> };
    expect(out.cpuOp).toBe("hist: a state buffer of device 'cuda' passed to an op on device 'cpu'");
    expect(out.cudaOp).toBe("hist: a state buffer of device 'cpu' passed to an op on device 'cuda'");
    expect(out.pick).toBe("hist: a state buffer of device 'cuda' passed to an op on device 'cpu'");
    expect(out.lowp).toBe("hist: a state buffer of device 'cuda' passed to an op on device 'cpu'");
    expect(out.same).toBe("ok");
  });

  test("state_free frees the device buffer; a handle dropped unfreed is freed when collected", () => {
    const script = `${COUNTERS}
(async () => {
  const start = live();
  const kept = await native.allocState(1 << 20, "cuda");
  const afterAlloc = live();
  await native.freeState(kept);
  const afterFree = live();
  await native.allocState(1 << 20, "cuda"); // dropped without state_free
  const dropped = live();
  for (let i = 0; i < 20 && live() > afterFree; i++) { global.gc(); await new Promise((r) => setTimeout(r, 10)); }
  console.log(JSON.stringify({ alloc: afterAlloc - start, free: afterFree - start, dropped: dropped - start, collected: live() - start }));
})();`;
    const { out } = probe(fake, script, { NODE_OPTIONS: "--expose-gc" });
    expect(out).toEqual({ alloc: 1, free: 0, dropped: 1, collected: 0 });
  });

  test("per chunk only the chunk's data crosses: the state stays on the device (T = 8)", () => {
    const T = 8, n = 1 << 16, C = 1 << 14;
    const script = `${COUNTERS}
const T = ${T}, n = ${n}, C = ${C};
const mk = (s) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = Math.sin(i * s) * 0.01; return Buffer.from(a.buffer); };
const c = { n, base: mk(0.1), baseDtype: "F32", experts: Array.from({ length: T }, (_, t) => mk(0.2 + t)), expertDtypes: new Array(T).fill("F32"), device: "cuda" };
(async () => {
  const st = (b) => native.allocState(b, "cuda");
  const hist = await st(T * 65536 * 8), signDiff = await st(T * 65536 * 8), bits = await st(T * n * 4);
  const cand = await st(T * C * 4), candDiff = await st(T * C), used = await st(T * 8), tableCounts = await st(T * 16 * 8), tableDiffs = await st(T * 16 * 8);
  const prefix = new Array(T).fill(0x3c00);
  const out = {
    hist: await delta(() => native.runOp("magnitude_hist", { ...c, level: 1, hist, prefix, signDiff, multiCap: 1 << 16 })),
    sample: await delta(() => native.runOp("ties_sample", { ...c, bits, m: n, at: 0 })),
    window: await delta(() => native.runOp("ties_window", { ...c, lo: new Array(T).fill(0x3c000000), hi: new Array(T).fill(0x3c100000),
      table: new Array(T * 16).fill(-1), tableCounts, tableDiffs, capacity: C, cand, candDiff, used, multiCap: 1 << 16 })),
    read: await delta(() => native.readState(signDiff, 8 * 1000, new Float64Array(500))),
    pick: await delta(() => native.runOp("magnitude_pick", { hist, bins: 65536, ks: new Array(T).fill(1), device: "cuda" })),
  };
  // The same counts as on the CPU, read back from the device.
  const cpuHist = await native.allocState(T * 65536 * 8, "cpu");
  await native.runOp("magnitude_hist", { ...c, device: "cpu", level: 1, hist: cpuHist, prefix });
  const a = await native.readState(hist, 0, new Float64Array(T * 65536)), b = await native.readState(cpuHist, 0, new Float64Array(T * 65536));
  out.sameCounts = a.every((x, i) => x === b[i]) && a.some((x) => x > 0);
  console.log(JSON.stringify(out));
})();`;
    const { out } = probe(fake, script) as { out: Record<string, { toBackend: number; toHost: number }> & { sameCounts: boolean } };
    const chunkBytes = (T + 1) * n * 4;
    // Before: hist and signDiff (T × 65536 float64, 4 MiB each at T = 8) went in and came back with every chunk; the lists too.
    expect(out.hist).toEqual({ toBackend: chunkBytes, toHost: 0 });
    expect(out.sample).toEqual({ toBackend: chunkBytes, toHost: 0 });
    expect(out.window).toEqual({ toBackend: chunkBytes, toHost: 0 });
    expect(out.read).toEqual({ toBackend: 0, toHost: 500 * 8 });
    expect(out.pick).toEqual({ toBackend: 0, toHost: 0 });
    expect(out.sameCounts).toBe(true);
  });

  const dir = tmpDir("tm-state-merge-");
  const zoo = makeZoo(dir, {
    T: 8, seed: 5, keys: [
      { name: "a.weight", shape: [128, 96], dtype: "F32" },
      { name: "b.weight", shape: [64, 80], dtype: "BF16" },
      { name: "c.bias", shape: [300], dtype: "F32" },
    ],
  });
  for (const select of ["window", "histogram"] as const)
    test(`a TIES global merge (${select} selection): CPU bytes, and the state crosses once per selection, not per chunk`, async () => {
      const chunkElems = 2048;
      const params = { scope: "global", density: 0.3 };
      const cpuOut = path.join(dir, `cpu-${select}.safetensors`), fakeOut = path.join(dir, `fake-${select}.safetensors`);
      const prev = process.env.TASKMERGE_TIES_SELECT;
      process.env.TASKMERGE_TIES_SELECT = select;
      try {
        await runMerge({ base: zoo.base.path, experts: zoo.experts.map((e, t) => ({ path: e.path, name: `task${t}`, weight: 1 })), method: "ties", params, out: cpuOut, chunkElems });
      } finally {
        if (prev === undefined) delete process.env.TASKMERGE_TIES_SELECT; else process.env.TASKMERGE_TIES_SELECT = prev;
      }
      const arg = JSON.stringify({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), params, out: fakeOut, chunkElems });
      const script = `process.argv[2] = ${JSON.stringify(arg)}; require(${JSON.stringify(path.join(ROOT, "test", "fixtures", "backends", "count_merge.js"))});`;
      const { out } = probe(fake, script, { TASKMERGE_TIES_SELECT: select }) as {
        out: { toBackend: number; toHost: number; chunkOps: number; chunkIn: number; chunkOut: number; stateBytes: number; ops: Record<string, number> };
      };
      expect(fs.readFileSync(fakeOut).equals(fs.readFileSync(cpuOut))).toBe(true);
      expect(out.ops[select === "window" ? "ties_window" : "magnitude_hist"]).toBeGreaterThan(8);
      // In: exactly the chunks' inputs. Back: the merged chunks, and each state read at most once.
      expect(out.toBackend).toBe(out.chunkIn);
      expect(out.toHost - out.chunkOut).toBeGreaterThan(0);
      expect(out.toHost - out.chunkOut).toBeLessThanOrEqual(out.stateBytes);
      console.log(`ties global (${select}), T = 8, ${out.chunkOps} chunk ops: ${out.toBackend} B in (chunk data ${out.chunkIn} B), ` +
        `${out.toHost} B back (merged chunks ${out.chunkOut} B, state read back ${out.toHost - out.chunkOut} B of ${out.stateBytes} B allocated)`);
    });
});

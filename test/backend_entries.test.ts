/**
 * norm_accumulate, drift_norm and mergekit's low-precision ops run on the
 * backend their `device` names (backend.h's entries of the same names),
 * no longer on the host whatever the device: on a backend that leaves those
 * entries NULL (the fake "cuda" backend with a device, test/helpers/
 * fake_backend.ts) each runs on the CPU instead, the addon naming the entry
 * that was missing (deviceFallback), and on the CPU it runs.
 */
import { buildFake, cc, probe } from "./helpers/fake_backend";

const OPS = ["norm_accumulate", "drift_norm", "mergekit_lowp_hist", "mergekit_lowp_tie_cut", "mergekit_lowp_l1", "mergekit_lowp_gta", "mergekit_lowp_linear"];

/** Each op once per device, with valid arguments: its message or "ok". */
const SCRIPT = `
const { runRawOp, allocState } = require("./dist/native");
const n = 8, f32 = (v) => new Float32Array(n).fill(v);
const chunk = () => ({ n, base: f32(0.5), baseDtype: "F32", experts: [f32(0.75)], expertDtypes: ["F32"], compute: "BF16" });
const out = () => ({ out: Buffer.alloc(4 * n), outDtype: "F32" });
const args = {
  norm_accumulate: { rows: new Float32Array([1, 2, 3, 4]), rowsDtype: "F32", width: 2, sqsum: new Float64Array(2), sum: new Float64Array(2) },
  drift_norm: { n, merged: f32(1), mergedDtype: "F32", expert: f32(2), expertDtype: "F32", base: f32(0), baseDtype: "F32", scale: f32(1), scaleDtype: "F32" },
  // A CPU state: on "cuda" the missing entry sends the op to the CPU, where this state lives.
  mergekit_lowp_hist: { ...chunk(), hist: "state" },
  mergekit_lowp_tie_cut: { ...chunk(), thresholds: [0], need: [1] },
  mergekit_lowp_l1: { ...chunk() },
  mergekit_lowp_gta: { ...chunk(), ...out(), weights: [1], scales: [1], consensus: "none", normalize: 0, lambda: 1 },
  mergekit_lowp_linear: { ...chunk(), ...out(), weights: [1], baseWeight: 0, normalize: 0 },
};
(async () => {
  args.mergekit_lowp_hist.hist = await allocState(32768 * 8, "cpu");
  const rep = {};
  for (const device of ["cpu", "cuda"])
    for (const [op, a] of Object.entries(args))
      rep[device + " " + op] = await runRawOp(op, { ...a, device }).then((r) => (r.deviceFallback ? "fell back: " + r.deviceFallback : "ok"), (e) => e.message);
  console.log(JSON.stringify(rep));
})();`;

(cc ? test : test.skip)("each runs on the named backend: on the CPU where its entry is NULL, saying so", () => {
  const { out } = probe(buildFake(1), SCRIPT) as { out: Record<string, string> };
  for (const op of OPS) {
    expect(out[`cpu ${op}`]).toBe("ok");
    expect(out[`cuda ${op}`]).toBe(`fell back: ${op}`);
  }
});

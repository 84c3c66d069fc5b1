/** inspect(): keys, dtypes, shapes, bytes and totals, through the API and the CLI. */
import { inspect } from "../lib";
import { makeZoo, runCli, tmpDir, numel } from "./helpers/fixtures";

describe("inspect", () => {
  test("API totals match the generated checkpoint (sharded directory)", async () => {
    const zoo = makeZoo(tmpDir(), { T: 1, dtype: "BF16", layout: "sharded" });
    const r = await inspect(zoo.base.path);
    const raw = zoo.base.raw;
    expect(r.tensors.map((t) => t.key).sort()).toEqual(Object.keys(raw).sort());
    for (const t of r.tensors) {
      expect(t.shape).toEqual(raw[t.key].shape);
      expect(t.dtype).toBe(raw[t.key].dtype);
      expect(t.bytes).toBe(raw[t.key].data.length);
      expect(t.numel).toBe(numel(raw[t.key].shape));
    }
    expect(r.files).toHaveLength(2);
    expect(r.totals.bytes).toBe(Object.values(raw).reduce((s, t) => s + t.data.length, 0));
    expect(r.totals.byDtype.I64.tensors).toBe(1);
  });

  test("CLI prints every key and the totals", async () => {
    const zoo = makeZoo(tmpDir(), { T: 1 });
    const r = await runCli(["inspect", zoo.base.path]);
    expect(r.code).toBe(0);
    for (const k of Object.keys(zoo.base.raw)) expect(r.stdout).toContain(k);
    expect(r.stdout).toMatch(/total: 9 tensors/);
  });
});

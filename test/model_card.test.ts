/**
 * The model card and config.json of directory outputs: no absolute paths of
 * this machine (paths relative to the output), base_model from the option or
 * the base's config.json (a Hub id only, never a local path), the base's
 * license, a card for `extract` outputs too, and torch_dtype following dtype.
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { compress, extract, merge } from "../lib";
import { makeZoo, runCli, tmpDir } from "./helpers/fixtures";

const front = (card: string) => YAML.parse(/^---\n([\s\S]*?)\n---\n/.exec(card)![1]);
const read = (...p: string[]) => fs.readFileSync(path.join(...p), "utf8");

function zooWithCard(config: Record<string, unknown>, readme?: string) {
  const dir = tmpDir("card-");
  makeZoo(dir, { T: 2, layout: "dir" });
  fs.writeFileSync(path.join(dir, "base", "config.json"), JSON.stringify(config));
  if (readme !== undefined) fs.writeFileSync(path.join(dir, "base", "README.md"), readme);
  return { dir, base: path.join(dir, "base"), experts: [path.join(dir, "task0"), path.join(dir, "task1")] };
}

test("merge: base_model and license from the base, relative paths, torch_dtype follows dtype", async () => {
  const z = zooWithCard(
    { _name_or_path: "acme/tiny-base", model_type: "toy", torch_dtype: "float32", hidden_size: 8 },
    "---\nlicense: apache-2.0\nlanguage: en\n---\n# the base's card\n",
  );
  const out = path.join(z.dir, "merged");
  await merge({ base: z.base, experts: z.experts, method: { name: "ties", density: 0.5 }, out, dtype: "bf16" });
  const card = read(out, "README.md");
  expect(front(card)).toEqual({ base_model: "acme/tiny-base", license: "apache-2.0", tags: ["merge", "taskmerge", "ties"] });
  expect(card).not.toContain(z.dir);
  expect(card).toContain("- Base: `../base` (acme/tiny-base)");
  expect(card).toContain("| task1 | `../task1` | 1 | — |");
  expect(JSON.parse(read(out, "config.json"))).toEqual({ _name_or_path: "acme/tiny-base", model_type: "toy", torch_dtype: "bfloat16", hidden_size: 8 });

  // The card's merge.yaml, saved in the output directory, reproduces the merge.
  fs.writeFileSync(path.join(out, "merge.yaml"), /```yaml\n([\s\S]*?)```/.exec(card)![1]);
  const again = await runCli(["merge", "--config", path.join(out, "merge.yaml"), "--out", path.join(z.dir, "again"), "-q"]);
  expect(again.stderr).toBe("");
  expect(fs.readFileSync(path.join(z.dir, "again", "model.safetensors")).equals(fs.readFileSync(path.join(out, "model.safetensors")))).toBe(true);
});

test("merge: --base-model wins; a local _name_or_path is not a base_model; no dtype keeps config.json as it is", async () => {
  const config = { _name_or_path: "/home/someone/models/base", model_type: "toy" };
  const z = zooWithCard(config);
  const out = path.join(z.dir, "m1");
  const r = await runCli(["merge", "--base", z.base, "--expert", z.experts[0], "--expert", z.experts[1], "--method", "average", "--base-model", "org/given", "--out", out, "-q"]);
  expect(r.code).toBe(0);
  expect(front(read(out, "README.md"))).toEqual({ base_model: "org/given", tags: ["merge", "taskmerge", "average"] });
  expect(read(out, "config.json")).toBe(JSON.stringify(config));

  const out2 = path.join(z.dir, "m2");
  await merge({ base: z.base, experts: z.experts, method: "average", out: out2 });
  const card = read(out2, "README.md");
  expect(front(card)).toEqual({ tags: ["merge", "taskmerge", "average"] });
  expect(card).toContain("# base_model: <the base's Hugging Face Hub id>");
  expect(card).not.toContain("/home/someone");

  await expect(merge({ base: z.base, experts: z.experts, method: "average", out: path.join(z.dir, "m3"), baseModel: "/abs/path" })).rejects.toThrow(
    /baseModel must be a Hugging Face Hub id/,
  );
  expect(fs.existsSync(path.join(z.dir, "m3"))).toBe(false);
});

test("extract: a directory output gets a card with relative paths; torch_dtype follows dtype", async () => {
  const z = zooWithCard({ _name_or_path: "acme/tiny-base", torch_dtype: "float32" }, "---\nlicense: mit\n---\n");
  const bundle = path.join(z.dir, "bundle");
  await compress({ base: z.base, experts: z.experts, out: bundle });
  const out = path.join(z.dir, "task1-rebuilt");
  await extract({ bundle, task: "task1", base: z.base, out, dtype: "f16" });
  const card = read(out, "README.md");
  expect(front(card)).toEqual({ base_model: "acme/tiny-base", license: "mit", tags: ["taskmerge", "tall-masks"] });
  expect(card).toContain("Task **task1** rebuilt");
  expect(card).toContain("- Bundle: `../bundle`");
  expect(card).not.toContain(z.dir);
  expect(JSON.parse(read(out, "config.json")).torch_dtype).toBe("float16");
});

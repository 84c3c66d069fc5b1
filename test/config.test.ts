/**
 * merge.yaml through the real CLI: both forms, paths relative to the file,
 * flags over the file, and every kind of malformed file giving exit 2 and one
 * line that names the file, the key and its line.
 */
import * as fs from "fs";
import * as path from "path";
import { makeZoo, runCli, tmpDir, listTree, readSafetensors } from "./helpers/fixtures";

let dir: string;
beforeAll(() => {
  dir = tmpDir("tm-config-");
  makeZoo(dir, { T: 2, layout: "dir" });
});

/** Writes `text` as a config in the zoo's directory (so relative paths resolve against it). */
function config(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

const manifest = (out: string) => JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));

describe("valid configs", () => {
  test("taskmerge form: relative paths resolve against the config's directory, not the working directory", async () => {
    const file = config("native.yaml", "base: base/\nexperts:\n  - task0/\n  - {path: task1/, name: second, weight: 0.5}\nmethod: task_arithmetic\nlambda: 0.6\nout: native-out/\n");
    const elsewhere = tmpDir();
    const r = await runCli(["merge", "--config", file, "-q"], { cwd: elsewhere });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    const m = manifest(path.join(dir, "native-out"));
    expect(m).toMatchObject({
      method: "task_arithmetic", params: { lambda: 0.6 }, base: path.join(dir, "base"),
      experts: [{ name: "task0", path: path.join(dir, "task0"), weight: 1 }, { name: "second", path: path.join(dir, "task1"), weight: 0.5 }],
    });
  });

  // mergekit's dtype is its compute precision (bfloat16 compute: test/mergekit_dtype.test.ts); computed in
  // float32 and written in bfloat16, the mergekit form is what the flags give.
  test("flags override the file; the mergekit form gives the same merge as the equivalent flags", async () => {
    const file = config(
      "mk.yaml",
      [
        "merge_method: task_arithmetic",
        "base_model: base",
        "models:",
        "  - model: base          # mergekit lists the base too; it is skipped",
        "  - model: task0",
        "    parameters: {weight: 1.0}",
        "  - model: task1",
        "parameters:",
        "  lambda: 0.3",
        "dtype: float32",
        "out_dtype: bfloat16",
        "tokenizer_source: base",
        "out: mk-out",
        "",
      ].join("\n"),
    );
    const viaFile = path.join(dir, "mk-override");
    const viaFlags = path.join(dir, "mk-flags");
    const [a, b] = await Promise.all([
      runCli(["merge", "--config", file, "--lambda", "0.7", "--out", viaFile, "-q"]),
      runCli(["merge", "--base", path.join(dir, "base"), "--expert", path.join(dir, "task0"), "--expert", path.join(dir, "task1"),
        "--method", "task_arithmetic", "--lambda", "0.7", "--dtype", "bf16", "--out", viaFlags, "-q"]),
    ]);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, "", 0, ""]);
    expect(fs.existsSync(path.join(dir, "mk-out"))).toBe(false); // --out won over the file's out
    expect(manifest(viaFile)).toMatchObject({ params: { lambda: 0.7, compute_dtype: "float32" }, dtype: "BF16" });
    expect(manifest(viaFile).experts.map((e: { name: string }) => e.name)).toEqual(["task0", "task1"]);
    expect(fs.readFileSync(path.join(viaFile, "model.safetensors"))).toEqual(fs.readFileSync(path.join(viaFlags, "model.safetensors")));
    expect(Object.keys(readSafetensors(viaFile))).toHaveLength(9);
  });
});

/** [name, file text, expected stderr after "taskmerge: <file>: "] */
const BAD: [string, string, RegExp][] = [
  ["bad YAML syntax", "base: [base/\nmethod: average\n", /^invalid YAML: .*line 2/],
  ["duplicate key", "base: base/\nbase: task0/\n", /^invalid YAML: Map keys must be unique/],
  ["empty file", "# nothing here\n", /^the file is empty; expected a mapping of merge options$/],
  ["a list, not a mapping", "- base/\n- task0/\n", /^expected a mapping of merge options, found a list$/],
  ["unknown key", "base: base/\nexperts: [task0/]\nmethod: average\nlamda: 0.3\nout: o/\n", /^lamda: unknown key \(did you mean 'lambda'\?\) \(line 4\)$/],
  ["unknown key in an expert", "base: base/\nexperts:\n  - path: task0/\n    wieght: 2\nmethod: average\nout: o/\n", /^experts\[0\]\.wieght: unknown key \(did you mean 'weight'\?\) \(line 4\)$/],
  ["wrong type", "base: base/\nexperts: [task0/]\nmethod: task_arithmetic\nlambda: high\nout: o/\n", /^lambda: expected number, received string \(line 4\)$/],
  ["experts not a list", "base: base/\nexperts: task0/\nmethod: average\nout: o/\n", /^experts: expected array, received string \(line 2\)$/],
  ["an expert that is a number", "base: base/\nexperts: [task0/, 7]\nmethod: average\nout: o/\n", /^experts\[1\]: expected a path or a mapping with 'path' \(line 2\)$/],
  ["bad dtype", "base: base/\nexperts: [task0/]\nmethod: average\ndtype: fp8\nout: o/\n", /^dtype: expected one of f32, f16, bf16, .* \(got "fp8"\) \(line 4\)$/],
  ["bad max_shard_size", "base: base/\nexperts: [task0/]\nmethod: average\nmax_shard_size: lots\nout: o/\n", /^max_shard_size: invalid size 'lots'/],
  ["missing base", "experts: [task0/]\nmethod: average\nout: o/\n", /^missing 'base' \(give it in the file or with --base\)$/],
  ["missing base (mergekit)", "merge_method: average\nmodels:\n  - model: task0/\nout: o/\n", /^missing 'base_model' \(give it in the file or with --base\)$/],
  ["unknown method", "base: base/\nexperts: [task0/]\nmethod: frankenmerge\nout: o/\n", /^method: unknown method 'frankenmerge' \(available: average, task_arithmetic/],
  ["mergekit's linear: a base outside the models has no weight", "merge_method: linear\nbase_model: base/\nmodels: [{model: task0/, parameters: {weight: 1}}]\nout: o/\n", /^base_model: is not among 'models' and has no weight: mergekit's linear averages every model, the base too/],
  ["mergekit's linear of one model", "merge_method: linear\nmodels: [{model: task0/}]\nout: o/\n", /^models: linear of one model is that model; list at least two$/],
  ["mergekit's linear: a gradient as the base's weight", "merge_method: linear\nbase_model: base/\nmodels:\n  - model: base/\n    parameters: {weight: [0, 1]}\n  - model: task0/\nout: o/\n", /^models\[0\]\.parameters\.weight: the base model's weight must be one number/],
  ["a mergekit method taskmerge does not run", "merge_method: della\nbase_model: base/\nmodels: [{model: task0/}]\nout: o/\n", /^merge_method: unknown method 'della' \(available: .*\); mergekit's 'della' is not supported \(mergekit methods taskmerge runs with mergekit's meaning: linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties\)$/],
  ["unknown method (mergekit)", "merge_method: slerp\nbase_model: base/\nmodels: [{model: task0/}]\nout: o/\n", /^merge_method: unknown method 'slerp'/],
  ["a parameter the method does not take", "base: base/\nexperts: [task0/]\nmethod: average\nlambda: 0.5\nout: o/\n", /^lambda: method 'average' has no parameter 'lambda' \(it takes no parameters\)$/],
  ["a parameter under the method mapping", "base: base/\nexperts: [task0/]\nmethod: {name: task_arithmetic, lambda: [1, 2]}\nout: o/\n", /^method\.lambda: expected number, received array \(line 3\)$/],
  ["a parameter given twice", "base: base/\nexperts: [task0/]\nmethod: {name: task_arithmetic, lambda: 1}\nlambda: 2\nout: o/\n", /^lambda: given twice \(also as method\.lambda\)$/],
  ["mixed forms", "merge_method: average\nbase: base/\nmodels: [{model: task0/}]\nout: o/\n", /^base: unknown key \(the mergekit form of this file uses 'base_model'; do not mix the two forms\) \(line 2\)$/],
  ["mergekit: weight not a number", "merge_method: task_arithmetic\nbase_model: base/\nmodels:\n  - model: task0/\n    parameters: {weight: 1}\n  - model: task1/\n    parameters:\n      weight: heavy\nout: o/\n", /^models\[1\]\.parameters\.weight: expected number, received string \(line 8\)$/],
  ["mergekit: a malformed gradient", "merge_method: task_arithmetic\nbase_model: base/\nmodels:\n  - model: task0/\n    parameters: {weight: [0, high, 1]}\nout: o/\n", /^models\[0\]\.parameters\.weight: expected a number, a gradient \(a non-empty list of numbers\) or a list of \{filter, value\} \(value: a number or a gradient\) \(line 5\)$/],
  ["mergekit: a filter list with a stray key", "merge_method: ties\nbase_model: base/\nmodels:\n  - model: task0/\n    parameters:\n      density: [{filter: mlp, valeu: 0.5}]\nout: o/\n", /^models\[0\]\.parameters\.density: expected a number, a gradient .* \(line 6\)$/],
  ["mergekit: a gradient for one of taskmerge's own methods", "merge_method: consensus_ties\nbase_model: base/\nmodels:\n  - model: task0/\n    parameters: {density: [0.2, 0.4]}\nout: o/\n", /^models\[0\]\.parameters\.density: a gradient or filter list needs one of mergekit's methods \(linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties\); 'consensus_ties' takes one number here$/],
  ["mergekit: normalize not a boolean", "merge_method: ties\nbase_model: base/\nmodels: [{model: task0/}]\nparameters: {normalize: 1}\nout: o/\n", /^parameters\.normalize: expected boolean, received number \(line 4\)$/],
  ["mergekit: unknown model parameter", "merge_method: task_arithmetic\nbase_model: base/\nmodels:\n  - model: task0/\n    parameters: {densty: 0.5}\nout: o/\n", /^models\[0\]\.parameters\.densty: unknown key \(did you mean 'density'\?\) \(line 5\)$/],
  ["mergekit: unsupported global parameter", "merge_method: task_arithmetic\nbase_model: base/\nmodels: [{model: task0/}]\nparameters: {epsilon: 0.1}\nout: o/\n", /^parameters\.epsilon: unknown key \(allowed: .*lambda.*normalize.*\) \(line 4\)$/],
  ["mergekit: a parameter the mergekit method does not take", "merge_method: task_arithmetic\nbase_model: base/\nmodels: [{model: task0/}]\nparameters: {scope: tensor}\nout: o/\n", /^parameters\.scope: method 'task_arithmetic' has no parameter 'scope' \(parameters: lambda, normalize, rescale, int8_mask, compute_dtype\)$/],
  ["mergekit: model without a path", "merge_method: average\nbase_model: base/\nmodels:\n  - parameters: {weight: 1}\nout: o/\n", /^models\[0\]\.model: is required \(line 4\)$/],
  ["mergekit: only the base listed", "merge_method: average\nbase_model: base/\nmodels: [{model: base/}]\nout: o/\n", /^models: lists only the base model/],
  ["mergekit: a Hugging Face Hub id", "merge_method: average\nbase_model: meta-llama/Llama-2-7b-hf\nmodels: [{model: task0/}]\nout: o/\n", /^base_model: 'meta-llama\/Llama-2-7b-hf' is not a local checkpoint .*huggingface-cli download meta-llama\/Llama-2-7b-hf --local-dir DIR/],
  ["mergekit: another tokenizer source", "merge_method: average\nbase_model: base/\nmodels: [{model: task0/}]\ntokenizer_source: union\nout: o/\n", /^tokenizer_source: expected "base" \(taskmerge copies the tokenizer and config files from the base\) \(line 4\)$/],
  ["stats list of the wrong length", "base: base/\nexperts: [task0/, task1/]\nstats: [a.stats.safetensors]\nmethod: average\nout: o/\n", /^stats: 1 statistics files for 2 experts/],
];

describe("malformed configs: exit 2, one line naming file, key and line, nothing written", () => {
  // Each case in a directory of its own (they run concurrently); the paths in them need not exist,
  // since the file is checked before any input is opened.
  test.concurrent.each(BAD)("%s", async (name, text, expected) => {
    const own = tmpDir("tm-badcfg-");
    const file = path.join(own, "merge.yaml");
    fs.writeFileSync(file, text);
    const r = await runCli(["merge", "--config", file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    const prefix = `taskmerge: ${file}: `;
    expect(lines[0].startsWith(prefix)).toBe(true);
    expect(lines[0].slice(prefix.length)).toMatch(expected);
    expect(listTree(own)).toEqual(["merge.yaml"]);
  });

  test("a config file that does not exist", async () => {
    const r = await runCli(["merge", "--config", path.join(dir, "nope.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`taskmerge: ${path.join(dir, "nope.yaml")}: cannot read the config file (no such file)`);
  });

  test("mergekit-yaml style positionals: taskmerge merge CONFIG OUT; not together with --config/--out", async () => {
    const file = config("positional.yaml", "base: base/\nexperts: [task0/, task1/]\nmethod: average\n");
    const out = path.join(dir, "positional-out");
    const ok = await runCli(["merge", file, out, "-q"]);
    expect([ok.code, ok.stderr]).toEqual([0, ""]);
    expect(manifest(out).method).toBe("average");
    const twice = await runCli(["merge", file, "--config", file]);
    expect(twice.code).toBe(2);
    expect(twice.stderr.trim()).toBe(`taskmerge: two configs given (${file} and --config ${file}); give one`);
    const outs = await runCli(["merge", file, out, "--out", out]);
    expect(outs.code).toBe(2);
    expect(outs.stderr).toMatch(/two outputs given/);
    const extra = await runCli(["merge", file, out, "surplus"]);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toMatch(/too many arguments/);
  });

  test("a flag that overrides a bad value in the file makes it valid", async () => {
    const file = config("override-bad.yaml", "base: base/\nexperts: [task0/]\nmethod: frankenmerge\nout: o-fixed/\n");
    const r = await runCli(["merge", "--config", file, "--method", "average", "-q"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(manifest(path.join(dir, "o-fixed")).method).toBe("average");
  });
});

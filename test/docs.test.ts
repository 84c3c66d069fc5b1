/**
 * docs/ agrees with the code, and README.md and docs/ link only files of the
 * repository: every method's parameter table and every command's option table
 * in docs/ is what lib/docs/generated.ts renders from the declarations
 * (re-run `npm run docs` after changing them), and every relative link
 * resolves to a file inside the repository.
 */
import * as fs from "fs";
import * as path from "path";
import { listMethods } from "../lib";
import { blockNames, generatedBlocks, updateDocs } from "../lib/docs/generated";

const ROOT = path.join(__dirname, "..");
const DOCS = path.join(ROOT, "docs");
const docs = () => Object.fromEntries(fs.readdirSync(DOCS).filter((f) => f.endsWith(".md")).map((f) => [f, fs.readFileSync(path.join(DOCS, f), "utf8")]));

test("docs/ holds every generated table, each exactly as the declarations render it (npm run docs)", () => {
  const current = docs();
  expect(updateDocs(current)).toEqual(current);
  const present = Object.values(current).flatMap(blockNames);
  expect(present.sort()).toEqual([...generatedBlocks().keys()].sort());
  // Every method has its own section in methods.md, with its table.
  for (const m of listMethods()) expect(blockNames(current["methods.md"])).toContain(`params:${m.name}`);
});

test("the generated tables follow the declarations (a changed default shows up)", () => {
  const ties = listMethods().find((m) => m.name === "ties")!;
  const density = ties.params.find((p) => p.name === "density")!;
  const before = updateDocs(docs())["methods.md"];
  const saved = density.default;
  (density as { default: number | string }).default = 0.35;
  try {
    const after = updateDocs(docs())["methods.md"];
    expect(after).not.toBe(before);
    expect(after).toContain("| `density` | `--density` | number in [0, 1] | `0.35` |");
  } finally {
    (density as { default: number | string }).default = saved;
  }
});

test("a method or command without a section gets one appended, with its description and table", () => {
  const current = docs();
  const lot = /\n## `lot`[\s\S]*?<!-- \/generated:params:lot -->\n/.exec(current["methods.md"])![0];
  const cli = /<!-- generated:cli:methods -->[\s\S]*?<!-- \/generated:cli:methods -->\n/.exec(current["cli.md"])![0];
  const updated = updateDocs({ ...current, "methods.md": current["methods.md"].replace(lot, "\n"), "cli.md": current["cli.md"].replace(cli, "") });
  const methods = updated["methods.md"];
  expect(methods.slice(methods.lastIndexOf("## `lot`"))).toBe(
    `## \`lot\`\n\n${listMethods().find((m) => m.name === "lot")!.description}.\n\nParameters:\n\n${/<!-- generated:params:lot -->[\s\S]*<!-- \/generated:params:lot -->\n/.exec(lot)![0]}`,
  );
  expect(updated["cli.md"].trimEnd().endsWith(cli.trimEnd())).toBe(true);
  expect(updated["cli.md"]).toContain("## taskmerge methods\n\nlist the merge methods");
});

/** Relative link targets of a markdown file: [text](target) and ![alt](target), without #anchors. */
function links(text: string): string[] {
  const noCode = text.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
  return [...noCode.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((m) => m[1])
    .filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith("#"))
    .map((t) => decodeURIComponent(t.split("#")[0]));
}

test("README.md and docs/ link only files that exist in the repository", () => {
  const files = [path.join(ROOT, "README.md"), ...fs.readdirSync(DOCS).filter((f) => f.endsWith(".md")).map((f) => path.join(DOCS, f))];
  const broken: string[] = [];
  let count = 0;
  for (const file of files)
    for (const target of links(fs.readFileSync(file, "utf8"))) {
      count++;
      const abs = path.resolve(path.dirname(file), target);
      const inside = !path.relative(ROOT, abs).startsWith("..") && !path.isAbsolute(path.relative(ROOT, abs));
      if (!inside || !fs.existsSync(abs)) broken.push(`${path.relative(ROOT, file)} → ${target}`);
    }
  expect(broken).toEqual([]);
  expect(count).toBeGreaterThan(5);
  // The README points newcomers at the docs.
  expect(links(fs.readFileSync(path.join(ROOT, "README.md"), "utf8"))).toEqual(expect.arrayContaining(["docs/methods.md", "docs/cli.md", "docs/api.md", "docs/formats.md"]));
});

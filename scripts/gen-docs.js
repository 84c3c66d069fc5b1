#!/usr/bin/env node
/**
 * Regenerates the generated parts of docs/*.md: each method's parameter table
 * (from its ParamSpec declaration) and each command's options, between their
 * `<!-- generated:... -->` markers, and adds a section for a new method or
 * command. Reads the built library: run `npm run docs` (builds first).
 * `--check` writes nothing and exits 1 when a file is out of date.
 */
const fs = require("fs");
const path = require("path");
const { updateDocs } = require("../dist/docs/generated");

const dir = path.join(__dirname, "..", "docs");
const docs = Object.fromEntries(
  fs.readdirSync(dir).filter((f) => f.endsWith(".md")).map((f) => [f, fs.readFileSync(path.join(dir, f), "utf8")]),
);
const check = process.argv.includes("--check");
let stale = 0;
for (const [file, text] of Object.entries(updateDocs(docs))) {
  if (text === docs[file]) continue;
  stale++;
  if (check) console.error(`docs/${file} is out of date: run npm run docs`);
  else {
    fs.writeFileSync(path.join(dir, file), text);
    console.log(`updated docs/${file}`);
  }
}
process.exitCode = check && stale ? 1 : 0;

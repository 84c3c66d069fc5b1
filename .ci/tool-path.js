#!/usr/bin/env node
// Makes a folder of symlinks to use as PATH in the install checks:
//   tool-path.js DIR --only node,npm,...   just those tools
//   tool-path.js DIR --without cmake,...   every tool on PATH but those
const fs = require("fs");
const path = require("path");

const [dir, mode, list] = process.argv.slice(2);
if (!dir || !["--only", "--without"].includes(mode) || !list) {
  console.error("usage: tool-path.js DIR --only|--without name,name,...");
  process.exit(2);
}
const names = new Set(list.split(","));
fs.mkdirSync(dir, { recursive: true });
const seen = new Set();
for (const d of (process.env.PATH || "").split(path.delimiter).filter(Boolean)) {
  let entries = [];
  try {
    entries = fs.readdirSync(d);
  } catch {
    continue;
  }
  for (const name of entries) {
    if (seen.has(name) || names.has(name) !== (mode === "--only")) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (!fs.statSync(p).isFile()) continue;
    } catch {
      continue;
    }
    seen.add(name);
    fs.symlinkSync(p, path.join(dir, name));
  }
}
if (mode === "--only") {
  const missing = [...names].filter((n) => !seen.has(n));
  if (missing.length) {
    console.error(`tool-path.js: not on PATH: ${missing.join(", ")}`);
    process.exit(1);
  }
}

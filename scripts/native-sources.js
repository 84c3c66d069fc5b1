// Lists the native sources for binding.gyp (node-gyp has no glob): every
// .cpp under native/ except the CUDA backend and native test programs.
const fs = require("fs");
const path = require("path");

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === "cuda" || e.name === "tests" ? [] : walk(p);
    return e.name.endsWith(".cpp") ? [p] : [];
  });
}

const root = path.join(__dirname, "..");
console.log(walk(path.join(root, "native")).map((p) => path.relative(root, p)).sort().join(" "));

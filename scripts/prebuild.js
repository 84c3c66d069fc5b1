#!/usr/bin/env node
// Builds the prebuilt addon shipped in the package for machines without a
// compiler: node-gyp with the built-in linear algebra (no shared library
// beyond the C and C++ runtimes), in prebuildify's layout that node-gyp-build
// loads: prebuilds/<platform>-<arch>/taskmerge.napi[.glibc].node. It builds in
// a scratch copy so the developer's build/ is left as it is. Run by prepack.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawnSync } = require("child_process");
const tools = require("./build-tools");

const root = tools.root;
const fail = (msg) => {
  throw new Error(msg);
};

// Shared libraries a Linux prebuild may need: the C and C++ runtimes only.
const ALLOWED_LIBS = /^(linux-vdso|libstdc\+\+|libm|libgcc_s|libc|libpthread|libdl|ld-linux[-\w]*)\.so/;

function libcTag() {
  if (process.platform !== "linux") return "";
  return process.report.getReport().header.glibcVersionRuntime ? ".glibc" : ".musl";
}

/** The shared libraries `file` links, from ldd; undefined where ldd is not available. */
function sharedLibs(file) {
  const r = spawnSync("ldd", [file], { encoding: "utf8" });
  if (r.status !== 0) return undefined;
  return r.stdout.split("\n").map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
}

async function main() {
  const gyp = tools.nodeGyp();
  if (gyp.missing) fail(gyp.missing);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "taskmerge-prebuild-"));
  try {
    for (const p of ["native", "binding.gyp", "package.json", "scripts/native-sources.js"]) {
      fs.cpSync(path.join(root, p), path.join(scratch, p), { recursive: true });
    }
    // binding.gyp finds node-addon-api's headers from its working directory.
    fs.symlinkSync(path.join(root, "node_modules"), path.join(scratch, "node_modules"), "dir");
    const r = await tools.runScript(gyp.script, ["rebuild", "--jobs", "max", ...tools.nodedirArgs()], scratch);
    if (!r.ok) fail(`node-gyp failed: ${r.reason}`);
    const built = path.join(scratch, "build", "Release", "taskmerge.node");

    const libs = sharedLibs(built);
    const extra = (libs || []).filter((l) => !ALLOWED_LIBS.test(path.basename(l)));
    if (extra.length) fail(`the prebuild links ${extra.join(", ")}; it may only need the C and C++ runtimes`);
    const info = require(built).info();
    if (info.blas !== "builtin" || info.build !== "node-gyp") fail(`unexpected addon: ${JSON.stringify(info)}`);

    const dir = path.join(root, "prebuilds", `${process.platform}-${process.arch}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const out = path.join(dir, `taskmerge.napi${libcTag()}.node`);
    fs.copyFileSync(built, out);
    console.error(`taskmerge prebuild: ${path.relative(root, out)}${libs ? ` (links ${libs.map((l) => path.basename(l)).join(", ")})` : ""}`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`taskmerge prebuild: ${e.message}`);
  process.exit(1);
});

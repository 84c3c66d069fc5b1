#!/usr/bin/env node
// Provides the native addon at install time, best first:
//   1. cmake-js, when cmake is on PATH (OpenBLAS/LAPACKE when CMake finds them);
//   2. node-gyp, when a C++ compiler and make are on PATH (built-in linear algebra);
//   3. the prebuilt addon shipped in prebuilds/ (node-gyp-build's layout).
// Every step that is skipped or fails says why. TASKMERGE_BUILD=cmake|gyp|prebuilt
// allows only that one step. The outcome is kept in build/install.json, which
// `taskmerge info` shows (npm hides the output of install scripts that succeed).
const fs = require("fs");
const path = require("path");
const tools = require("./build-tools");

const MODES = ["auto", "cmake", "gyp", "prebuilt"];
const mode = process.env.TASKMERGE_BUILD || "auto";
const log = (msg) => console.error(`taskmerge: ${msg}`);

async function buildWithCmake() {
  if (!tools.onPath("cmake")) return "cmake is not on PATH";
  const tool = tools.cmakeJs();
  if (tool.missing) return tool.missing;
  const r = await tools.runScript(tool.script, ["compile", "--log-level", "warn", "--parallel", tools.jobs()], tools.root);
  return r.ok ? undefined : r.reason;
}

async function buildWithGyp() {
  const missing = tools.compilerMissing();
  if (missing) return missing;
  const tool = tools.nodeGyp();
  if (tool.missing) return tool.missing;
  const r = await tools.runScript(tool.script, ["rebuild", "--jobs", "max", ...tools.nodedirArgs()], tools.root);
  return r.ok ? undefined : r.reason;
}

/** The prebuilt addon for this platform, checked by loading it. */
async function usePrebuilt() {
  process.env.PREBUILDS_ONLY = "1"; // node-gyp-build: look only in prebuilds/
  let file;
  try {
    file = require("node-gyp-build").path(tools.root);
  } catch (e) {
    return `no prebuilt addon for ${process.platform}-${process.arch} (${e.message.split("\n")[0]})`;
  }
  try {
    const info = require(file).info();
    log(`using the prebuilt addon ${path.relative(tools.root, file)} (${info.blas} linear algebra, ${info.threads} threads)`);
  } catch (e) {
    return `the prebuilt addon ${file} does not load here: ${e.message.split("\n")[0]}`;
  }
  return undefined;
}

const steps = [
  ["cmake", "cmake-js", buildWithCmake],
  ["gyp", "node-gyp", buildWithGyp],
  ["prebuilt", "prebuilt", usePrebuilt],
];

function record(result, failures) {
  const dir = path.join(tools.root, "build");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "install.json"), JSON.stringify({ result, failures }, null, 2) + "\n");
}

async function main() {
  if (!MODES.includes(mode)) {
    log(`TASKMERGE_BUILD must be one of ${MODES.join(", ")}, not "${mode}"`);
    return 1;
  }
  const failures = [];
  for (const [key, name, step] of steps) {
    if (mode !== "auto" && mode !== key) continue;
    const why = await step();
    if (why === undefined) {
      record(name, failures);
      return 0;
    }
    failures.push(`${name}: ${why}`);
    log(`${name} not used: ${why}`);
  }
  record(null, failures);
  log(
    `no native addon could be built or used:\n  ${failures.join("\n  ")}\n` +
      "Install cmake (and OpenBLAS + LAPACKE for fast linear algebra) or a C++ compiler and make, then run 'npm rebuild taskmerge'.",
  );
  return 1;
}

main().then((code) => process.exit(code));

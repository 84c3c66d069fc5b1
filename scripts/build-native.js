#!/usr/bin/env node
// Builds the addon at install time: cmake-js (with OpenBLAS when CMake finds
// it) when cmake is on PATH, else node-gyp (portable, built-in linear algebra).
// TASKMERGE_BUILD=gyp forces node-gyp.
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const root = path.join(__dirname, "..");
const run = (cmd, args) =>
  spawnSync(cmd, args, { cwd: root, stdio: "inherit", shell: process.platform === "win32" }).status === 0;
const hasCmake = spawnSync("cmake", ["--version"], { stdio: "ignore" }).status === 0;
const bin = (name) => path.join(root, "node_modules", ".bin", name);

let ok = false;
if (hasCmake && process.env.TASKMERGE_BUILD !== "gyp") {
  ok = run(bin("cmake-js"), ["compile", "--log-level", "warn"]);
  if (!ok) console.error("taskmerge: cmake-js build failed, trying node-gyp");
}
if (!ok) {
  // Use the local Node headers when they are installed (no download needed).
  const nodedir = process.env.npm_config_nodedir || (fs.existsSync("/usr/include/node/node_api.h") ? "/usr" : "");
  ok = run(bin("node-gyp"), ["rebuild", ...(nodedir ? [`--nodedir=${nodedir}`] : [])]);
}
process.exit(ok ? 0 : 1);

// The native build tools, found and run the same way by the install script
// (build-native.js) and the prebuild script (prebuild.js). cmake-js and
// node-gyp are resolved as packages, never through node_modules/.bin: npm
// hoists a dependency's dependencies to wherever it likes, so the package's
// own .bin folder usually does not exist once installed.
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const root = path.join(__dirname, "..");

/** The first executable called `name` on PATH, or undefined. */
function onPath(name) {
  if (path.isAbsolute(name)) return isExecutable(name) ? name : undefined;
  const exts = process.platform === "win32" ? (process.env.PATHEXT || ".EXE;.CMD").split(";") : [""];
  for (const dir of (process.env.PATH || "").split(path.delimiter).filter(Boolean)) {
    for (const ext of exts) {
      const p = path.join(dir, name + ext);
      if (isExecutable(p)) return p;
    }
  }
  return undefined;
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** A package's script file resolved from this package, or undefined. */
function resolveFrom(request) {
  try {
    return require.resolve(request, { paths: [root] });
  } catch {
    return undefined;
  }
}

/** cmake-js's command-line script: { script } or { missing: why }. */
function cmakeJs() {
  const script = resolveFrom("cmake-js/bin/cmake-js");
  return script ? { script } : { missing: "the cmake-js package is not installed" };
}

/**
 * node-gyp's command-line script: this package's dependency when present,
 * else the copy npm bundles (npm names it in npm_config_node_gyp for install
 * scripts).
 */
function nodeGyp() {
  const script = resolveFrom("node-gyp/bin/node-gyp.js");
  if (script) return { script };
  const bundled = process.env.npm_config_node_gyp;
  if (bundled && fs.existsSync(bundled)) return { script: bundled };
  return { missing: "neither the node-gyp package nor npm's bundled node-gyp (npm_config_node_gyp) was found" };
}

/**
 * node-gyp's --nodedir when this Node's headers are installed beside it
 * (e.g. /usr/bin/node with /usr/include/node), so nothing is downloaded.
 */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [`--nodedir=${process.env.npm_config_nodedir}`];
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  return fs.existsSync(path.join(prefix, "include", "node", "node_api.h")) ? [`--nodedir=${prefix}`] : [];
}

/** A C++ compiler and make for node-gyp on PATH, or why not (Windows: node-gyp finds MSVC itself). */
function compilerMissing() {
  if (process.platform === "win32") return undefined;
  const cxx = [process.env.CXX, "c++", "g++", "clang++"].filter(Boolean);
  if (!cxx.some((c) => onPath(c.split(" ")[0]))) return `no C++ compiler on PATH (looked for ${cxx.join(", ")})`;
  if (!onPath("make")) return "no make on PATH";
  return undefined;
}

function jobs() {
  return String(os.availableParallelism ? os.availableParallelism() : os.cpus().length);
}

/**
 * Runs a tool's script with this Node in `cwd`, its output shown as it
 * comes. Resolves { ok: true } or { ok: false, reason } where the reason is
 * the exit status and the output's last lines.
 */
function runScript(script, args, cwd) {
  return new Promise((resolve) => {
    const tail = [];
    const keep = (chunk, stream) => {
      stream.write(chunk);
      tail.push(...chunk.toString().split("\n").filter((l) => l.trim()));
      tail.splice(0, Math.max(0, tail.length - 12));
    };
    const child = spawn(process.execPath, [script, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (c) => keep(c, process.stdout));
    child.stderr.on("data", (c) => keep(c, process.stderr));
    child.on("error", (e) => resolve({ ok: false, reason: `could not start ${script}: ${e.message}` }));
    child.on("close", (code, signal) => {
      if (code === 0) return resolve({ ok: true });
      const status = signal ? `killed by ${signal}` : `exit status ${code}`;
      resolve({ ok: false, reason: `${status}${tail.length ? `; last output:\n    ${tail.join("\n    ")}` : ""}` });
    });
  });
}

module.exports = { root, onPath, cmakeJs, nodeGyp, nodedirArgs, compilerMissing, jobs, runScript };

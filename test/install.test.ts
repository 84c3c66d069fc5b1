/**
 * The package as npm installs it: the files `npm pack` ships, copied into a
 * project's node_modules/taskmerge with the dependencies hoisted beside it
 * (so the package has no node_modules/.bin of its own), and PATH holding only
 * the tools a test names. Nothing is compiled here: .ci/install-checks does
 * the real installs from the tarball.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ROOT, tmpDir } from "./helpers/fixtures";

const pkgJson = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));

/** The files `npm pack` would put in the tarball (no scripts run). */
function packedFiles(): string[] {
  const r = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`npm pack --dry-run failed: ${r.stderr}`);
  return (JSON.parse(r.stdout)[0].files as { path: string }[]).map((f) => f.path).sort();
}

const files = packedFiles();

/** A project with taskmerge installed as npm lays it out; returns the project and the package folder. */
function installedLayout(extraDeps: string[] = []): { project: string; pkg: string } {
  const project = tmpDir("tm-install-");
  const modules = path.join(project, "node_modules");
  const pkg = path.join(modules, "taskmerge");
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(pkg, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(pkg, f));
  }
  for (const dep of [...Object.keys(pkgJson.dependencies), ...extraDeps]) {
    fs.mkdirSync(path.dirname(path.join(modules, dep)), { recursive: true });
    fs.symlinkSync(path.join(ROOT, "node_modules", dep), path.join(modules, dep), "dir");
  }
  return { project, pkg };
}

/** A PATH folder with node and the given shell scripts as tools. */
function toolPath(tools: Record<string, string> = {}): string {
  const dir = tmpDir("tm-path-");
  fs.symlinkSync(process.execPath, path.join(dir, "node"));
  for (const [name, body] of Object.entries(tools)) fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return dir;
}

function install(pkg: string, PATH: string, env: NodeJS.ProcessEnv = {}) {
  const clean: NodeJS.ProcessEnv = { ...process.env, PATH, ...env };
  for (const k of ["CC", "CXX", "TASKMERGE_BUILD", "TASKMERGE_ADDON", "npm_config_node_gyp"]) if (!(k in env)) delete clean[k];
  return spawnSync(process.execPath, [path.join(pkg, "scripts", "build-native.js")], { cwd: pkg, env: clean, encoding: "utf8" });
}

function info(pkg: string): any {
  const env = { ...process.env };
  delete env.TASKMERGE_ADDON;
  const r = spawnSync(process.execPath, [path.join(pkg, "dist", "cli", "main.js"), "info", "--json"], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`taskmerge info failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Some loadable addon to stand in for the shipped prebuild (what is picked matters here, not how it was built). */
const anyAddon = process.env.TASKMERGE_GYP_ADDON ?? path.join(ROOT, "build", "Release", "taskmerge.node");
const prebuildName = path.join("prebuilds", `${process.platform}-${process.arch}`, "taskmerge.napi.glibc.node");
function addPrebuild(pkg: string): void {
  fs.mkdirSync(path.dirname(path.join(pkg, prebuildName)), { recursive: true });
  fs.copyFileSync(anyAddon, path.join(pkg, prebuildName));
}

describe("the install script in an installed package", () => {
  test("runs cmake-js from where npm hoisted it, and says why its build failed", () => {
    const { pkg } = installedLayout();
    expect(fs.existsSync(path.join(pkg, "node_modules"))).toBe(false);
    const PATH = toolPath({ cmake: 'if [ "$1" = --version ]; then echo "cmake version 3.25.1"; exit 0; fi\necho "fake cmake refuses" >&2; exit 3' });
    const r = install(pkg, PATH, { TASKMERGE_BUILD: "cmake" });
    expect(r.status).toBe(1);
    // cmake-js ran (it reports that no compiler is on this PATH), and the failure is named.
    expect(r.stderr).toMatch(/taskmerge: cmake-js not used: exit status 1; last output:\n[\s\S]*[Cc]ompiler/);
    expect(r.stderr).toMatch(/no native addon could be built or used/);
  });

  test("without cmake, compiler or prebuild it fails naming every reason", () => {
    const { pkg } = installedLayout();
    fs.rmSync(path.join(pkg, "prebuilds"), { recursive: true, force: true });
    const r = install(pkg, toolPath());
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("cmake-js not used: cmake is not on PATH");
    expect(r.stderr).toContain("node-gyp not used: no C++ compiler on PATH");
    expect(r.stderr).toMatch(/prebuilt not used: no prebuilt addon for/);
    expect(r.stderr).toContain("npm rebuild taskmerge");
  });

  test("without a compiler it uses the shipped prebuild, and taskmerge info says so and why", () => {
    const { pkg } = installedLayout();
    addPrebuild(pkg);
    const r = install(pkg, toolPath());
    expect(r.stderr).toContain("using the prebuilt addon");
    expect(r.status).toBe(0);
    const i = info(pkg);
    expect(i.addon).toMatchObject({ origin: "prebuilt", path: path.join(fs.realpathSync(pkg), prebuildName) });
    expect(i.installNotes).toEqual(["cmake-js: cmake is not on PATH", expect.stringMatching(/^node-gyp: no C\+\+ compiler on PATH/)]);
  });

  test("node-gyp falls back to npm's bundled copy", () => {
    const { pkg } = installedLayout();
    const fakeGyp = path.join(tmpDir("tm-gyp-"), "node-gyp.js");
    fs.writeFileSync(fakeGyp, 'console.error("bundled node-gyp ran with " + process.argv.slice(2).join(" ")); process.exit(7);\n');
    // node-gyp is a dependency; hide it the way a package manager without it would.
    fs.unlinkSync(path.join(pkg, "..", "node-gyp"));
    const r = install(pkg, toolPath({ "c++": "exit 1", make: "exit 1" }), { TASKMERGE_BUILD: "gyp", npm_config_node_gyp: fakeGyp });
    expect(r.stderr).toContain("bundled node-gyp ran with rebuild --jobs max");
    expect(r.stderr).toContain("node-gyp not used: exit status 7");
    expect(r.status).toBe(1);
  });

  test("a local build is loaded before the prebuild", () => {
    const { pkg } = installedLayout();
    addPrebuild(pkg);
    fs.mkdirSync(path.join(pkg, "build", "Release"), { recursive: true });
    fs.copyFileSync(path.join(ROOT, "build", "Release", "taskmerge.node"), path.join(pkg, "build", "Release", "taskmerge.node"));
    expect(info(pkg).addon).toMatchObject({ origin: "local build", path: path.join(fs.realpathSync(pkg), "build", "Release", "taskmerge.node") });
  });
});

describe("the tarball", () => {
  test("has the license, no Python tests or fixtures, and source maps whose sources it ships", () => {
    expect(files).toContain("LICENSE");
    expect(fs.readFileSync(path.join(ROOT, "LICENSE"), "utf8")).toMatch(/^MIT License/);
    expect(pkgJson.license).toBe("MIT");
    expect(files.filter((f) => /^test\/|^bench\/|(^|\/)test_[^/]*\.py$|\.safetensors$/.test(f))).toEqual([]);
    const maps = files.filter((f) => f.endsWith(".map"));
    const missing = maps.flatMap((m) =>
      (JSON.parse(fs.readFileSync(path.join(ROOT, m), "utf8")).sources as string[])
        .map((s) => path.posix.join(path.posix.dirname(m), s))
        .filter((s) => !files.includes(s)),
    );
    expect(missing).toEqual([]);
    expect(files).toEqual(expect.arrayContaining(["scripts/build-native.js", "scripts/build-tools.js", "binding.gyp", "CMakeLists.txt"]));
  });

  test("its .d.ts files type-check in a consumer project that adds only typescript", () => {
    const { project } = installedLayout(["typescript"]);
    const tsc = path.join(project, "node_modules", "typescript", "bin", "tsc");
    fs.writeFileSync(
      path.join(project, "index.ts"),
      'import { merge, inspect, listMethods, VERSION } from "taskmerge";\n' +
        'import type { MergeOptions, MergeReport } from "taskmerge";\n' +
        "export const v: string = VERSION;\nexport const fns = [merge, inspect, listMethods];\nexport type T = [MergeOptions, MergeReport];\n",
    );
    fs.writeFileSync(path.join(project, "bad.ts"), 'import { VERSION } from "taskmerge";\nexport const n: number = VERSION;\n');
    // One run over both files: the package's .d.ts must add no error, and bad.ts shows tsc does check.
    const compilerOptions = { strict: true, noEmit: true, module: "commonjs", target: "ES2022", lib: ["ES2022"] };
    fs.writeFileSync(path.join(project, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["index.ts", "bad.ts"] }));
    const r = spawnSync(process.execPath, [tsc, "-p", "."], { cwd: project, encoding: "utf8" });
    expect(r.stdout.trim().split("\n")).toEqual([expect.stringMatching(/^bad\.ts\(2,14\): error TS2322/)]);
  });
});

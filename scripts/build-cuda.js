#!/usr/bin/env node
// Builds the CUDA backend, build/Release/taskmerge_cuda.so (native/cuda/),
// beside the main addon, which loads it at run time when present. Separate
// from the install (`npm run build:cuda`): a CPU-only user never pays for it.
//
// Needs nvcc (CUDA 13: CUDACXX, PATH or /usr/local/cuda/bin), cmake, and
// NVIDIA's wheels of cuBLAS, cuSOLVER and what cuSOLVER links (cuSPARSE,
// nvJitLink), looked for in TASKMERGE_CUDA_WHEELS (folders, ':'-separated),
// else /opt/pypi-more/files and /opt/pypi/files. A wheel is a zip of
// nvidia/cu13/{include,lib}: it is unpacked into build/cuda-deps/, and the
// unversioned .so links the linker needs are made there.
//
// When something is missing it says what and exits 0 (nothing is built), so
// it never fails an install; TASKMERGE_CUDA=required makes that exit 1 (CI).
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");
const tools = require("./build-tools");

const root = tools.root;
const required = process.env.TASKMERGE_CUDA === "required";
const depsDir = path.join(root, "build", "cuda-deps");
const buildDir = path.join(root, "build", "cuda");
const outDir = path.join(root, "build", "Release");
const WHEELS = ["nvidia_cublas", "nvidia_cusolver", "nvidia_cusparse", "nvidia_nvjitlink"];

const log = (m) => console.log(`taskmerge: ${m}`);

function skip(why) {
  log(`CUDA backend not built: ${why}`);
  process.exit(required ? 1 : 0);
}

function findNvcc() {
  const env = process.env.CUDACXX;
  if (env) return tools.onPath(env) ? env : undefined;
  return tools.onPath("nvcc") || tools.onPath("/usr/local/cuda/bin/nvcc");
}

/** The newest wheel file per name in the wheel folders: { name: file } and what is missing. */
function findWheels() {
  const dirs = (process.env.TASKMERGE_CUDA_WHEELS || "/opt/pypi-more/files:/opt/pypi/files").split(path.delimiter).filter(Boolean);
  const found = {};
  for (const dir of dirs) {
    let files;
    try {
      files = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of WHEELS) {
      if (found[name]) continue;
      const hits = files.filter((f) => f.startsWith(`${name}-`) && f.endsWith(".whl")).sort();
      if (hits.length) found[name] = path.join(dir, hits[hits.length - 1]);
    }
  }
  return { found, missing: WHEELS.filter((w) => !found[w]), dirs };
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root });
  if (r.status !== 0) skip(`${what} failed (${cmd} ${args.join(" ")}: ${r.error ? r.error.message : `exit ${r.status}`})`);
}

/** Unpacks the wheels' nvidia/ folders into build/cuda-deps (skipped when the same wheels are there). */
function unpack(wheels) {
  const stamp = path.join(depsDir, "wheels.json");
  const want = JSON.stringify(Object.values(wheels).sort());
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === want) return;
  fs.rmSync(depsDir, { recursive: true, force: true });
  fs.mkdirSync(depsDir, { recursive: true });
  const unzip = tools.onPath("unzip");
  for (const whl of Object.values(wheels)) {
    if (unzip) run(unzip, ["-q", "-o", whl, "nvidia/*", "-d", depsDir], `unpacking ${path.basename(whl)}`);
    else run("python3", ["-c", "import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])", whl, depsDir], `unpacking ${path.basename(whl)}`);
  }
  fs.writeFileSync(stamp, want);
}

/** libX.so → libX.so.N for every versioned library: wheels ship only the versioned names. */
function linkUnversioned(lib) {
  for (const f of fs.readdirSync(lib)) {
    const m = /^(lib.+\.so)\.\d+$/.exec(f);
    if (!m) continue;
    const link = path.join(lib, m[1]);
    if (!fs.existsSync(link)) fs.symlinkSync(f, link);
  }
}

function main() {
  const nvcc = findNvcc();
  if (!nvcc) skip("no nvcc (set CUDACXX or put CUDA's bin/ on PATH)");
  const cmake = tools.onPath("cmake");
  if (!cmake) skip("no cmake on PATH");
  const { found, missing, dirs } = findWheels();
  if (missing.length) skip(`no wheel of ${missing.join(", ")} in ${dirs.join(", ")} (set TASKMERGE_CUDA_WHEELS)`);
  unpack(found);
  const cu = path.join(depsDir, "nvidia", "cu13");
  const lib = path.join(cu, "lib");
  if (!fs.existsSync(path.join(lib, "libcublas.so.13"))) skip(`the cuBLAS wheel ${path.basename(found.nvidia_cublas)} is not the CUDA 13 one (no nvidia/cu13/lib/libcublas.so.13)`);
  linkUnversioned(lib);
  fs.mkdirSync(outDir, { recursive: true });
  const archs = process.env.TASKMERGE_CUDA_ARCHS;
  run(
    cmake,
    [
      "-S", path.join(root, "native", "cuda"),
      "-B", buildDir,
      `-DCMAKE_CUDA_COMPILER=${tools.onPath(nvcc) || nvcc}`,
      `-DTM_CUDA_DEPS=${cu}`,
      `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${outDir}`,
      `-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=${buildDir}`,
      archs ? `-DTM_CUDA_ARCHS=${archs}` : "-UTM_CUDA_ARCHS", // unset: CMakeLists.txt's default, not a cached earlier choice
      "-DCMAKE_BUILD_TYPE=Release",
    ],
    "configuring native/cuda",
  );
  run(cmake, ["--build", buildDir, "--parallel", String(tools.jobs())], "building native/cuda");
  log(`CUDA backend built: ${path.relative(root, path.join(outDir, "taskmerge_cuda.so"))} (check program: ${path.relative(root, path.join(buildDir, "taskmerge_cuda_check"))})`);
}

main();

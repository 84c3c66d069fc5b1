#!/usr/bin/env bash
# The device check of the CUDA backend: build it, compare every entry with the
# CPU, benchmark. Meant for one GPU machine (an H200 with 16 cores), inside 8
# minutes, writing everything into one folder.
#
#   bash bench/gpu_check.sh [--build-only] [OUTDIR]     (OUTDIR: default $OUT, else bench/out/gpu_check)
#
#  1. build: scripts/build-cuda.js (nvcc + the cuBLAS/cuSOLVER wheels), for
#     TASKMERGE_CUDA_ARCHS (default 90-real: the H200 only, to keep it short);
#  2. info: the library loaded with dlopen + tm_backend_init (info.json);
#  3. host: the kernels' per-element maths against the CPU code (host.json);
#  4. compare (GPU): every implemented entry against the CPU ops: elementwise
#     outputs, TALL masks, DARE and histograms bit-identical, float64 linear
#     algebra within docs/cuda.md's tolerances (compare.txt);
#  5. bench (GPU): cuBLAS DGEMM/SGEMM/TF32 rates, LOT per layer on
#     bench/lot_bench.js's ViT-B/32 (8 experts) and Llama-7B (2 experts)
#     shapes as TFLOP/s and fraction of DGEMM (and the ViT-B/32 total, target
#     < 1 s), the batched solve entry on the same shapes in float64, float32
#     and tf32 (TFLOP/s, and the low-precision results' difference to
#     float64), streaming methods as GB/s against the host→device read floor
#     (bench.json, bench.txt; the headline lines are copied into summary.txt);
#  6. stream (GPU, needs node_modules, dist/ and the main addon): the streamed
#     merges task_arithmetic, ties (tensor scope), dare_linear, dare_ties and
#     consensus_ta with --device cuda through the CLI (host pool, pinned chunk
#     buffers, overlapped sub-blocks) on synthetic bf16 inputs (base + 4
#     experts of ~1 GB), wall time against the same files read once cold:
#     bench/stream_bench.js, into stream_bench.md; compress --device cuda too;
#  7. the jest test test/cuda_backend.test.ts, when node_modules is present.
# --build-only stops after step 3 (runs without a GPU). Each step has a time
# limit, and all of them together GPU_CHECK_SECONDS (default 470). summary.txt
# lists each step's outcome; the exit status is non-zero when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."

build_only=0
out=""
for a in "$@"; do
  case "$a" in
    --build-only) build_only=1 ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check: unknown option $a (see --help)" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "gpu_check: one output folder only" >&2; exit 2; }; out="$a" ;;
  esac
done
out="${out:-${OUT:-bench/out/gpu_check}}"
mkdir -p "$out" || { echo "gpu_check: cannot create $out" >&2; exit 2; }
out="$(cd "$out" && pwd)"
summary="$out/summary.txt"
: >"$summary"
failed=0
lib=build/Release/taskmerge_cuda.so
check=build/cuda/taskmerge_cuda_check

# The whole check stops at GPU_CHECK_SECONDS (default 470: inside 8 minutes).
budget="${GPU_CHECK_SECONDS:-470}"

# step NAME SECONDS FILE COMMAND...: runs COMMAND with a time limit (its own,
# or what is left of the budget), its output to FILE.
step() {
  local name="$1" limit="$2" file="$3"
  shift 3
  local left=$((budget - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    echo "$name: FAILED (not started: the ${budget}s budget is spent)" | tee -a "$summary"
    failed=1
    return 1
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$file" 2>"$out/$name.err"
  local rc=$?
  local line="$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc$([ $rc -eq 124 ] && echo ", over ${limit}s"))") in $((SECONDS - t0)) s -> $file"
  echo "$line" | tee -a "$summary"
  [ $rc -eq 0 ] || { failed=1; tail -n 5 "$out/$name.err" | sed 's/^/  /'; }
  return $rc
}

{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; } >"$out/machine.txt" 2>&1
command -v node >/dev/null || { echo "build: FAILED (no node on PATH for scripts/build-cuda.js)" | tee -a "$summary"; exit 1; }
TASKMERGE_CUDA=required TASKMERGE_CUDA_ARCHS="${TASKMERGE_CUDA_ARCHS:-90-real}" step build 240 build.log node scripts/build-cuda.js || exit 1
step info 30 info.json "$check" info "$lib" || exit 1
step host 60 host.json "$check" host
if [ $build_only -eq 1 ]; then
  echo "compare, bench: not run (--build-only)" | tee -a "$summary"
  exit $failed
fi
if ! grep -q '"available":1' "$out/info.json"; then
  echo "compare, bench: FAILED ($(sed 's/.*"description":"\([^"]*\)".*/\1/' "$out/info.json"))" | tee -a "$summary"
  exit 1
fi
step compare 120 compare.txt "$check" compare "$lib"
step bench 150 bench.txt "$check" bench "$lib" "$out" &&
  grep -E '^(cuBLAS|LOT ViT|batched solve)' "$out/bench.txt" | sed 's/^/  /' | tee -a "$summary"
if [ -d node_modules/commander ] && [ -f build/Release/taskmerge.node ] && [ -f dist/cli/main.js ]; then
  data="${GPU_CHECK_DATA:-$out/stream_data}"
  stream_runs="merge task_arithmetic --device cuda;merge ties --density 0.2 --scope tensor --device cuda;merge dare_linear --device cuda;merge dare_ties --device cuda;merge consensus_ta --device cuda;compress --device cuda"
  step stream 150 stream.txt bash -c '
    set -e
    trap "rm -rf \"$1\"" EXIT
    node bench/synthetic.js --dir "$1" --experts 4 --gb 1 >&2
    node bench/stream_bench.js --dir "$1" --experts 4 --repeats 1 --runs "$2" --report "$3/stream_bench.md"' stream "$data" "$stream_runs" "$out"
else
  echo "stream: not run (needs node_modules, dist/ and build/Release/taskmerge.node here)" | tee -a "$summary"
fi
if [ -x node_modules/.bin/jest ] && [ -f build/Release/taskmerge.node ]; then
  step jest 90 jest.txt node_modules/.bin/jest test/cuda_backend.test.ts
else
  echo "jest: not run (no node_modules or no main addon build here; compare above covers the same entries)" | tee -a "$summary"
fi
exit $failed

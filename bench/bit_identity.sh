#!/bin/bash
# Before/after bit identity of every output taskmerge writes.
#
# Usage: bench/bit_identity.sh OLD_ADDON OLD_DIST NEW_ADDON NEW_DIST [WORKDIR]
#   e.g. bench/bit_identity.sh /work/ref/a962a27/taskmerge.node /work/ref/a962a27/dist \
#                              build/Release/taskmerge.node dist
# Runs the same commands with both builds, at the default chunk size and at
# 1 M-entry chunks (TASKMERGE_CHUNK_ELEMS), and compares every file they write
# byte for byte. Prints "DIFF <file>" for each differing file, exits 1 on any
# difference (or a missing/extra file, or a command that fails), 0 when all
# are identical. WORKDIR (default: a new temporary folder) keeps the inputs
# between runs; old/ and new/ in it hold the outputs.
#
# Covered (bench/bit_identity_gen.js makes the inputs):
# - merge with every method of the registry: average, task_arithmetic, ties
#   (global and tensor scope, mean and sum), dare_linear / dare_ties (seeds),
#   consensus_ta / consensus_ties (both scopes), regmean and lot (statistics
#   files, both solvers, rcond, ridge, the mean fallback for a missing Gram,
#   equal-shape weights solved in one batch),
#   progressive regmean / lot (block and module granularity, with
#   bench/bit_identity_collect.js as --stats-command), every mergekit:* method
#   from mergekit YAML files (gradients, filter lists, topk_ties, out_dtype)
#   and from flags; breadcrumbs / breadcrumbs_ties (taskmerge's and mergekit's)
#   when both builds have them;
# - output dtypes f32, f16, bf16 and the base's; one-file and directory
#   outputs, sharded (--max-shard-size), with taskmerge.json and README.md;
# - compress (sum, per-task λ, TIES τ in both scopes, f32/f16 τ, a λ grid
#   through the API) and extract (file and sharded directory outputs);
# - drift's JSON report.
# Each build runs from a staged package (WORKDIR/pkg-*: its dist, this
# checkout's package.json and node_modules) and writes to the same path
# (WORKDIR/out), so paths recorded in outputs are equal; the outputs are then
# moved to WORKDIR/old or WORKDIR/new. Only the wall times a progressive
# merge records ("collectSeconds", "mergeSeconds", "writeSeconds" lines of
# taskmerge.json and README.md) are left out of the comparison.
set -e
[ $# -ge 4 ] || { echo "usage: $0 OLD_ADDON OLD_DIST NEW_ADDON NEW_DIST [WORKDIR]" >&2; exit 2; }
W=${5:-$(mktemp -d)}; mkdir -p $W; W=$(cd $W && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
S=$W/set L=$W/set/layered O=$W/out
[ -f $S/mk_breadcrumbs_ties.yaml ] || node "$HERE/bit_identity_gen.js" $S

stage() {  # DIST NAME: a package folder with DIST as dist/, so that dist/ finds package.json and node_modules
  local P=$W/pkg-$2
  rm -rf $P; mkdir -p $P; cp -r "$(readlink -f $1)" $P/dist; cp $ROOT/package.json $P/
  ln -s "$(readlink -f $ROOT/node_modules)" $P/node_modules
}

run() {  # ADDON NAME
  export TASKMERGE_ADDON=$(readlink -f $1); local D=$W/pkg-$2/dist
  rm -rf $O; mkdir -p $O
  local tm="node $D/cli/main.js"
  local E="--expert $S/expert_0.safetensors --expert $S/expert_1.safetensors --expert $S/expert_2.safetensors --expert $S/expert_3.safetensors --expert $S/expert_4.safetensors"
  local LE="--expert $L/expert_0.safetensors --stats $L/expert_0.stats.safetensors --expert $L/expert_1.safetensors --stats $L/expert_1.stats.safetensors --expert $L/expert_2.safetensors --stats $L/expert_2.stats.safetensors"
  local LP="--expert $L/expert_0.safetensors --expert $L/expert_1.safetensors --expert $L/expert_2.safetensors --progressive --stats-command"
  # Statistics files written here record no source checkpoint: drop that warning.
  nowarn() { "$@" 2> >(grep -v 'do not record which checkpoint' >&2); }
  local COLLECT="node $HERE/bit_identity_collect.js {model} {keys} {expert} {out}"
  for ch in 0 1048632; do
    if [ $ch != 0 ]; then export TASKMERGE_CHUNK_ELEMS=$ch; else unset TASKMERGE_CHUNK_ELEMS; fi
    local m="$tm merge --base $S/base.safetensors $E --quiet" c="$tm compress --base $S/base.safetensors $E --quiet"
    # Every method of the registry, scopes, dtypes, file and directory outputs.
    $m --method average --out $O/m-avg-$ch.safetensors
    $m --method task_arithmetic --lambda 0.4 --dtype bf16 --out $O/m-ta-$ch.safetensors
    $m --method ties --scope global --density 0.3 --out $O/m-tiesg-$ch.safetensors
    $m --method ties --scope tensor --merge-func sum --dtype f16 --out $O/m-tiest-$ch.safetensors
    $m --method ties --lambda 0.8 --dtype f32 --max-shard-size 10MB --out $O/m-ties-shards-$ch
    $m --method dare_linear --density 0.4 --seed 11 --out $O/m-darel-$ch.safetensors
    $m --method dare_ties --density 0.6 --seed 3 --dtype bf16 --out $O/m-daret-$ch.safetensors
    $m --method consensus_ta --k 2 --tall-lambda 0.4 --lambda 0.3 --out $O/m-cta-$ch.safetensors
    $m --method consensus_ta --k 0 --dtype f32 --out $O/m-cta0-$ch.safetensors
    $m --method consensus_ties --k 3 --tall-lambda 0.2 --scope global --out $O/m-ctiesg-$ch.safetensors
    $m --method consensus_ties --k 1 --scope tensor --lambda 0.7 --out $O/m-ctiest-$ch.safetensors
    # mergekit's definitions: YAML files in mergekit's form, and one from flags.
    for y in linear task_arithmetic ties ties_exact dare_linear dare_ties; do
      $tm merge $S/mk_$y.yaml $O/mk-$y-$ch.safetensors --quiet
    done
    $m --method mergekit:ties --lambda 0.6 --out $O/mk-flags-$ch
    if [ $BREADCRUMBS == 1 ]; then
      $m --method breadcrumbs --density 0.5 --gamma 0.05 --dtype bf16 --out $O/m-bc-$ch.safetensors
      $m --method breadcrumbs_ties --out $O/m-bcties-$ch.safetensors
      for y in breadcrumbs breadcrumbs_ties; do $tm merge $S/mk_$y.yaml $O/mk-$y-$ch.safetensors --quiet; done
    fi
    # Statistics methods on the layered model (the last expert lacks one Gram: mean fallback).
    local l="nowarn $tm merge --base $L/base.safetensors $LE --quiet"
    $l --method lot --out $O/l-lot-$ch.safetensors
    $l --method lot --solver eigh --rcond 1e-6 --lambda 0.8 --out $O/l-lot-eigh-$ch
    $l --method lot --solver cholesky --ridge 1e-4 --dtype f32 --out $O/l-lot-chol-$ch.safetensors
    $l --method regmean --out $O/l-regmean-$ch.safetensors
    $l --method regmean --alpha 0.5 --rcond 1e-5 --dtype bf16 --out $O/l-regmean-a-$ch.safetensors
    nowarn $tm merge --base $L/base.safetensors $LP "$COLLECT" --method lot --quiet --out $O/l-plot-$ch.safetensors
    nowarn $tm merge --base $L/base.safetensors $LP "$COLLECT" --method regmean --granularity module --module-order $L/module_order.txt --quiet --out $O/l-pregmean-$ch
    nowarn $tm drift --base $L/base.safetensors $LE --merged $O/l-lot-$ch.safetensors -q --json > $O/drift-lot-$ch.json
    nowarn $tm drift --base $L/base.safetensors $LE --merged $O/l-regmean-a-$ch.safetensors -q --json > $O/drift-regmean-$ch.json
    # compress and extract.
    $c --out $O/c-sum-$ch
    $c --tall-lambda 0.2,0.3,0.5,0.6,0.45 --dtype f32 --out $O/c-sum32-$ch
    $c --tau ties --scope global --density 0.3 --out $O/c-tiesg-$ch
    $c --tau ties --scope tensor --dtype f16 --out $O/c-tiest-$ch
    $tm extract --bundle $O/c-sum-$ch --task expert_1 --base $S/base.safetensors --quiet --out $O/x-sum-$ch.safetensors
    $tm extract --bundle $O/c-sum32-$ch --task expert_3 --base $S/base.safetensors --dtype f32 --max-shard-size 8MB --quiet --out $O/x-sum32-$ch
    $tm extract --bundle $O/c-tiesg-$ch --task expert_0 --base $S/base.safetensors --dtype bf16 --quiet --out $O/x-tiesg-$ch.safetensors
  done
  unset TASKMERGE_CHUNK_ELEMS
  # λ grid: the score is a hash of the candidate file, so candidates must match too.
  node -e '
    // runCompress moved from tall/ to job/ with the job skeleton; either build works.
    const fs0 = require("fs"), at = (f) => process.argv[1] + "/" + f + "/compress.js";
    const { runCompress } = require(fs0.existsSync(at("job")) ? at("job") : at("tall"));
    const crypto = require("crypto"), fs = require("fs"), S = process.argv[3];
    const seen = [];
    runCompress({ base: S + "/base.safetensors", experts: [0, 1, 2].map((t) => ({ path: S + `/expert_${t}.safetensors`, name: `t${t}`, weight: 1 })),
      out: process.argv[2] + "/c-grid", tau: "sum", density: 0.2, scope: "global", chunkElems: 1048632,
      tallLambda: { grid: [0.2, 0.4, 0.6], score: (task, p) => { const h = crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex"); seen.push(task + " " + h); return parseInt(h.slice(0, 8), 16); } } })
      .then((r) => fs.writeFileSync(process.argv[2] + "/grid-scores.txt", seen.join("\n") + "\n" + JSON.stringify(r.tasks) + "\n"));
  ' $D $O $S
  rm -rf $W/$2; mv $O $W/$2
}

stage $2 old; stage $4 new
# The breadcrumbs methods (added after a962a27) run only when both builds have them.
has_breadcrumbs() { TASKMERGE_ADDON=$(readlink -f $1) node $W/pkg-$2/dist/cli/main.js methods breadcrumbs >/dev/null 2>&1; }
BREADCRUMBS=0; has_breadcrumbs $1 old && has_breadcrumbs $3 new && BREADCRUMBS=1
echo "breadcrumbs methods: $([ $BREADCRUMBS == 1 ] && echo compared || echo "skipped (not in both builds)")"
run $1 old
run $3 new
TIMES='^ *"[A-Za-z]*Seconds": [0-9.e-]*,\?$'  # progressive merges record their phases' wall times
bad=0; n=0
for f in $(cd $W/old && find . -type f | sort); do
  n=$((n + 1))
  if [ ! -f $W/new/$f ]; then echo "MISSING in new: $f"; bad=1
  elif [[ $f == */taskmerge.json || $f == */README.md ]]; then
    cmp -s <(grep -v "$TIMES" $W/old/$f) <(grep -v "$TIMES" $W/new/$f) || { echo "DIFF $f"; bad=1; }
  else cmp -s $W/old/$f $W/new/$f || { echo "DIFF $f"; bad=1; }
  fi
done
for f in $(cd $W/new && find . -type f | sort); do [ -f $W/old/$f ] || { echo "EXTRA in new: $f"; bad=1; }; done
echo "$n outputs compared in $W: $([ $bad == 0 ] && echo identical || echo DIFFERENT)"
exit $bad

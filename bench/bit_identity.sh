#!/bin/bash
# Before/after bit identity of compress and the consensus merges: runs the same
# compress (sum, f32 τ with per-task λ, TIES global and per tensor) and merge
# (consensus_ta k 0 and 2, consensus_ties global and per tensor) commands, at
# the default chunk size and at 1 M-entry chunks, plus a λ-grid compress
# through the API, with two builds, and compares every output byte for byte
# (bundle.json without its version and path fields).
# Usage: bench/bit_identity.sh OLD_ADDON OLD_DIST NEW_ADDON NEW_DIST [WORKDIR]
set -e
[ $# -ge 4 ] || { echo "usage: $0 OLD_ADDON OLD_DIST NEW_ADDON NEW_DIST [WORKDIR]" >&2; exit 2; }
W=${5:-$(mktemp -d)}
HERE=$(cd "$(dirname "$0")" && pwd)
S=$W/set
[ -f $S/expert_4.safetensors ] || node "$HERE/bit_identity_gen.js" $S

run() {  # ADDON DIST OUT
  export TASKMERGE_ADDON=$(readlink -f $1); local D=$(readlink -f $2) O=$3
  rm -rf $O; mkdir -p $O
  local E="--expert $S/expert_0.safetensors --expert $S/expert_1.safetensors --expert $S/expert_2.safetensors --expert $S/expert_3.safetensors --expert $S/expert_4.safetensors"
  for ch in 0 1048632; do
    if [ $ch != 0 ]; then export TASKMERGE_CHUNK_ELEMS=$ch; else unset TASKMERGE_CHUNK_ELEMS; fi
    node $D/cli/main.js compress --base $S/base.safetensors $E --out $O/c-sum-$ch --quiet
    node $D/cli/main.js compress --base $S/base.safetensors $E --tall-lambda 0.2,0.3,0.5,0.6,0.45 --dtype f32 --out $O/c-sum32-$ch --quiet
    node $D/cli/main.js compress --base $S/base.safetensors $E --tau ties --scope global --density 0.3 --out $O/c-tiesg-$ch --quiet
    node $D/cli/main.js compress --base $S/base.safetensors $E --tau ties --scope tensor --dtype f16 --out $O/c-tiest-$ch --quiet
    node $D/cli/main.js merge --base $S/base.safetensors $E --method consensus_ta --k 2 --tall-lambda 0.4 --lambda 0.3 --out $O/m-ta-$ch.safetensors --quiet
    node $D/cli/main.js merge --base $S/base.safetensors $E --method consensus_ta --k 0 --dtype f32 --out $O/m-ta0-$ch.safetensors --quiet
    node $D/cli/main.js merge --base $S/base.safetensors $E --method consensus_ties --k 3 --tall-lambda 0.2 --scope global --out $O/m-tiesg-$ch.safetensors --quiet
    node $D/cli/main.js merge --base $S/base.safetensors $E --method consensus_ties --k 1 --scope tensor --lambda 0.7 --out $O/m-tiest-$ch.safetensors --quiet
  done
  unset TASKMERGE_CHUNK_ELEMS
  # λ grid: the score is a hash of the candidate file, so candidates must match too.
  node -e '
    const { runCompress } = require(process.argv[1] + "/tall/compress.js");
    const crypto = require("crypto"), fs = require("fs"), S = process.argv[3];
    const seen = [];
    runCompress({ base: S + "/base.safetensors", experts: [0, 1, 2].map((t) => ({ path: S + `/expert_${t}.safetensors`, name: `t${t}`, weight: 1 })),
      out: process.argv[2] + "/c-grid", tau: "sum", density: 0.2, scope: "global", chunkElems: 1048632,
      tallLambda: { grid: [0.2, 0.4, 0.6], score: (task, p) => { const h = crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex"); seen.push(task + " " + h); return parseInt(h.slice(0, 8), 16); } } })
      .then((r) => fs.writeFileSync(process.argv[2] + "/grid-scores.txt", seen.join("\n") + "\n" + JSON.stringify(r.tasks) + "\n"));
  ' $D $O $S
}

run $1 $2 $W/old
run $3 $4 $W/new
bad=0; n=0
for f in $(cd $W/old && find . -type f | sort); do
  n=$((n + 1))
  if [[ $f == *bundle.json ]]; then
    diff -q <(grep -v '"taskmerge"\|"expert"\|"path"' $W/old/$f) <(grep -v '"taskmerge"\|"expert"\|"path"' $W/new/$f) >/dev/null || { echo "DIFF $f"; bad=1; }
  else
    cmp -s $W/old/$f $W/new/$f || { echo "DIFF $f"; bad=1; }
  fi
done
[ "$(cd $W/old && find . -type f | wc -l)" == "$(cd $W/new && find . -type f | wc -l)" ] || { echo "the file lists differ"; bad=1; }
echo "$n outputs compared in $W: $([ $bad == 0 ] && echo identical || echo DIFFERENT)"
exit $bad

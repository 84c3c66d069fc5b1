#!/usr/bin/python3
"""Synthetic statistics files (SPEC "Statistics files") for a synthetic checkpoint, so the
speed bench can time regmean / lot. Per 2-D key "P.weight" / "P_weight" (not embeddings):
P.input_gram = B Bᵀ + n·I (symmetric positive definite, B random [in, 32]), P.input_count;
per 1-D norm weight: P.norm_sq_sum, P.input_count. Values are random, only the shapes matter.

  /usr/bin/python3 bench/synthetic_stats.py --base base.safetensors --out e1.stats.safetensors ...
"""
import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import safetensors_io  # noqa: E402

ROWS = 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", action="append", required=True, help="one per expert")
    a = ap.parse_args()
    header = safetensors_io.read_header(a.base)[0]
    for i, out in enumerate(a.out):
        if os.path.exists(out):
            continue  # reuse an earlier run's file
        rng = np.random.RandomState(1000 + i)
        t = {}
        for k, info in header.items():
            m = re.match(r"^(.*?)(\.weight|_weight)$", k)
            if not m or "embed" in k:
                continue
            p, shape = m.group(1), info["shape"]
            if len(shape) == 2:
                b = rng.randn(shape[1], 32).astype(np.float32)
                t[p + ".input_gram"] = b @ b.T + np.float32(ROWS) * np.eye(shape[1], dtype=np.float32)
                t[p + ".input_count"] = np.array([ROWS])
            elif len(shape) == 1 and re.search(r"norm|ln_", k):
                t[p + ".norm_sq_sum"] = (ROWS * (0.5 + rng.rand(shape[0]))).astype(np.float32)
                t[p + ".input_count"] = np.array([ROWS])
        safetensors_io.save_file(t, out, metadata={"format": "taskmerge-stats", "producer": "bench/synthetic_stats.py"})
        print("%s: %d tensors, %.0f MB" % (out, len(t), os.path.getsize(out) / 1e6), flush=True)


if __name__ == "__main__":
    main()

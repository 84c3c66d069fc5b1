#!/usr/bin/python3
"""Round-trip checks for safetensors_io.py. Exits non-zero on failure.

Run: /usr/bin/python3 scripts/test_safetensors_io.py
"""
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402


def main():
    fails = []
    rng = np.random.RandomState(0)
    tensors = {
        "z.f64": rng.randn(3, 4), "a.f32": rng.randn(5).astype(np.float32),
        "m.f16": rng.randn(2, 2).astype(np.float16), "i64": np.array([-(1 << 40), 7], np.int64),
        "i32": np.arange(3, dtype=np.int32), "i16": np.array([-3], np.int16),
        "i8": np.array([-128, 127], np.int8), "u8": np.array([0, 255], np.uint8),
        "bool": np.array([[True, False]]), "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(2.5, np.float32),
    }
    # bf16 rounding: ties go to even, NaN/inf survive
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, np.inf, -np.inf, np.nan,
                  -0.0, 3.3895314e38], np.float32)
    want = np.array([1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, np.inf, -np.inf, np.nan, -0.0, 3.3895314e38],
                    np.float32)
    got = st.bf16_bits_to_f32(st.f32_to_bf16_bits(x))
    if not np.array_equal(got, want, equal_nan=True):
        fails.append("bf16 rounding: %r" % got)
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "t.safetensors")
        st.save_file(tensors, p, metadata={"k": "v"})
        back = st.load_file(p)
        for k, v in tensors.items():
            if back[k].dtype != v.dtype or back[k].shape != v.shape or not np.array_equal(back[k], v):
                fails.append("round trip of %s" % k)
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            raw = json.loads(f.read(n))
        keys = [k for k in raw if k != "__metadata__"]
        offs = [raw[k]["data_offsets"] for k in keys]
        if keys != sorted(tensors) or n % 8 or raw.get("__metadata__") != {"k": "v"}:
            fails.append("header layout: %s" % keys)
        if sorted(offs) != offs or offs[0][0] != 0 or os.path.getsize(p) != 8 + n + offs[-1][1]:
            fails.append("data offsets: %s" % offs)
        q = os.path.join(tmp, "b.safetensors")
        st.save_file({"x": x}, q, dtype="BF16")
        if st.read_header(q)[0]["x"]["dtype"] != "BF16" or \
                not np.array_equal(st.load_file(q)["x"], want, equal_nan=True):
            fails.append("BF16 file")
        if [f for f in os.listdir(tmp) if f.startswith(".tmp-")]:
            fails.append("temporary file left behind")
    if fails:
        print("FAIL\n  " + "\n  ".join(fails))
        sys.exit(1)
    print("ok: safetensors_io round trips")


if __name__ == "__main__":
    main()

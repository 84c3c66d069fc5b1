"""Minimal safetensors reader/writer using only numpy.

Format: 8-byte little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian tensor bytes. NumPy has no bfloat16, so BF16 is stored
as uint16 bit patterns: read back as float32, written with round-to-nearest-even.
"""
import json
import os
import tempfile

import numpy as np

# safetensors dtype name -> little-endian numpy dtype of the stored bytes
_NP = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}
_FROM_NP = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64",
            "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def bf16_bits_to_f32(bits):
    """uint16 bfloat16 bit patterns -> float32 (exact: bf16 is the top half of f32)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> uint16 bfloat16 bits, round to nearest, ties to even; NaN stays NaN."""
    u = np.asarray(x, dtype=np.float32, order="C").view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16  # wraps only for NaN
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out = np.where(nan, (u >> 16) | 0x0040, rounded)  # quiet NaN, keep sign
    return out.astype(np.uint16)


def _to_numpy(value):
    """Return (safetensors dtype, contiguous little-endian numpy array of stored bytes)."""
    if hasattr(value, "detach"):  # torch tensor: keep bf16 exactly via its bit pattern
        import torch
        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return "BF16", t.view(torch.int16).numpy().view(np.uint16)
        value = t.numpy()
    a = np.asarray(value)
    name = _FROM_NP.get(a.dtype.name)
    if name is None:
        raise TypeError("unsupported dtype %s" % a.dtype)
    return name, np.asarray(a, dtype=_NP[name], order="C")


def save_file(tensors, path, metadata=None, dtype=None):
    """Write {name: array or torch tensor} to path atomically.

    dtype ("F32", "F16", "BF16") optionally casts every floating tensor on write.
    Keys are sorted and the data is laid out in that order, like the HF library.
    """
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        dt, arr = _to_numpy(tensors[name])
        if dtype and dt in ("F64", "F32", "F16", "BF16"):
            f = bf16_bits_to_f32(arr) if dt == "BF16" else arr
            dt = dtype
            arr = f32_to_bf16_bits(f) if dt == "BF16" else np.asarray(f, dtype=_NP[dt], order="C")
        raw = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * (-len(hdr) % 8)  # pad so the data starts 8-byte aligned
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(len(hdr).to_bytes(8, "little"))
            f.write(hdr)
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_header(path):
    """Return (header dict without __metadata__, metadata dict, data start offset)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def load_file(path):
    """Read every tensor into a dict of numpy arrays (BF16 -> float32)."""
    header, _, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        if info["dtype"] not in _NP:
            raise ValueError("%s: unsupported dtype %s for %s" % (path, info["dtype"], name))
        a = np.frombuffer(data, dtype=_NP[info["dtype"]], count=(e - b) // np.dtype(_NP[info["dtype"]]).itemsize,
                          offset=b).reshape(info["shape"])
        a = bf16_bits_to_f32(a) if info["dtype"] == "BF16" else a.astype(a.dtype.newbyteorder("="), copy=True)
        out[name] = a
    return out

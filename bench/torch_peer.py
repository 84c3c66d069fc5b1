#!/usr/bin/python3
"""The merge definitions of SPEC.md written the way research code runs them in PyTorch on
the CPU: load every checkpoint fully into memory, then compute (TIES over all parameters
flattened into one [T, N] matrix, as FusionBench / the TIES reference code do), then save.
bench/speed.js runs it on the same inputs as taskmerge to compare time and peak memory.

  /usr/bin/python3 bench/torch_peer.py --method ties --base b.safetensors \
      --expert e1.safetensors --expert e2.safetensors --out merged.safetensors [--lambda 1]

Prints one JSON line: {"load_s", "compute_s", "save_s", "seconds"}.
"""
import argparse
import json
import os
import time

import torch

# safetensors dtype name <-> torch dtype
_DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
       "BOOL": torch.bool}
_NAME = {v: k for k, v in _DT.items()}


def load(path):
    """{key: tensor} read fully into memory (what safetensors.torch.load_file does)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        out = {}
        for k, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            b, e = info["data_offsets"]
            buf = bytearray(e - b)
            f.seek(8 + n + b)
            f.readinto(buf)
            t = torch.frombuffer(buf, dtype=_DT[info["dtype"]]) if buf else torch.empty(0, dtype=_DT[info["dtype"]])
            out[k] = t.reshape(info["shape"])
    return out


def save(tensors, path):
    """Write {key: tensor} as safetensors (keys in the given order), atomically."""
    header, off = {}, 0
    for k, t in tensors.items():
        nb = t.numel() * t.element_size()
        header[k] = {"dtype": _NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + nb]}
        off += nb
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp-peer"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for t in tensors.values():
            t = t.contiguous()
            f.write(t.view(torch.uint8).reshape(-1).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    os.replace(tmp, path)


def task_vectors(base, experts, k):
    return [e[k].float() - base[k].float() for e in experts]


def average(base, experts, keys, a):
    return {k: base[k].float() + torch.stack(task_vectors(base, experts, k)).mean(0) for k in keys}


def task_arithmetic(base, experts, keys, a):
    return {k: base[k].float() + a.lam * torch.stack(task_vectors(base, experts, k)).sum(0) for k in keys}


def _flat(base, experts, keys):
    """[T, N] float32 matrix of every task vector over all keys (global scope)."""
    return torch.stack([torch.cat([(e[k].float() - base[k].float()).reshape(-1) for k in keys]) for e in experts])


def _unflat(base, keys, flat):
    out, o = {}, 0
    for k in keys:
        n = base[k].numel()
        out[k] = base[k].float() + flat[o:o + n].reshape(base[k].shape)
        o += n
    return out


def _elect_disjoint(tv):
    """TIES sign election (zero sum -> majority sign over the scope) and disjoint mean."""
    s = torch.sign(tv.sum(0))
    majority = torch.sign(s.sum())
    s[s == 0] = majority if majority != 0 else 1
    agree = (torch.sign(tv) == s) & (tv != 0)
    return (tv * agree).sum(0) / agree.sum(0).clamp(min=1)


def ties(base, experts, keys, a):
    tv = _flat(base, experts, keys)
    n = tv.shape[1]
    kk = max(1, int(n * a.density))
    # keep |tau| >= k-th largest |tau| per task
    thr = tv.abs().kthvalue(n - kk + 1, dim=1, keepdim=True).values
    tv = tv * (tv.abs() >= thr)
    return _unflat(base, keys, a.lam * _elect_disjoint(tv))


def _dare(tv, density, seed):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(tv.shape, generator=g) < density
    return tv * keep / density


def dare_linear(base, experts, keys, a):
    return _unflat(base, keys, a.lam * _dare(_flat(base, experts, keys), a.density, a.seed).sum(0))


def dare_ties(base, experts, keys, a):
    return _unflat(base, keys, a.lam * _elect_disjoint(_dare(_flat(base, experts, keys), a.density, a.seed)))


METHODS = {"average": average, "task_arithmetic": task_arithmetic, "ties": ties,
           "dare_linear": dare_linear, "dare_ties": dare_ties}
DEFAULTS = {"task_arithmetic": {"lam": 0.3, "density": None}, "ties": {"lam": 1.0, "density": 0.2},
            "dare_linear": {"lam": 1.0, "density": 0.5}, "dare_ties": {"lam": 1.0, "density": 0.5}}


def compare(a, b):
    """Max |a - b| over float tensors and how many elements differ, one tensor at a time."""
    ha, hb = _header(a), _header(b)
    if set(ha) != set(hb):
        raise SystemExit("compare: different keys: %s" % sorted(set(ha) ^ set(hb))[:5])
    worst, differ, total, ulps = 0.0, 0, 0, 0
    for k in ha:
        x, y = _read(a, ha, k), _read(b, hb, k)
        if x.shape != y.shape:
            raise SystemExit("compare: %s has shape %s vs %s" % (k, list(x.shape), list(y.shape)))
        if x.is_floating_point():
            d = (x.double() - y.double()).abs()
            worst = max(worst, float(d.max()) if d.numel() else 0.0)
            differ += int((d > 0).sum())
            if x.dtype == y.dtype and d.numel():
                ulps = max(ulps, _ulp_distance(x, y))
        else:
            differ += int((x != y).sum())
        total += x.numel()
    return {"max_abs_diff": worst, "max_ulp": ulps, "differing": differ, "elements": total}


_INT = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32, torch.float64: torch.int64}


def _ulp_distance(x, y):
    """Largest distance in units in the last place of the tensors' own dtype."""
    def ordered(t):
        v = t.contiguous().view(_INT[t.dtype]).long()
        sign = torch.iinfo(_INT[t.dtype]).min
        return torch.where(v < 0, -(v - sign), v)  # sign-magnitude -> monotonic integers
    return int((ordered(x) - ordered(y)).abs().max())


def _header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return {k: dict(v, start=8 + n) for k, v in h.items()}


def _read(path, header, k):
    info = header[k]
    b, e = info["data_offsets"]
    buf = bytearray(e - b)
    with open(path, "rb") as f:
        f.seek(info["start"] + b)
        f.readinto(buf)
    t = torch.frombuffer(buf, dtype=_DT[info["dtype"]]) if buf else torch.empty(0, dtype=_DT[info["dtype"]])
    return t.reshape(info["shape"])


def main():
    ap = argparse.ArgumentParser(description="PyTorch reference merges (load everything, then compute)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="only compare two checkpoints, print JSON")
    ap.add_argument("--method", choices=sorted(METHODS))
    ap.add_argument("--base")
    ap.add_argument("--expert", action="append")
    ap.add_argument("--out")
    ap.add_argument("--lambda", dest="lam", type=float)
    ap.add_argument("--density", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.compare:
        print(json.dumps(compare(*a.compare)))
        return
    if not (a.method and a.base and a.expert and a.out):
        ap.error("--method, --base, --expert and --out are required")
    d = DEFAULTS.get(a.method, {})
    a.lam = a.lam if a.lam is not None else d.get("lam", 1.0)
    a.density = a.density if a.density is not None else d.get("density")
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    base = load(a.base)
    experts = [load(p) for p in a.expert]
    t1 = time.time()
    keys = [k for k, t in base.items() if t.is_floating_point()]
    with torch.no_grad():
        merged = METHODS[a.method](base, experts, keys, a)
    out = {k: merged[k].to(t.dtype) if k in merged else t for k, t in base.items()}
    t2 = time.time()
    save(out, a.out)
    t3 = time.time()
    print(json.dumps({"load_s": round(t1 - t0, 3), "compute_s": round(t2 - t1, 3), "save_s": round(t3 - t2, 3),
                      "seconds": round(t3 - t0, 3)}))


if __name__ == "__main__":
    main()

"""mergekit's merge of one set of safetensors files, op by op in torch.

A peer of taskmerge for test/mergekit_dtype.test.ts: the steps of mergekit's
LoadTensor (cast to `dtype`), GTATask / get_task_vectors / get_mask
(merge_methods/generalized_task_arithmetic.py), sparsify.magnitude,
sparsify.bernoulli and rescaled_masked_tensor (sparsify.py), LinearMergeTask
(merge_methods/linear.py) and SaveTensor (cast to out_dtype), written from
their definitions with the same torch ops in the same order and dtypes, so
torch's rounding is mergekit's. DARE's Bernoulli mask is given (taskmerge's
generator is not torch's); everything else is computed here.

Usage: python3 mergekit_torch.py SPEC.json...; each SPEC names the files:
  {"method": "ties" | "task_arithmetic" | "dare_linear" | "dare_ties" | "linear",
   "dtype": "bfloat16" | "float16" | "float32", "out_dtype": optional,
   "base": FILE (GTA methods), "models": [{"path": FILE, "weight": w, "density": d}],
   "normalize": bool, "rescale": bool, "lambda": float,
   "masks": FILE (U8 tensors "KEY/i": model i's mask), "out": FILE}
Exits 3 naming the tensor when a top-k boundary of magnitudes is tied:
torch.argsort then picks among the ties in an unspecified order.
Imports only torch and the standard library.
"""
import json
import struct
import sys

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
FILE_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "U8": torch.uint8}
NAMES = {v: k for k, v in FILE_DTYPES.items()}


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=FILE_DTYPES[info["dtype"]])
        out[key] = t.reshape(info["shape"])
    return out


def save(path, tensors):
    header, blobs, at = {}, [], 0
    for key, t in tensors.items():
        b = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[key] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rescaled_masked_tensor(tensor, mask, rescale, eps=1e-7):
    masked = tensor * mask
    if not rescale:
        return masked
    before_scale = tensor.abs().sum()
    after_scale = masked.abs().sum()
    if before_scale < eps or after_scale < eps:
        return masked
    return masked * (before_scale / after_scale)


def magnitude(key, tensor, density, rescale):
    if density >= 1:
        return tensor
    k = int(density * tensor.numel())
    assert k > 0
    mask = torch.zeros_like(tensor)
    w = tensor.abs().view(-1).float()
    order = torch.argsort(w, descending=True)
    if k < w.numel() and w[order[k - 1]] == w[order[k]]:
        print(f"tied top-k boundary in {key}: {w[order[k - 1]].item()}", file=sys.stderr)
        sys.exit(3)
    mask.view(-1)[order[:k]] = 1
    return rescaled_masked_tensor(tensor, mask, rescale)


def bernoulli(tensor, density, rescale, keep):
    if density >= 1:
        return tensor
    # torch.bernoulli has no float16 kernel on the CPU: mergekit works in float32 there.
    work = tensor.dtype if tensor.dtype == torch.bfloat16 else torch.float32
    mask = keep.reshape(tensor.shape).to(work)
    return rescaled_masked_tensor(tensor.to(work), mask, rescale).to(tensor.dtype)


def gta(spec, key, base, xs, masks):
    sparsify = {"ties": "magnitude", "dare_linear": "random", "dare_ties": "random"}.get(spec["method"])
    consensus = spec["method"] in ("ties", "dare_ties")
    deltas = []
    for i, (m, x) in enumerate(zip(spec["models"], xs)):
        delta = x.to(base.dtype) - base
        d = m.get("density", 1.0)
        if sparsify == "magnitude":
            delta = magnitude(key, delta, d, spec["rescale"])
        elif sparsify == "random":
            delta = bernoulli(delta, d, spec["rescale"], masks[f"{key}/{i}"] if d < 1 else None)
        deltas.append(delta)
    deltas = torch.stack(deltas, dim=0)
    weights = torch.tensor([m["weight"] for m in spec["models"]], dtype=deltas.dtype)
    while len(deltas.shape) > len(weights.shape):
        weights.unsqueeze_(-1)
    weighted = deltas * weights
    if consensus:
        sign = weighted.sign().to(base.dtype)
        majority = (weighted.sum(dim=0) >= 0).to(base.dtype) * 2 - 1
        mask = sign == majority
        mixed = (weighted * mask).sum(dim=0)
        divisor = (weights * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = weighted.sum(dim=0)
        divisor = weights.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if spec["normalize"]:
        mixed /= divisor
    if spec["lambda"] != 1:
        mixed *= spec["lambda"]
    return (base + mixed).to(base.dtype)


def linear(spec, xs):
    tensors = torch.stack(xs, dim=0)
    weights = torch.tensor([m["weight"] for m in spec["models"]], dtype=tensors.dtype)
    while len(weights.shape) < len(tensors.shape):
        weights.unsqueeze_(-1)
    res = (weights * tensors).sum(dim=0)
    if spec["normalize"]:
        res = res / weights.sum(dim=0)
    return res


def run(spec):
    dtype = DTYPES[spec["dtype"]]
    models = [load(m["path"]) for m in spec["models"]]
    base = load(spec["base"]) if "base" in spec else None
    masks = load(spec["masks"]) if "masks" in spec else {}
    out = {}
    for key in (base or models[0]).keys():
        xs = [m[key].to(dtype) for m in models]
        if spec["method"] == "linear":
            r = linear(spec, xs)
        else:
            r = gta(spec, key, base[key].to(dtype), xs, masks)
        if spec.get("out_dtype"):
            r = r.to(DTYPES[spec["out_dtype"]])
        out[key] = r
    save(spec["out"], out)


def main():
    for path in sys.argv[1:]:
        with open(path) as f:
            run(json.load(f))


if __name__ == "__main__":
    main()

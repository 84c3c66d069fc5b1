#!/usr/bin/python3
"""Collect per-expert activation statistics (SPEC "Statistics files") from a PyTorch model.

For every nn.Linear M: M.input_gram = sum x x^T, M.input_sum, M.input_count over input rows.
For every LayerNorm / RMSNorm M: M.norm_sq_sum = sum xhat^2, M.norm_sum, M.input_count,
with xhat recomputed from the module input (not output / weight, which breaks at weight 0).

Naming: the stats prefix is the weight key minus its trailing ".weight" or "_weight", so
the merge finds "P.input_gram" for weight "P.weight" and for "P_weight" alike.
nn.MultiheadAttention does not call its projections as modules, so it is handled on its
own: packed "X.in_proj_weight" -> X.in_proj.*; separate "X.q_proj_weight" (kdim/vdim set)
-> X.q_proj.*, X.k_proj.*, X.v_proj.*; "X.out_proj.weight" -> X.out_proj.*, from an exact
re-run of the attention with an identity output projection.

  /usr/bin/python3 scripts/collect_stats.py --module model.py --factory build_model \
      --weights expert.safetensors --inputs inputs.npy --out expert.stats.safetensors

As a progressive merge's --stats-command (statistics of one layer group, computed on the
partially merged checkpoint): --weights {model} --keys {keys} --out {out}.
"""
import argparse
import importlib
import importlib.util
import inspect
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def _add_pre_hook(module, fn):
    """Call fn(args, kwargs) before module.forward; return a function that removes it.

    torch < 2.0 hooks never see keyword arguments (MultiheadAttention masks are usually
    passed that way), so there the instance's forward is wrapped instead.
    """
    try:
        h = module.register_forward_pre_hook(lambda m, a, k: fn(a, k), with_kwargs=True)
        return h.remove
    except TypeError:
        had = module.__dict__.get("forward")
        orig = module.forward

        def forward(*args, **kwargs):
            fn(args, kwargs)
            return orig(*args, **kwargs)
        module.forward = forward

        def remove():
            if had is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = had
        return remove


def _first_arg(module, args, kwargs):
    if args:
        return args[0]
    if len(kwargs) == 1:  # e.g. linear(input=x)
        return next(iter(kwargs.values()))
    raise RuntimeError("collect_stats: cannot find the input of %s" % type(module).__name__)


def _is_rmsnorm(m):
    if hasattr(nn, "RMSNorm") and isinstance(m, nn.RMSNorm):  # torch >= 2.4
        return True
    return type(m).__name__.endswith("RMSNorm") and getattr(m, "weight", None) is not None and \
        (hasattr(m, "eps") or hasattr(m, "variance_epsilon"))


class _Stats:
    """Float64 accumulators keyed by stats prefix (weight key minus .weight / _weight)."""

    def __init__(self):
        self.acc = {}

    def add_rows(self, prefix, rows):
        rows = rows.detach().to(torch.float64)
        a = self.acc.setdefault(prefix, {"input_gram": 0, "input_sum": 0, "input_count": 0})
        a["input_gram"] = a["input_gram"] + rows.T @ rows
        a["input_sum"] = a["input_sum"] + rows.sum(0)
        a["input_count"] += rows.shape[0]

    def add_norm(self, prefix, xhat, nd):
        xhat = xhat.reshape((-1,) + tuple(xhat.shape[xhat.dim() - nd:]))
        a = self.acc.setdefault(prefix, {"norm_sq_sum": 0, "norm_sum": 0, "input_count": 0})
        a["norm_sq_sum"] = a["norm_sq_sum"] + (xhat * xhat).sum(0)
        a["norm_sum"] = a["norm_sum"] + xhat.sum(0)
        a["input_count"] += xhat.shape[0]

    def tensors(self, dtype):
        out = {}
        for prefix, a in self.acc.items():
            for k, v in a.items():
                key = prefix + "." + k if prefix else k
                if k == "input_count":
                    out[key] = torch.tensor([float(v)], dtype=torch.float64)
                else:
                    out[key] = v.detach().to(device="cpu", dtype=dtype).contiguous()
        return out


def _linear_hook(stats, prefix, m):
    def fn(args, kwargs):
        x = _first_arg(m, args, kwargs)
        stats.add_rows(prefix, x.reshape(-1, m.in_features))
    return fn


def _layernorm_hook(stats, prefix, m):
    nd = len(m.normalized_shape)

    def fn(args, kwargs):
        x = _first_arg(m, args, kwargs).detach().to(torch.float64)
        dims = tuple(range(x.dim() - nd, x.dim()))
        mean = x.mean(dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dims, keepdim=True)  # biased, as LayerNorm uses
        stats.add_norm(prefix, (x - mean) / torch.sqrt(var + m.eps), nd)
    return fn


def _rmsnorm_hook(stats, prefix, m):
    nd = len(getattr(m, "normalized_shape", None) or m.weight.shape)

    def fn(args, kwargs):
        x = _first_arg(m, args, kwargs)
        eps = getattr(m, "eps", None)
        if eps is None:
            eps = getattr(m, "variance_epsilon", None)
        if eps is None:  # torch.nn.RMSNorm(eps=None) uses the input dtype's epsilon
            eps = torch.finfo(x.dtype).eps
        x = x.detach().to(torch.float64)
        dims = tuple(range(x.dim() - nd, x.dim()))
        stats.add_norm(prefix, x / torch.sqrt((x * x).mean(dims, keepdim=True) + eps), nd)
    return fn


def _same(a, b):
    return a is b or (a.shape == b.shape and torch.equal(a, b))


def _mha_hook(stats, name, m):
    sig = inspect.signature(type(m).forward)
    mha_params = inspect.signature(F.multi_head_attention_forward).parameters
    pre = name + "." if name else ""

    def fn(args, kwargs):
        b = sig.bind(m, *args, **kwargs)
        b.apply_defaults()
        a = b.arguments
        q, k, v = a["query"], a["key"], a["value"]
        if getattr(q, "is_nested", False):
            raise RuntimeError("collect_stats: nested tensors are not supported (%s)" % name)
        # in-projection inputs: rows of the query / key / value embeddings
        if m._qkv_same_embed_dim:
            if not (_same(q, k) and _same(k, v)):
                raise RuntimeError(
                    "collect_stats: %s is a MultiheadAttention with a packed in_proj_weight used as "
                    "cross-attention (query, key, value differ); one input Gram cannot describe "
                    "in_proj_weight" % (name or "<root>"))
            stats.add_rows(pre + "in_proj", q.reshape(-1, m.embed_dim))
        else:
            stats.add_rows(pre + "q_proj", q.reshape(-1, q.shape[-1]))
            stats.add_rows(pre + "k_proj", k.reshape(-1, k.shape[-1]))
            stats.add_rows(pre + "v_proj", v.reshape(-1, v.shape[-1]))
        # out_proj input: the concatenated head outputs, exactly, via identity out_proj
        if m.batch_first and q.dim() == 3:
            q, k, v = (t.transpose(0, 1) for t in (q, k, v))
        eye = torch.eye(m.embed_dim, dtype=m.out_proj.weight.dtype, device=m.out_proj.weight.device)
        extra = dict(training=False, key_padding_mask=a.get("key_padding_mask"), need_weights=False,
                     attn_mask=a.get("attn_mask"))
        if not m._qkv_same_embed_dim:
            extra.update(use_separate_proj_weight=True, q_proj_weight=m.q_proj_weight,
                         k_proj_weight=m.k_proj_weight, v_proj_weight=m.v_proj_weight)
        if "is_causal" in mha_params and "is_causal" in a:
            extra["is_causal"] = a["is_causal"]
        with torch.no_grad():
            heads, _ = F.multi_head_attention_forward(
                q, k, v, m.embed_dim, m.num_heads, m.in_proj_weight, m.in_proj_bias,
                m.bias_k, m.bias_v, m.add_zero_attn, 0.0, eye, None, **extra)
        stats.add_rows(pre + "out_proj", heads.reshape(-1, m.embed_dim))
    return fn


def _prefix(key):
    """The stats prefix of a weight key (as the merge reads it), or None."""
    for tail in (".weight", "_weight"):
        if key.endswith(tail):
            return key[:-len(tail)]
    return None


def attach(model, stats, only=None):
    """Register hooks on every supported module (or those with a stats prefix in `only`);
    return (remover functions, hooked prefixes)."""
    removers, hooked = [], []
    mha_out = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    for name, m in model.named_modules():
        pre = name + "." if name else ""
        if only is not None:
            own = [pre + p for p in ("in_proj", "q_proj", "k_proj", "v_proj", "out_proj")] \
                if isinstance(m, nn.MultiheadAttention) else [name]
            if not any(p in only for p in own):
                continue
        if isinstance(m, nn.MultiheadAttention):
            removers.append(_add_pre_hook(m, _mha_hook(stats, name, m)))
            proj = ["in_proj"] if m._qkv_same_embed_dim else ["q_proj", "k_proj", "v_proj"]
            hooked += [pre + p for p in proj + ["out_proj"]]
        elif isinstance(m, nn.Linear) and id(m) not in mha_out:
            removers.append(_add_pre_hook(m, _linear_hook(stats, name, m)))
            hooked.append(name)
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            removers.append(_add_pre_hook(m, _layernorm_hook(stats, name, m)))
            hooked.append(name)
        elif _is_rmsnorm(m) and getattr(m, "weight", None) is not None:
            removers.append(_add_pre_hook(m, _rmsnorm_hook(stats, name, m)))
            hooked.append(name)
    return removers, hooked


def _fused_layers(model):
    """nn.TransformerEncoderLayer's eval fast path (torch >= 1.12) runs one fused kernel and
    never calls its self_attn / linear / norm submodules, so their hooks would not fire. The
    fast path is skipped when grad is enabled and a parameter requires grad."""
    return [m for m in model.modules() if type(m).__name__ == "TransformerEncoderLayer"]


def _to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def collect_stats(model, batches, out_path, dtype="f64", keys=None):
    """Run every batch through model (eval, no grad) and write the statistics file.

    A batch is a tensor (model(batch)), a tuple/list (model(*batch)) or a dict (model(**batch)).
    keys: weight keys whose statistics to write (e.g. one layer group of a progressive
    merge); None for every supported module. Returns {stats prefix: number of rows seen}.
    """
    if dtype not in ("f64", "f32"):
        raise ValueError("dtype must be f64 or f32")
    stats = _Stats()
    was_training = model.training
    model.eval()
    only = None if keys is None else {p for p in map(_prefix, keys) if p is not None}
    removers, hooked = attach(model, stats, only)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    fused = _fused_layers(model)
    # params switched to requires_grad only for the run (restored below)
    frozen = [q for m in fused for q in m.parameters() if not q.requires_grad and q.is_floating_point()]
    try:
        for q in frozen:
            q.requires_grad_(True)
        with torch.set_grad_enabled(bool(fused)):
            for batch in batches:
                batch = _to_device(batch, device)
                if isinstance(batch, dict):
                    model(**batch)
                elif isinstance(batch, (tuple, list)):
                    model(*batch)
                else:
                    model(batch)
    finally:
        for q in frozen:
            q.requires_grad_(False)
        for r in removers:
            r()
        model.train(was_training)
    if only is not None:  # an attention hook also sees its sibling projections
        stats.acc = {p: a for p, a in stats.acc.items() if p in only}
        hooked = [h for h in hooked if h in only]
        if not hooked:
            print("collect_stats: warning: no Linear/norm/attention module among the %d keys" % len(keys),
                  file=sys.stderr)
            safetensors_io.save_file({}, out_path, metadata={
                "format": "taskmerge-stats", "producer": "scripts/collect_stats.py", "dtype": dtype})
            return {}
    if not stats.acc:
        raise RuntimeError("collect_stats: no Linear/norm/attention module saw any input")
    unseen = [h for h in hooked if h not in stats.acc]
    if unseen:  # e.g. modules the forward never used; the merge falls back to the mean there
        print("collect_stats: warning: no input reached %d module(s): %s" % (
            len(unseen), ", ".join(unseen[:8]) + (" ..." if len(unseen) > 8 else "")), file=sys.stderr)
    tensors = stats.tensors(torch.float64 if dtype == "f64" else torch.float32)
    safetensors_io.save_file(tensors, out_path, metadata={
        "format": "taskmerge-stats", "producer": "scripts/collect_stats.py", "dtype": dtype})
    return {p: int(a["input_count"]) for p, a in stats.acc.items()}


def module_order(model, batch):
    """Names owning the model's floating-point keys in the order one forward pass reaches them
    (a progressive merge's --module-order file): every module with parameters or float buffers
    of its own, by first call; the root module's own tensors (cls_token...) by key name."""
    order, removers = [], []
    owners = [(n, m) for n, m in model.named_modules()
              if any(t.is_floating_point() for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)))]
    for name, m in owners:
        removers.append(_add_pre_hook(m, lambda a, k, name=name: order.append(name) if name not in order else None))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = _to_device(batch, next(model.parameters()).device)
            model(**batch) if isinstance(batch, dict) else model(*batch) if isinstance(batch, (tuple, list)) else model(batch)
    finally:
        for r in removers:
            r()
        model.train(was_training)
    unseen = [n for n, _ in owners if n not in order]
    if unseen:  # merged last: their statistics (if any) then see every other module merged
        print("collect_stats: warning: the forward pass never called %s; listed last" % ", ".join(unseen[:8]), file=sys.stderr)
    out = []
    for name in order + unseen:
        if name:
            out.append(name)
        else:
            m = model
            out += [k for k, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
                    if t.is_floating_point()]
    return out


# ---------------------------------------------------------------- command line

def _import(spec):
    """Import a module from a .py path or a dotted name."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        sys.path.insert(0, os.path.dirname(path))
        s = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        return mod
    return importlib.import_module(spec)


def _load_batches(path, batch_size, float_dtype):
    """.npy / .npz (arrays split along dim 0; npz arrays become positional inputs) or
    .pt (a tensor split along dim 0, or a list of ready batches)."""
    def fix(t):
        t = torch.as_tensor(t)
        return t.to(float_dtype) if t.is_floating_point() else t

    if path.endswith(".pt"):
        obj = torch.load(path, map_location="cpu")
        if isinstance(obj, (list, tuple)) and not torch.is_tensor(obj):
            return [_map(b, fix) for b in obj]
        arrays = [obj]
    elif path.endswith(".npz"):
        z = np.load(path)
        arrays = [z[k] for k in z.files]
    else:
        arrays = [np.load(path)]
    n = len(arrays[0])
    out = []
    for i in range(0, n, batch_size):
        parts = [fix(a[i:i + batch_size]) for a in arrays]
        out.append(parts[0] if len(parts) == 1 else tuple(parts))
    return out


def _map(b, f):
    if isinstance(b, (tuple, list)):
        return type(b)(_map(x, f) for x in b)
    if isinstance(b, dict):
        return {k: _map(v, f) for k, v in b.items()}
    return f(b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module", required=True, help="python file or dotted module defining the model")
    ap.add_argument("--factory", required=True, help="function in --module that returns the nn.Module")
    ap.add_argument("--factory-kwargs", default="{}", help="JSON object of keyword arguments for --factory")
    ap.add_argument("--weights", help="safetensors checkpoint to load (strict); in a progressive merge, {model}")
    ap.add_argument("--keys", help="text file of weight keys, one a line: write only their modules' statistics "
                    "(a progressive merge's {keys})")
    ap.add_argument("--inputs", required=True, help=".npy/.npz/.pt file of model inputs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dtype", choices=["f64", "f32"], default="f64", help="dtype of the sums")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--out", help="statistics .safetensors to write")
    ap.add_argument("--print-module-order", action="store_true",
                    help="print the module names in forward order (for a progressive merge's --module-order) and exit")
    args = ap.parse_args(argv)
    if not args.out and not args.print_module_order:
        ap.error("--out is required")
    import json
    if args.threads:
        torch.set_num_threads(args.threads)
    model = getattr(_import(args.module), args.factory)(**json.loads(args.factory_kwargs))
    if args.weights:
        sd = {k: torch.from_numpy(v) for k, v in safetensors_io.load_file(args.weights).items()}
        model.load_state_dict(sd, strict=True)
    model.to(args.device)
    p = next(model.parameters(), None)
    batches = _load_batches(args.inputs, args.batch_size, p.dtype if p is not None else torch.float32)
    if args.print_module_order:
        print("\n".join(module_order(model, batches[0])))
        return
    keys = None
    if args.keys:
        with open(args.keys) as f:
            keys = [line.strip() for line in f if line.strip()]
    rows = collect_stats(model, batches, args.out, args.dtype, keys)
    print("wrote %s: %d modules, %d rows max" % (args.out, len(rows), max(rows.values(), default=0)))


if __name__ == "__main__":
    main()

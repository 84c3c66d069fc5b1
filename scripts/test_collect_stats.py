#!/usr/bin/python3
"""Check collect_stats.py against statistics computed by hand. Exits non-zero on failure.

The reference re-implements the tiny model's forward pass from its weights (own attention
code), checks that it reproduces the model output, and builds the sums from its own
intermediate tensors. Run: /usr/bin/python3 scripts/test_collect_stats.py
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import collect_stats  # noqa: E402
import safetensors_io  # noqa: E402

N, L, S, E, H = 3, 5, 4, 8, 2
FAILS = []


class MyRMSNorm(nn.Module):
    """Hugging Face style RMSNorm (variance_epsilon, no normalized_shape)."""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.variance_epsilon = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon) * self.weight


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, E)
        self.ln = nn.LayerNorm(E)
        self.attn_bf = nn.MultiheadAttention(E, H, batch_first=True)
        self.rms = MyRMSNorm(E)
        self.attn_sf = nn.MultiheadAttention(E, H)  # batch_first=False
        self.cross = nn.MultiheadAttention(E, H, kdim=6, vdim=7, batch_first=True)
        self.ln2 = nn.LayerNorm((2, E // 2))  # multi-dim normalized_shape
        self.head = nn.Linear(E, 3)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in self.parameters():  # non-trivial affine params and biases
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.ln.weight[0] = 0.0  # output/weight would be 0/0 here
        kpm = torch.zeros(N, L, dtype=torch.bool)
        kpm[0, -2:] = True
        self.register_buffer("kpm", kpm)
        self.register_buffer("causal", torch.triu(torch.ones(L, L, dtype=torch.bool), 1))

    def forward(self, x, mem_k, mem_v):
        h = self.embed(x)
        a = self.ln(h)
        h = h + self.attn_bf(a, a, a, key_padding_mask=self.kpm[: len(x)])[0]
        b = self.rms(h).transpose(0, 1)
        h = h + self.attn_sf(b, b, b, need_weights=False, attn_mask=self.causal)[0].transpose(0, 1)
        h = h + self.cross(h, mem_k, mem_v)[0]
        h = self.ln2(h.reshape(h.shape[0], L, 2, E // 2)).reshape(h.shape)
        return self.head(h)


def make_tiny():
    return Tiny().double()


def ref_attention(q, k, v, Wq, bq, Wk, bk, Wv, bv, kpm=None, mask=None):
    """Batch-first inputs [N,L,*]; returns the concatenated head outputs [N,L,E]."""
    def split(t):
        return t.reshape(t.shape[0], t.shape[1], H, E // H).transpose(1, 2)
    Q, K, V = split(q @ Wq.T + bq), split(k @ Wk.T + bk), split(v @ Wv.T + bv)
    s = Q @ K.transpose(-1, -2) / np.sqrt(E // H)
    if kpm is not None:
        s = s.masked_fill(kpm[:, None, None, :], float("-inf"))
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    return (torch.softmax(s, -1) @ V).transpose(1, 2).reshape(q.shape[0], q.shape[1], E)


def reference(m, x, mem_k, mem_v, rec):
    """Manual forward of Tiny; rec[prefix] collects the rows each module sees."""
    def put(prefix, rows):
        rec.setdefault(prefix, []).append(rows.reshape(-1, rows.shape[-1]))

    def packed(a):
        w, b = a.in_proj_weight, a.in_proj_bias
        return w[:E], b[:E], w[E:2 * E], b[E:2 * E], w[2 * E:], b[2 * E:]

    put("embed", x)
    h = x @ m.embed.weight.T + m.embed.bias
    mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    a = (h - mu) / torch.sqrt(var + m.ln.eps)
    put("ln", a)
    a = a * m.ln.weight + m.ln.bias
    put("attn_bf.in_proj", a)
    o = ref_attention(a, a, a, *packed(m.attn_bf), kpm=m.kpm[: len(x)])
    put("attn_bf.out_proj", o)
    h = h + o @ m.attn_bf.out_proj.weight.T + m.attn_bf.out_proj.bias
    r = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + m.rms.variance_epsilon)
    put("rms", r)
    r = r * m.rms.weight
    put("attn_sf.in_proj", r)
    o = ref_attention(r, r, r, *packed(m.attn_sf), mask=m.causal)
    put("attn_sf.out_proj", o)
    h = h + o @ m.attn_sf.out_proj.weight.T + m.attn_sf.out_proj.bias
    c = m.cross
    put("cross.q_proj", h)
    put("cross.k_proj", mem_k)
    put("cross.v_proj", mem_v)
    bq, bk, bv = c.in_proj_bias[:E], c.in_proj_bias[E:2 * E], c.in_proj_bias[2 * E:]
    o = ref_attention(h, mem_k, mem_v, c.q_proj_weight, bq, c.k_proj_weight, bk, c.v_proj_weight, bv)
    put("cross.out_proj", o)
    h = h + o @ c.out_proj.weight.T + c.out_proj.bias
    g = h.reshape(h.shape[0], L, E)
    mu, var = g.mean(-1, keepdim=True), g.var(-1, unbiased=False, keepdim=True)
    g = (g - mu) / torch.sqrt(var + m.ln2.eps)
    rec.setdefault("ln2", []).append(g.reshape(-1, 2, E // 2))
    h = g * m.ln2.weight.reshape(-1) + m.ln2.bias.reshape(-1)
    put("head", h)
    return h @ m.head.weight.T + m.head.bias


def check(name, got, want, tol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        FAILS.append("%s: shape %s != %s" % (name, got.shape, want.shape))
        return
    err = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want))) if want.size else 0.0
    if not err <= tol:
        FAILS.append("%s: relative error %.3g > %.3g" % (name, err, tol))


def expected(rec):
    out = {}
    for p, rows in rec.items():
        r = torch.cat(rows).numpy()
        out[p + ".input_count"] = [float(len(r))]
        if p in ("ln", "rms", "ln2"):
            out[p + ".norm_sq_sum"], out[p + ".norm_sum"] = (r * r).sum(0), r.sum(0)
        else:
            out[p + ".input_gram"], out[p + ".input_sum"] = r.T @ r, r.sum(0)
    return out


def make_batches(seed, count):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(N, L, 5, generator=g, dtype=torch.float64),
             torch.randn(N, S, 6, generator=g, dtype=torch.float64),
             torch.randn(N, S, 7, generator=g, dtype=torch.float64)) for _ in range(count)]


def test_against_reference(tmp):
    model = make_tiny().eval()
    batches = make_batches(0, 3)
    rec = {}
    with torch.no_grad():
        for b in batches:
            check("reference forward", reference(model, *b, rec), model(*b), 1e-12)
    want = expected(rec)
    for dtype, tol in (("f64", 1e-12), ("f32", 1e-6)):
        path = os.path.join(tmp, "stats_%s.safetensors" % dtype)
        rows = collect_stats.collect_stats(model, batches, path, dtype=dtype)
        got = safetensors_io.load_file(path)
        if set(got) != set(want):
            FAILS.append("%s keys: extra %s missing %s" % (dtype, sorted(set(got) - set(want)),
                                                           sorted(set(want) - set(got))))
        for k in sorted(set(got) & set(want)):
            check("%s %s" % (dtype, k), got[k], want[k], tol)
        hdr = safetensors_io.read_header(path)[0]
        for k, info in hdr.items():
            wanted = "F64" if k.endswith("input_count") or dtype == "f64" else "F32"
            if info["dtype"] != wanted:
                FAILS.append("%s: dtype %s, wanted %s" % (k, info["dtype"], wanted))
        if rows.get("attn_sf.in_proj") != 3 * N * L:
            FAILS.append("row count for attn_sf.in_proj: %s" % rows.get("attn_sf.in_proj"))
    # hooks removed, mode restored
    if any("forward" in m.__dict__ for m in model.modules()) or model.training:
        FAILS.append("collect_stats left a wrapper or changed the training mode")
    return model, batches, want


def test_cross_attention_error(tmp):
    mha = nn.MultiheadAttention(E, H).double()
    q, kv = torch.randn(L, 2, E, dtype=torch.float64), torch.randn(S, 2, E, dtype=torch.float64)
    try:
        collect_stats.collect_stats(mha, [(q, kv, kv)], os.path.join(tmp, "x.safetensors"))
        FAILS.append("packed cross-attention did not raise")
    except RuntimeError as e:
        if "cross-attention" not in str(e):
            FAILS.append("unclear cross-attention error: %s" % e)
    # equal (but not identical) tensors count as self-attention; unbatched input works
    x = torch.randn(L, E, dtype=torch.float64)
    path = os.path.join(tmp, "root.safetensors")
    collect_stats.collect_stats(mha, [(x, x.clone(), x.clone())], path)
    got = safetensors_io.load_file(path)
    check("root in_proj gram", got["in_proj.input_gram"], (x.T @ x).numpy(), 1e-12)
    w, b = mha.in_proj_weight, mha.in_proj_bias
    parts = [t for i in range(3) for t in (w[i * E:(i + 1) * E], b[i * E:(i + 1) * E])]
    o = ref_attention(x[None], x[None], x[None], *parts)[0].detach()
    check("root out_proj gram", got["out_proj.input_gram"], (o.T @ o).numpy(), 1e-12)


def test_encoder_fast_path(tmp):
    """nn.TransformerEncoderLayer's fused eval path must not hide its submodules."""
    layer = nn.TransformerEncoderLayer(E, H, 16, dropout=0.0, batch_first=True).double().eval()
    for q in layer.parameters():
        q.requires_grad_(False)  # frozen, as in a loaded checkpoint
    x = torch.randn(N, L, E, dtype=torch.float64)
    path = os.path.join(tmp, "enc.safetensors")
    collect_stats.collect_stats(layer, [x], path)
    got = safetensors_io.load_file(path)
    if any(q.requires_grad for q in layer.parameters()):
        FAILS.append("encoder: requires_grad not restored")

    def ln(t, m):
        return (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + m.eps)
    a = layer.self_attn
    w, b = a.in_proj_weight, a.in_proj_bias
    o = ref_attention(x, x, x, *[t for i in range(3) for t in (w[i * E:(i + 1) * E], b[i * E:(i + 1) * E])])
    n1 = ln(x + o @ a.out_proj.weight.T + a.out_proj.bias, layer.norm1)
    h = n1 * layer.norm1.weight + layer.norm1.bias
    f = torch.relu(h @ layer.linear1.weight.T + layer.linear1.bias)
    n2 = ln(h + f @ layer.linear2.weight.T + layer.linear2.bias, layer.norm2)
    for k, r in (("self_attn.in_proj", x), ("self_attn.out_proj", o), ("linear1", h), ("linear2", f)):
        r = r.reshape(-1, r.shape[-1])
        check("encoder " + k, got.get(k + ".input_gram", np.zeros(0)), (r.T @ r).numpy(), 1e-12)
    for k, r in (("norm1", n1), ("norm2", n2)):
        r = r.reshape(-1, E)
        check("encoder " + k, got.get(k + ".norm_sq_sum", np.zeros(0)), (r * r).sum(0).numpy(), 1e-12)


def test_cli(tmp, model, batches, want):
    weights = os.path.join(tmp, "tiny.safetensors")
    safetensors_io.save_file(model.state_dict(), weights)
    x, k, v = (torch.cat(t).numpy() for t in zip(*batches))
    inputs = os.path.join(tmp, "inputs.npz")
    np.savez(inputs, x=x, mem_k=k, mem_v=v)
    out = os.path.join(tmp, "cli.safetensors")
    cmd = [sys.executable, os.path.join(HERE, "collect_stats.py"), "--module", os.path.abspath(__file__),
           "--factory", "make_tiny", "--weights", weights, "--inputs", inputs, "--batch-size", str(N),
           "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        FAILS.append("CLI failed: %s" % r.stderr.strip()[-500:])
        return
    got = safetensors_io.load_file(out)
    for k in want:
        check("cli " + k, got.get(k, np.full(np.shape(want[k]), np.nan)), want[k], 1e-12)


def test_keys(tmp, model, batches, want):
    """--keys / keys=: only the listed weights' modules (a progressive merge's group), also
    when an attention hook sees sibling projections; a group without any is an empty file."""
    norm = sorted(k[:-len(".norm_sq_sum")] for k in want if k.endswith(".norm_sq_sum"))[0]
    keys = ["attn_sf.out_proj.weight", "attn_sf.out_proj.bias", norm + ".weight"]
    wanted = {k for k in want if k.rsplit(".", 1)[0] in ("attn_sf.out_proj", norm)}
    weights = os.path.join(tmp, "tiny.safetensors")
    keys_file = os.path.join(tmp, "keys.txt")
    with open(keys_file, "w") as f:
        f.write("\n".join(keys) + "\n")
    out = os.path.join(tmp, "keys.safetensors")
    collect_stats.collect_stats(model, batches, out, keys=keys)
    got = safetensors_io.load_file(out)
    if set(got) != wanted:
        FAILS.append("keys=: got %s, wanted %s" % (sorted(got), sorted(wanted)))
    for k in wanted & set(got):
        check("keys= " + k, got[k], want[k], 1e-12)
    x, mk, mv = (torch.cat(t).numpy() for t in zip(*batches))
    inputs = os.path.join(tmp, "inputs.npz")
    np.savez(inputs, x=x, mem_k=mk, mem_v=mv)
    cmd = [sys.executable, os.path.join(HERE, "collect_stats.py"), "--module", os.path.abspath(__file__),
           "--factory", "make_tiny", "--weights", weights, "--keys", keys_file, "--inputs", inputs,
           "--batch-size", str(N), "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or set(safetensors_io.load_file(out)) != wanted:
        FAILS.append("CLI --keys: %s" % (r.stderr.strip()[-300:] or sorted(safetensors_io.load_file(out))))
    empty = os.path.join(tmp, "empty.safetensors")
    collect_stats.collect_stats(model, batches, empty, keys=["no.such.weight"])
    if safetensors_io.load_file(empty):
        FAILS.append("keys= without a module wrote statistics")


def test_module_order():
    """Forward order, not definition order; the root's own tensors by key; unused modules last."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)      # defined first, runs last
            self.unused = nn.Linear(4, 4)
            self.cls = nn.Parameter(torch.zeros(4))
            self.body = nn.Sequential(nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 4))

        def forward(self, x):
            return self.head(self.body(x + self.cls))
    got = collect_stats.module_order(Net(), torch.zeros(3, 4))
    if got != ["cls", "body.0", "body.2", "head", "unused"]:
        FAILS.append("module_order: %s" % got)


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model, batches, want = test_against_reference(tmp)
        test_cross_attention_error(tmp)
        test_encoder_fast_path(tmp)
        test_cli(tmp, model, batches, want)
        test_keys(tmp, model, batches, want)
    test_module_order()
    if FAILS:
        print("FAIL\n  " + "\n  ".join(FAILS))
        sys.exit(1)
    print("ok: collect_stats matches the manual reference (%d tensors)" % len(want))


if __name__ == "__main__":
    main()

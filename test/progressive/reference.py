"""Reference progressive merge, written apart from taskmerge: the layer-by-layer loop in
PyTorch with its own hooks and the closed forms in float64 NumPy.

For each group (modules in forward order), for each expert t: load a model whose earlier
groups hold the merge so far, this group the expert's weights and later groups the base's;
run expert t's calibration inputs; take every Linear input Gram (sum x x^T, row count) and
every LayerNorm's sum of xhat^2. Then merge the group's parameters (SPEC definitions):
  lot:     linear T* = (sum_t T_t G_t) (A + ridge*mean(diag A) I)^-1, A = sum_t G_t;
           LayerNorm weight sum_t s_t T_t / sum_t s_t; others the mean T_t; theta0 + lambda T*
  regmean: linear W = (sum_t W_t Gt~)(sum_t Gt~)^-1, Gt~ = alpha G + (1-alpha) diag G with
           G the mean Gram; others the mean of the experts.
--groups none merges with statistics of each expert's own model (the usual, non-progressive
mode) to show that the test tells the two apart.

  reference.py SCRIPTS_DIR THIS_DIR DATA_DIR DEPTH METHOD block|module|none OUT [ORDER_FILE]
(several "GROUPS OUT [ORDER_FILE]" triples may follow, separated by "+", sharing one torch import)
"""
import sys
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import safetensors_io  # noqa: E402
import model as M  # noqa: E402

data, depth, method = sys.argv[3], int(sys.argv[4]), sys.argv[5]
LAMBDA, RIDGE, ALPHA = 1.5, 1e-6, 0.9
experts = ["a", "b"]
load = lambda p: {k: torch.from_numpy(v).to(torch.float64) for k, v in safetensors_io.load_file(p).items()}
base = load(data + "/base.safetensors")
weights = {e: load("%s/%s.safetensors" % (data, e)) for e in experts}
inputs = {e: torch.from_numpy(np.load("%s/inputs_%s.npy" % (data, e))) for e in experts}

def in_group(key, group):
    return any(key == m or key.startswith(m + ".") for m in group)


def statistics(state, x, group):
    net = M.Net(depth).double().eval()
    net.load_state_dict(state)
    st, hooks = {}, []
    for name, m in net.named_modules():
        if not in_group(name + ".weight", group):
            continue
        if isinstance(m, nn.Linear):
            def f(mod, args, name=name):
                r = args[0].reshape(-1, mod.in_features).detach().numpy()
                g, n = st.get(name, (0, 0))
                st[name] = (g + r.T @ r, n + r.shape[0])
            hooks.append(m.register_forward_pre_hook(f))
        elif isinstance(m, nn.LayerNorm):
            def f(mod, args, name=name):
                x = args[0].detach()
                xh = ((x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + mod.eps))
                xh = xh.reshape(-1, x.shape[-1]).numpy()
                st[name] = st.get(name, 0) + (xh * xh).sum(0)
            hooks.append(m.register_forward_pre_hook(f))
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return st


def run(grouping, out, order=None):
    if grouping == "block":
        groups = [["embed"]] + [["blocks.%d" % i] for i in range(depth)] + [["head"]]
    elif grouping == "module":
        groups = [[line.strip()] for line in open(order) if line.strip()]
    else:  # none: one group holding everything, statistics from each expert's own model
        groups = [["embed"] + ["blocks.%d" % i for i in range(depth)] + ["head"]]


    merged = {k: v.clone() for k, v in base.items()}
    for group in groups:
        keys = [k for k in base if in_group(k, group)]
        stats = {}
        for e in experts:
            state = dict(merged) if grouping != "none" else dict(weights[e])
            for k in keys:
                state[k] = weights[e][k]
            stats[e] = statistics(state, inputs[e], group)
        for k in keys:
            mod = k.rsplit(".", 1)[0]
            W0 = base[k].numpy()
            Ws = [weights[e][k].numpy() for e in experts]
            Ts = [w - W0 for w in Ws]
            kind = "linear" if W0.ndim == 2 else "norm" if k.endswith(".weight") and mod in stats["a"] else "other"
            if method == "lot":
                if kind == "linear":
                    A = sum(stats[e][mod][0] for e in experts)
                    B = sum(t @ stats[e][mod][0] for t, e in zip(Ts, experts))
                    A = A + RIDGE * np.mean(np.diag(A)) * np.eye(A.shape[0])
                    T = np.linalg.solve(A, B.T).T
                elif kind == "norm":
                    s = [stats[e][mod] for e in experts]
                    T = sum(si * t for si, t in zip(s, Ts)) / sum(s)
                else:
                    T = sum(Ts) / len(Ts)
                W = W0 + LAMBDA * T
            else:
                if kind == "linear":
                    Gs = []
                    for e in experts:
                        g, n = stats[e][mod]
                        g = g / n
                        Gs.append(ALPHA * g + (1 - ALPHA) * np.diag(np.diag(g)))
                    W = np.linalg.solve(sum(Gs), sum(w @ g for w, g in zip(Ws, Gs)).T).T
                else:
                    W = sum(Ws) / len(Ws)
            merged[k] = torch.from_numpy(np.ascontiguousarray(W))
    safetensors_io.save_file(merged, out)


jobs = sys.argv[6:]
while jobs:
    job = jobs[:jobs.index("+")] if "+" in jobs else jobs
    jobs = jobs[len(job) + 1:]
    run(*job)

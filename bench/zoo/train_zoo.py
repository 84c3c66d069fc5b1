#!/usr/bin/python3
"""Build the model zoo in the setting of the merging papers (CLIP-like).

  /usr/bin/python3 bench/zoo/train_zoo.py --out bench/zoo/out

1. base: an encoder pre-trained on the untransformed images (its pre-training head is
   thrown away), like CLIP's image tower.
2. per task: a linear head fitted on frozen base features (multinomial logistic
   regression, L2 strength chosen on validation), then frozen, like CLIP's zero-shot heads.
3. per task: the encoder fine-tuned through that frozen head with a small learning rate for
   a fixed number of steps (the expert).
So zero-shot (base encoder + task heads) sits below the experts, and a merged encoder is
scored with each task's own head.

Writes DIR/base.safetensors and DIR/experts/<task>.safetensors (encoder only, float32),
DIR/heads/<task>.safetensors (head.weight, head.bias), DIR/calib.npz (the 64 calibration
images of every task, from its training split), DIR/stats/<task>.safetensors
(scripts/collect_stats.py on those images through the expert) and DIR/zoo.json.
"""
import argparse
import json
import math
import os
import sys
import time

# one BLAS thread as well as one torch thread: the machine is shared (set before torch loads)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import collect_stats  # noqa: E402
import safetensors_io  # noqa: E402
import tasks as zoo_tasks  # noqa: E402
from evaluate import accuracy, features  # noqa: E402
from model import Classifier, build_model  # noqa: E402

MODEL = {"dim": 64, "depth": 3, "heads": 4, "mlp_ratio": 4}
CLASSES = 10
L2_GRID = [1e-4, 1e-3, 1e-2]  # head fitting, chosen on validation
T0 = time.time()


def log(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


def train(model, x, y, steps, lr, wd, seed, batch=128):
    """AdamW, linear warmup then cosine decay, `steps` batches (data reshuffled per pass)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * s / steps))))
    rng = np.random.RandomState(seed)
    order = np.empty(0, np.int64)
    model.train()
    for step in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(x))])
        idx, order = np.sort(order[:batch]), order[batch:]
        loss = F.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % max(1, steps // 2) == 0:
            log("  step %d/%d loss %.3f" % (step + 1, steps, loss.item()))
    model.eval()
    return model


def fit_head(ftr, ytr, fval, yval):
    """Multinomial logistic regression on frozen features (full-batch L-BFGS), the L2
    strength chosen by validation accuracy. Returns (nn.Linear, chosen l2, val accuracy)."""
    best = None
    for l2 in L2_GRID:
        torch.manual_seed(0)
        head = nn.Linear(ftr.shape[1], CLASSES)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=200, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(head(ftr), ytr) + 0.5 * l2 * head.weight.pow(2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        with torch.no_grad():
            acc = float((head(fval).argmax(1) == yval).float().mean())
        if best is None or acc > best[2]:
            best = (head, l2, acc)
    best[0].requires_grad_(False)
    return best


def save(tensors, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors_io.save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)


def main():
    ap = argparse.ArgumentParser(description="Train the Fashion-MNIST model zoo.")
    ap.add_argument("--out", required=True, help="output directory (e.g. bench/zoo/out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain", choices=["original", "mixture"], default="original",
                    help="base pre-training data: the untransformed images, or a mixture of every domain "
                         "(tasks.pretrain_mixture; an experiment, not what bench/RESULTS.md uses)")
    ap.add_argument("--pretrain-steps", type=int, default=1200, help="batches of 128 for the base")
    ap.add_argument("--lr", type=float, default=1e-3, help="pre-training learning rate")
    ap.add_argument("--ft-steps", type=int, default=400, help="batches of 128 per expert")
    ap.add_argument("--ft-lr", type=float, default=2e-4, help="fine-tuning learning rate (small)")
    ap.add_argument("--head-samples", type=int, default=256, help="training images per task for its head (few: a weak head, as zero-shot ones are)")
    ap.add_argument("--head-val", type=int, default=2000, help="validation images per task for the head's L2")
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--tasks", help="comma-separated subset of tasks (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.tasks.split(",") if args.tasks else zoo_tasks.TASKS
    out = args.out
    raw = zoo_tasks.load_raw(os.path.join(out, "cache"))

    def data(task, split):
        return zoo_tasks.get_split(raw, task, split)

    # 1. base encoder, pre-trained through a throw-away head on the untransformed images
    torch.manual_seed(args.seed)
    base = build_model(**MODEL)
    if args.pretrain == "mixture":
        x, y = zoo_tasks.pretrain_mixture(raw, args.seed)
    else:
        x, y = data(zoo_tasks.PRETRAIN, "train")
    log("pre-training base on %s (%d steps)" % (args.pretrain, args.pretrain_steps))
    train(Classifier(base, CLASSES), x, y, args.pretrain_steps, args.lr, 0.05, args.seed)
    save(base.state_dict(), os.path.join(out, "base.safetensors"))
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}

    result = {"zero_shot": {"val": {}, "test": {}}, "experts": {}, "heads": {}}
    calib = {}
    os.makedirs(os.path.join(out, "stats"), exist_ok=True)
    for i, t in enumerate(names):
        x, y = data(t, "train")
        xv, yv = data(t, "val")
        xt, yt = data(t, "test")
        # 2. the task's head on frozen base features
        hx = np.sort(np.random.RandomState(args.seed + 200 + i).choice(len(x), args.head_samples, replace=False))
        head, l2, hacc = fit_head(features(base, x[hx]), torch.from_numpy(y[hx]),
                                  features(base, xv[:args.head_val]), torch.from_numpy(yv[:args.head_val]))
        save({"head.weight": head.weight, "head.bias": head.bias}, os.path.join(out, "heads", t + ".safetensors"))
        zs = Classifier(base, CLASSES)
        zs.head = head
        result["zero_shot"]["val"][t] = accuracy(zs, xv, yv)
        result["zero_shot"]["test"][t] = accuracy(zs, xt, yt)
        result["heads"][t] = {"l2": l2, "val": hacc}
        # 3. the expert: encoder fine-tuned through the frozen head
        torch.manual_seed(args.seed + 1 + i)
        enc = build_model(**MODEL)
        enc.load_state_dict(base_sd)
        clf = Classifier(enc, CLASSES)
        clf.head = head
        log("fine-tuning %s (head l2 %g, zero-shot val %.4f)" % (t, l2, result["zero_shot"]["val"][t]))
        train(clf, x, y, args.ft_steps, args.ft_lr, 0.0, args.seed + 1 + i)
        save(enc.state_dict(), os.path.join(out, "experts", t + ".safetensors"))
        # calibration images: from the task's training split, fixed seed
        pick = np.sort(np.random.RandomState(args.seed + 100 + i).choice(len(x), args.calib_samples, replace=False))
        calib[t] = x[pick]
        batches = [torch.from_numpy(calib[t][j:j + 32]) for j in range(0, len(pick), 32)]
        collect_stats.collect_stats(enc, batches, os.path.join(out, "stats", t + ".safetensors"))
        acc = {"val": accuracy(clf, xv, yv), "test": accuracy(clf, xt, yt)}
        result["experts"][t] = acc
        log("%s: expert val %.4f (zero-shot val %.4f)" % (t, acc["val"], result["zero_shot"]["val"][t]))
    tmp = os.path.join(out, ".calib.tmp.npz")
    np.savez(tmp, **calib)
    os.replace(tmp, os.path.join(out, "calib.npz"))

    zoo = {
        "tasks": names, "pretrain_task": zoo_tasks.PRETRAIN if args.pretrain == "original" else "mixture", "model": MODEL, "classes": CLASSES,
        "seed": args.seed, "setting": "per-task linear heads fitted on frozen base features, then frozen; encoder fine-tuned",
        "sizes": {"train": len(raw["train_x"]) - zoo_tasks.VAL_SIZE, "val": zoo_tasks.VAL_SIZE,
                  "test": len(raw["test_x"]), "pretrain_steps": args.pretrain_steps, "ft_steps": args.ft_steps,
                  "batch": 128, "ft_lr": args.ft_lr, "head_samples": args.head_samples,
                  "stats_samples": args.calib_samples},
        "files": {"base": "base.safetensors", "calib": "calib.npz",
                  "experts": {t: "experts/%s.safetensors" % t for t in names},
                  "heads": {t: "heads/%s.safetensors" % t for t in names},
                  "stats": {t: "stats/%s.safetensors" % t for t in names}},
        "accuracy": result, "seconds": round(time.time() - T0, 1),
        "threads": args.threads,
    }
    tmp = os.path.join(out, ".zoo.json.tmp")
    with open(tmp, "w") as f:
        json.dump(zoo, f, indent=1)
    os.replace(tmp, os.path.join(out, "zoo.json"))
    log("wrote %s" % os.path.join(out, "zoo.json"))


if __name__ == "__main__":
    main()

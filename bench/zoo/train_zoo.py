#!/usr/bin/python3
"""Build the model zoo: a base pre-trained on Fashion-MNIST, one expert per task, LOT stats.

  /usr/bin/python3 bench/zoo/train_zoo.py --out bench/zoo/out

Writes DIR/base.safetensors, DIR/experts/<task>.safetensors (float32),
DIR/stats/<task>.safetensors (scripts/collect_stats.py on 64 training samples of the
task, through the expert) and DIR/zoo.json (config, sizes, accuracies, timings).
Experts keep the base's classification head frozen, so every merge shares it.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import collect_stats  # noqa: E402
import safetensors_io  # noqa: E402
import tasks as zoo_tasks  # noqa: E402
from evaluate import accuracy  # noqa: E402
from model import build_model  # noqa: E402

MODEL = {"dim": 64, "depth": 3, "heads": 4, "mlp_ratio": 4, "classes": 10}
T0 = time.time()


def log(msg):
    print("[%6.1fs] %s" % (time.time() - T0, msg), flush=True)


def train(model, x, y, samples, lr, wd, seed, batch=128):
    """AdamW with linear warmup and cosine decay over `samples` examples (reshuffled per pass)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    steps = samples // batch
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
        if (step + 1) % max(1, steps // 4) == 0:
            log("  step %d/%d loss %.3f" % (step + 1, steps, loss.item()))
    model.eval()
    return model


def save(model, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors_io.save_file({k: v.float() for k, v in model.state_dict().items()}, path)


def main():
    ap = argparse.ArgumentParser(description="Train the Fashion-MNIST model zoo.")
    ap.add_argument("--out", required=True, help="output directory (e.g. bench/zoo/out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain-samples", type=int, default=300000, help="examples seen by the base (6 epochs)")
    ap.add_argument("--ft-samples", type=int, default=60000, help="examples seen by each expert")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ft-lr", type=float, default=3e-4)
    ap.add_argument("--stats-samples", type=int, default=64)
    ap.add_argument("--tasks", help="comma-separated subset of tasks (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.tasks.split(",") if args.tasks else zoo_tasks.TASKS
    out = args.out
    raw = zoo_tasks.load_raw(os.path.join(out, "cache"))

    def data(task, split):
        return zoo_tasks.get_split(raw, task, split)

    # 1. base: pre-train on the untransformed images
    torch.manual_seed(args.seed)
    base = build_model(**MODEL)
    x, y = data(zoo_tasks.PRETRAIN, "train")
    log("pre-training base on %s (%d examples)" % (zoo_tasks.PRETRAIN, args.pretrain_samples))
    train(base, x, y, args.pretrain_samples, args.lr, 0.05, args.seed)
    save(base, os.path.join(out, "base.safetensors"))
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    result = {"base": {"val": {}, "test": {}}, "experts": {}}
    for t in [zoo_tasks.PRETRAIN] + names:
        for split in ("val", "test"):
            result["base"][split][t] = accuracy(base, *data(t, split))
    log("base accuracy (val): %s" % json.dumps({k: round(v, 4) for k, v in result["base"]["val"].items()}))

    # 2. experts: fine-tune everything but the head, then collect statistics
    for i, t in enumerate(names):
        torch.manual_seed(args.seed + 1 + i)
        expert = build_model(**MODEL)
        expert.load_state_dict(base_sd)
        expert.head.requires_grad_(False)  # shared head: merged models keep the base's
        x, y = data(t, "train")
        log("fine-tuning %s" % t)
        train(expert, x, y, args.ft_samples, args.ft_lr, 0.0, args.seed + 1 + i)
        assert torch.equal(expert.head.weight, base.head.weight)
        save(expert, os.path.join(out, "experts", t + ".safetensors"))
        pick = np.sort(np.random.RandomState(args.seed + 100 + i).choice(len(x), args.stats_samples, replace=False))
        batches = [torch.from_numpy(x[pick[j:j + 32]]) for j in range(0, len(pick), 32)]
        os.makedirs(os.path.join(out, "stats"), exist_ok=True)
        collect_stats.collect_stats(expert, batches, os.path.join(out, "stats", t + ".safetensors"))
        acc = {s: accuracy(expert, *data(t, s)) for s in ("val", "test")}
        result["experts"][t] = acc
        log("%s: expert val %.4f test %.4f (base val %.4f)" % (t, acc["val"], acc["test"], result["base"]["val"][t]))

    zoo = {
        "tasks": names, "pretrain_task": zoo_tasks.PRETRAIN, "model": MODEL,
        "frozen": ["head.weight", "head.bias"], "seed": args.seed,
        "sizes": {"train": len(raw["train_x"]) - zoo_tasks.VAL_SIZE, "val": zoo_tasks.VAL_SIZE,
                  "test": len(raw["test_x"]), "pretrain_samples": args.pretrain_samples,
                  "ft_samples": args.ft_samples, "stats_samples": args.stats_samples},
        "files": {"base": "base.safetensors",
                  "experts": {t: "experts/%s.safetensors" % t for t in names},
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

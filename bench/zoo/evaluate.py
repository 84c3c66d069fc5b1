#!/usr/bin/python3
"""Accuracy of an encoder checkpoint on every zoo task, each task through its own head.

  /usr/bin/python3 bench/zoo/evaluate.py --model merged.safetensors --zoo bench/zoo/out \
      [--split val|test] [--tasks rot90,edges] [--limit N] [--json]

Accepts F32/F16/BF16 (any float) checkpoints; weights are evaluated in float32.
With --json, prints one JSON object: {"split", "limit", "accuracy": {task: acc}, "mean"}.

  /usr/bin/python3 bench/zoo/evaluate.py --zoo bench/zoo/out --serve

--serve keeps the data loaded and answers one JSON request per stdin line,
{"model": path, "split": "val", "tasks": [...], "limit": N}, with one JSON line
{"accuracy": {...}, "mean": x, "seconds": s} or {"error": "..."} (used by bench/quality.js).
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import safetensors_io  # noqa: E402
import tasks as zoo_tasks  # noqa: E402
from model import Classifier, build_model  # noqa: E402


def load_weights(module, path, what, prefix=""):
    """Load a safetensors checkpoint (its keys minus `prefix`) into module, strictly; a
    misfit names the file."""
    sd = {k[len(prefix):] if k.startswith(prefix) else k: torch.from_numpy(v).float()
          for k, v in safetensors_io.load_file(path).items()}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise SystemExit("evaluate: %s does not fit the zoo %s: %s" % (path, what, str(e).splitlines()[0]))
    return module.eval()


def load_encoder(path, config):
    """Build the zoo encoder from its config and load a safetensors checkpoint (strict)."""
    return load_weights(build_model(**config), path, "encoder")


def task_model(encoder, zoo_dir, zoo, task):
    """The encoder with `task`'s frozen head."""
    clf = Classifier(encoder, zoo.get("classes", 10))
    load_weights(clf.head, os.path.join(zoo_dir, zoo["files"]["heads"][task]), "head", "head.")
    return clf.eval()


def features(encoder, x, batch=2000):
    """Encoder features [N, dim] of numpy images x [N, 28, 28] float32."""
    with torch.no_grad():
        return torch.cat([encoder(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)])


def accuracy(model, x, y, batch=2000):
    """Top-1 accuracy on numpy arrays x [N, 28, 28] float32, y [N]."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            pred = model(torch.from_numpy(x[i:i + batch])).argmax(1)
            correct += int((pred == torch.from_numpy(y[i:i + batch])).sum())
    return correct / max(1, len(x))


def evaluate(path, zoo_dir, zoo, raw, split, names, limit):
    """{task: accuracy} of encoder checkpoint `path` with each task's head, on the first
    `limit` (0: all) examples of `split`."""
    encoder = load_encoder(path, zoo["model"])
    acc = {}
    for t in names:
        x, y = _split(raw, t, split)
        if limit:
            x, y = x[:limit], y[:limit]
        acc[t] = accuracy(task_model(encoder, zoo_dir, zoo, t), x, y)
    return acc


_CACHE = {}


def _split(raw, task, split):
    """Transformed split, cached: --serve evaluates many checkpoints on the same data."""
    key = (task, split)
    if key not in _CACHE:
        _CACHE[key] = zoo_tasks.get_split(raw, task, split)
    return _CACHE[key]


def serve(zoo_dir, zoo, raw):
    for line in sys.stdin:
        if not line.strip():
            continue
        t0 = time.time()
        try:
            req = json.loads(line)
            names = req.get("tasks") or zoo["tasks"]
            acc = evaluate(req["model"], zoo_dir, zoo, raw, req.get("split", "val"), names, int(req.get("limit", 0)))
            res = {"accuracy": acc, "mean": sum(acc.values()) / len(acc), "seconds": round(time.time() - t0, 2)}
        except (Exception, SystemExit) as e:  # one bad checkpoint must not end the session
            res = {"error": str(e).splitlines()[0] if str(e) else type(e).__name__}
        print(json.dumps(res), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Evaluate a checkpoint on the zoo tasks.")
    ap.add_argument("--model", help="checkpoint .safetensors")
    ap.add_argument("--serve", action="store_true", help="answer JSON requests on stdin (see above)")
    ap.add_argument("--zoo", required=True, help="directory written by train_zoo.py")
    ap.add_argument("--split", choices=["val", "test"], default="val")
    ap.add_argument("--tasks", help="comma-separated subset (default: the zoo's tasks)")
    ap.add_argument("--limit", type=int, default=0, help="first N examples per task (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.zoo, "zoo.json")) as f:
        zoo = json.load(f)
    names = args.tasks.split(",") if args.tasks else zoo["tasks"]
    unknown = [t for t in names if t not in zoo_tasks.TRANSFORMS]
    if unknown:
        raise SystemExit("evaluate: unknown task(s) %s" % ",".join(unknown))
    raw = zoo_tasks.load_raw(os.path.join(args.zoo, "cache"))
    if args.serve:
        return serve(args.zoo, zoo, raw)
    if not args.model:
        ap.error("--model is required (or --serve)")
    t0 = time.time()
    acc = evaluate(args.model, args.zoo, zoo, raw, args.split, names, args.limit)
    mean = sum(acc.values()) / len(acc)
    if args.json:
        print(json.dumps({"split": args.split, "limit": args.limit, "accuracy": acc, "mean": mean}))
    else:
        for t, a in acc.items():
            print("%-10s %.4f" % (t, a))
        print("%-10s %.4f  (%s, %.1fs)" % ("mean", mean, args.split, time.time() - t0))


if __name__ == "__main__":
    main()

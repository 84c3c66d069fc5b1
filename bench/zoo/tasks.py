"""Fashion-MNIST tasks: same 10 labels, different fixed input transformations.

Splits: train = first 50k training images, val = last 10k training images,
test = the 10k test images; each passed through the task's transformation.
Data comes from Debian's dataset-fashion-mnist package.
"""
import gzip
import os

import numpy as np

DATA_DIR = "/usr/share/datasets/fashion-mnist"
PRETRAIN = "original"
VAL_SIZE = 10000
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics, for input normalization


def _perm(n, seed):
    """Fixed permutation with no fixed point, so every position really moves."""
    rng = np.random.RandomState(seed)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


_PIX = _perm(49, 1)
_PATCH = _perm(16, 2)


def _pixperm(x):
    """Same fixed shuffle of the 49 pixels inside every 7x7 patch."""
    n = len(x)
    p = x.reshape(n, 4, 7, 4, 7).transpose(0, 1, 3, 2, 4).reshape(n, 4, 4, 49)[..., _PIX]
    return p.reshape(n, 4, 4, 7, 7).transpose(0, 1, 3, 2, 4).reshape(n, 28, 28)


def _patchperm(x):
    """Fixed shuffle of the 16 patch positions (patch contents unchanged)."""
    n = len(x)
    p = x.reshape(n, 4, 7, 4, 7).transpose(0, 1, 3, 2, 4).reshape(n, 16, 7, 7)[:, _PATCH]
    return p.reshape(n, 4, 4, 7, 7).transpose(0, 1, 3, 2, 4).reshape(n, 28, 28)


def _edges(x):
    """Sobel gradient magnitude: outlines instead of filled shapes."""
    f = np.pad(x.astype(np.float32) / 255.0, ((0, 0), (1, 1), (1, 1)))
    gx = (f[:, :-2, 2:] + 2 * f[:, 1:-1, 2:] + f[:, 2:, 2:]) - (f[:, :-2, :-2] + 2 * f[:, 1:-1, :-2] + f[:, 2:, :-2])
    gy = (f[:, 2:, :-2] + 2 * f[:, 2:, 1:-1] + f[:, 2:, 2:]) - (f[:, :-2, :-2] + 2 * f[:, :-2, 1:-1] + f[:, :-2, 2:])
    return np.clip(np.sqrt(gx * gx + gy * gy) / 4.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)


# name -> transformation of uint8 images [N, 28, 28]
TRANSFORMS = {
    PRETRAIN: lambda x: x,
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: x[:, ::-1, ::-1],
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "vflip": lambda x: x[:, ::-1, :],
    "invert": lambda x: 255 - x,
    "pixperm": _pixperm,
    "patchperm": _patchperm,
    "edges": _edges,
}
TASKS = [t for t in TRANSFORMS if t != PRETRAIN]  # the fine-tuning tasks


def _read_idx(name):
    with gzip.open(os.path.join(DATA_DIR, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_raw(cache_dir=None):
    """Untransformed uint8 images and int64 labels; cached as .npy (fast reload)."""
    path = os.path.join(cache_dir, "fashion_mnist.npz") if cache_dir else None
    if path and os.path.exists(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    raw = {
        "train_x": _read_idx("train-images-idx3-ubyte.gz"),
        "train_y": _read_idx("train-labels-idx1-ubyte.gz").astype(np.int64),
        "test_x": _read_idx("t10k-images-idx3-ubyte.gz"),
        "test_y": _read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64),
    }
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **raw)
        os.replace(tmp, path)
    return raw


def pretrain_mixture(raw, seed=0):
    """The base's pre-training set: the training split cut into one slice per domain (the
    untransformed images and every task's transformation), each slice transformed by its
    domain, shuffled; so the base has seen every input distribution, as a broadly
    pre-trained model has, but was never tuned to a task's head."""
    domains = list(TRANSFORMS)
    cut = len(raw["train_x"]) - VAL_SIZE
    order = np.random.RandomState(seed).permutation(cut)
    xs, ys = [], []
    for i, name in enumerate(domains):
        idx = np.sort(order[i::len(domains)])
        xs.append(np.ascontiguousarray(TRANSFORMS[name](raw["train_x"][idx])))
        ys.append(raw["train_y"][idx])
    mix = np.random.RandomState(seed + 1).permutation(cut)
    u8, y = np.concatenate(xs)[mix], np.concatenate(ys)[mix]
    return (u8.astype(np.float32) / 255.0 - MEAN) / STD, y


def get_split(raw, task, split):
    """(float32 normalized images [N, 28, 28], int64 labels [N]) of one task and split."""
    if split == "test":
        x, y = raw["test_x"], raw["test_y"]
    elif split in ("train", "val"):
        cut = len(raw["train_x"]) - VAL_SIZE
        sl = slice(0, cut) if split == "train" else slice(cut, None)
        x, y = raw["train_x"][sl], raw["train_y"][sl]
    else:
        raise ValueError("split must be train, val or test, not %r" % split)
    u8 = np.ascontiguousarray(TRANSFORMS[task](x))
    return (u8.astype(np.float32) / 255.0 - MEAN) / STD, y

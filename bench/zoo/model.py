"""Small pre-LN vision transformer encoder for 28x28 images, and its task classifier.

The encoder (what the zoo merges) maps images to features, like CLIP's image tower; each
task has its own linear head on those features, kept outside the merged checkpoints, like
CLIP's zero-shot text heads. Every weight matrix is an nn.Linear (attention q/k/v/o
included) and every norm an nn.LayerNorm, so LOT/RegMean statistics from
scripts/collect_stats.py cover all of them.
"""
import math

import torch
import torch.nn as nn

PATCH = 7  # 28x28 -> 4x4 grid of 7x7 patches


def patchify(x):
    """[N, 28, 28] -> [N, 16, 49], patches in row-major grid order."""
    n, g = x.shape[0], x.shape[1] // PATCH
    x = x.reshape(n, g, PATCH, g, PATCH).permute(0, 1, 3, 2, 4)
    return x.reshape(n, g * g, PATCH * PATCH)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads

        def split(y):
            return y.reshape(n, t, h, d // h).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        return self.o((a @ v).transpose(1, 2).reshape(n, t, d))


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_ratio * dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class PatchEncoder(nn.Module):
    """Images [N, 28, 28] -> features [N, dim] (final LayerNorm of the class token)."""

    def __init__(self, dim=64, depth=3, heads=4, mlp_ratio=4):
        super().__init__()
        tokens = (28 // PATCH) ** 2
        self.patch_embed = nn.Linear(PATCH * PATCH, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, images):
        x = self.patch_embed(patchify(images))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.norm(x[:, 0])


class Classifier(nn.Module):
    """Encoder + one task's linear head (the head's keys are head.weight / head.bias)."""

    def __init__(self, encoder, classes=10):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.norm.normalized_shape[0], classes)

    def forward(self, images):
        return self.head(self.encoder(images))


def build_model(**kwargs):
    """The encoder; factory used by train_zoo.py, evaluate.py, collect.py and
    scripts/collect_stats.py --factory."""
    return PatchEncoder(**kwargs)

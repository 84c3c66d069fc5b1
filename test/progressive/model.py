"""The small model of the progressive-merge tests: embed -> residual MLP blocks (LayerNorm,
fc1, tanh, fc2) -> head, in float64. Shared by the collector (scripts/collect_stats.py) and
the reference loop (reference.py); make1/make2 build it with one or two blocks."""
import torch
import torch.nn as nn

IN, E, H, OUT = 5, 6, 7, 3


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(E)
        self.fc1 = nn.Linear(E, H)
        self.fc2 = nn.Linear(H, E)

    def forward(self, x):
        return x + self.fc2(torch.tanh(self.fc1(self.ln(x))))


class Net(nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.embed = nn.Linear(IN, E)
        self.blocks = nn.ModuleList([Block() for _ in range(depth)])
        self.head = nn.Linear(E, OUT)

    def forward(self, x):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


def make1():
    return Net(1).double()


def make2():
    return Net(2).double()

"""Writes a base, two experts (base + noise) and each expert's calibration inputs into DIR."""
import sys
import numpy as np
import torch

sys.path.insert(0, sys.argv[1])  # scripts/
sys.path.insert(0, sys.argv[2])  # this folder
import safetensors_io  # noqa: E402
import model  # noqa: E402

out, depth = sys.argv[3], int(sys.argv[4])
g = torch.Generator().manual_seed(7)
base = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) * 0.5 for k, v in model.Net(depth).double().state_dict().items()}
for k in base:
    if k.endswith("ln.weight"):
        base[k] = 1 + 0.2 * base[k]
safetensors_io.save_file(base, out + "/base.safetensors")
for name in ("a", "b"):
    safetensors_io.save_file({k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in base.items()},
                             out + "/%s.safetensors" % name)
    np.save(out + "/inputs_%s.npy" % name, (torch.randn(4, 5, model.IN, generator=g, dtype=torch.float64) * (1.5 if name == "b" else 1)).numpy())

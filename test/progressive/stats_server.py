"""A long-lived collector for the library test: one torch import, then one request a line on
stdin ({"model", "expert", "keys", "out"} as JSON), answered "ok" or "error: ..." on stdout.
It runs scripts/collect_stats.py's collect_stats() on the partial checkpoint, keys only."""
import json
import sys
import numpy as np
import torch

sys.path.insert(0, sys.argv[1])  # scripts/
sys.path.insert(0, sys.argv[2])  # this folder
import collect_stats  # noqa: E402
import safetensors_io  # noqa: E402
import model as M  # noqa: E402

data, depth = sys.argv[3], int(sys.argv[4])
for line in sys.stdin:
    try:
        req = json.loads(line)
        net = M.Net(depth).double()
        net.load_state_dict({k: torch.from_numpy(v) for k, v in safetensors_io.load_file(req["model"]).items()}, strict=True)
        x = torch.from_numpy(np.load("%s/inputs_%s.npy" % (data, req["expert"])))
        collect_stats.collect_stats(net, [x], req["out"], keys=req["keys"])
        print("ok", flush=True)
    except Exception as e:  # reported to the test, which fails
        print("error: %r" % (e,), flush=True)

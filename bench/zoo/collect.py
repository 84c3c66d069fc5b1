#!/usr/bin/python3
"""Statistics of one layer group for progressive LOT / RegMean on the zoo (`--stats-command`).

  /usr/bin/python3 bench/zoo/collect.py --zoo bench/zoo/out \
      --model {model} --expert {expert} --keys {keys} --out {out} [--socket PATH]

Runs the 64 calibration images of the expert's task (DIR/calib.npz, written by
train_zoo.py) through the encoder loaded from --model (the partially merged checkpoint)
and writes, in the statistics format of scripts/collect_stats.py, the input Grams / norm
statistics of only the modules whose weights are listed in --keys (one key a line), with
scripts/collect_stats.py's collect_stats(..., keys).

It runs once per group and expert, so importing torch (1-3 s) each time would dominate:

  /usr/bin/python3 bench/zoo/collect.py --zoo bench/zoo/out --serve --socket PATH

keeps torch and the images loaded and answers requests on a Unix socket (one JSON line
{"model", "expert", "keys": file or list of keys, "out"} -> {"ok": true} or {"error": "..."}); with --socket the
command above only forwards its request there (no torch import). bench/quality.js starts
the server and sends the library's collectStats requests to it the same way. The server
exits when its standard input closes.
"""
import argparse
import json
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class Collector:
    """Torch, the zoo config and the calibration images, loaded once."""

    def __init__(self, zoo_dir, threads=1):
        for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before torch loads
            os.environ.setdefault(v, str(threads))
        import numpy as np
        import torch
        sys.path.insert(0, HERE)
        sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
        import collect_stats
        from evaluate import load_encoder
        torch.set_num_threads(threads)
        self.torch, self.cs, self.load_encoder = torch, collect_stats, load_encoder
        with open(os.path.join(zoo_dir, "zoo.json")) as f:
            self.zoo = json.load(f)
        with np.load(os.path.join(zoo_dir, self.zoo["files"]["calib"])) as z:
            self.calib = {t: z[t] for t in z.files}

    def collect(self, model, expert, keys, out):
        if expert not in self.calib:
            raise ValueError("no calibration images for expert %r (zoo tasks: %s)" % (expert, ", ".join(self.calib)))
        if isinstance(keys, str):  # a keys file (the command line) or the list itself (a server request)
            with open(keys) as f:
                keys = f.read().splitlines()
        keys = [k.strip() for k in keys if k.strip()]
        encoder = self.load_encoder(model, self.zoo["model"])
        images = self.calib[expert]
        batches = [self.torch.from_numpy(images[i:i + 32]) for i in range(0, len(images), 32)]
        return len(self.cs.collect_stats(encoder, batches, out, "f64", keys))


def serve(zoo_dir, path, threads):
    import socketserver
    import threading
    collector = Collector(zoo_dir, threads)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                req = json.loads(self.rfile.readline())
                n = collector.collect(req["model"], req["expert"], req["keys"], req["out"])
                res = {"ok": True, "modules": n}
            except Exception as e:  # one bad request must not end the server
                res = {"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}
            self.wfile.write((json.dumps(res) + "\n").encode())

    if os.path.exists(path):
        os.unlink(path)
    server = socketserver.UnixStreamServer(path, Handler)
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if os.path.exists(path):  # the caller may have removed its folder already
            os.unlink(path)


def forward(path, req):
    """Send one request to a running server; returns its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data) if data else {"error": "collect server closed the connection"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", required=True, help="directory written by train_zoo.py")
    ap.add_argument("--model", help="partially merged encoder checkpoint (.safetensors)")
    ap.add_argument("--expert", help="expert (= task) name")
    ap.add_argument("--keys", help="text file of the group's weight keys, one a line")
    ap.add_argument("--out", help="statistics file to write")
    ap.add_argument("--socket", help="Unix socket of a --serve process")
    ap.add_argument("--serve", action="store_true", help="serve requests on --socket")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.serve:
        if not args.socket:
            ap.error("--serve needs --socket")
        return serve(args.zoo, args.socket, args.threads)
    missing = [n for n in ("model", "expert", "keys", "out") if not getattr(args, n)]
    if missing:
        ap.error("missing --" + ", --".join(missing))
    req = {"model": os.path.abspath(args.model), "expert": args.expert,
           "keys": os.path.abspath(args.keys), "out": os.path.abspath(args.out)}
    if args.socket:
        res = forward(args.socket, req)
        if "error" in res:
            sys.exit("collect: %s" % res["error"])
    else:
        Collector(args.zoo, args.threads).collect(**req)


if __name__ == "__main__":
    main()

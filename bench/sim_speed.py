"""Benchmark 1: simulation speed of the golden engines.

* golden integer engine vs Lava's ``Loihi2SimCfg(select_tag='fixed_pt')`` on the
  same compiled network and input, checked bit-exact on the samples both ran;
  throughput in sample-steps per second (goal: ratio >= 1000x);
* golden float engine vs the source PyTorch model's own forward on the same
  input (goal: not slower).

Golden engines and PyTorch: fastest of several runs; Lava: one run including
its process build (~0.1 s per process), as a user would see it.

Run from the repository root: ``python -m bench.sim_speed [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import npuc
from bench.common import Table, machine
from npuc.ir import LIF, Dense, Graph, Input, Output
from npuc.sim import simulate


def mlp_graph(widths: list[int], steps: int, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("speed_mlp", num_steps=steps)
    g.add("x", Input((widths[0],)))
    prev = "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        g.add(f"fc{i}", Dense(rng.normal(0, 1.5 / np.sqrt(a), (b, a)).astype(np.float32)), [prev])
        prev = g.add(f"lif{i}", LIF(alpha=0.9, threshold=1.0, reset="value"), [f"fc{i}"])
    g.add("out", Output(), [prev])
    return g.verify()


def best_of(n: int, fn):
    """Fastest of ``n`` runs (the least disturbed by other load) and the last result."""
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def int_vs_lava(quick: bool) -> list[dict]:
    steps = 20 if quick else 50
    widths = [64, 64, 64, 10]
    g = mlp_graph(widths, steps)
    rng = np.random.default_rng(1)
    lava_samples = 2 if quick else 16
    int_samples = 256 if quick else 4096
    x = rng.random((int_samples, widths[0])).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        hw = npuc.compile(g, x[:256], target="loihi2", out=Path(tmp) / "b")
        qg = hw.quantized("loihi2")
        simulate(qg, x[:8], "int")  # warm-up
        t_int, ref = best_of(5, lambda: simulate(qg, x, "int"))
        t0 = time.perf_counter()
        lava = hw.simulate(x[:lava_samples], "lava")
        t_lava = time.perf_counter() - t0
    exact = bool(np.array_equal(lava, ref.output[:, :lava_samples]))
    int_rate = int_samples * steps / t_int
    lava_rate = lava_samples * steps / t_lava
    return [
        {"engine": "golden int (npuc)", "samples": int_samples, "steps": steps, "seconds": t_int,
         "sample-steps/s": int_rate, "ratio": int_rate / lava_rate, "bit-exact": exact},
        {"engine": "Lava fixed_pt (CPU)", "samples": lava_samples, "steps": steps, "seconds": t_lava,
         "sample-steps/s": lava_rate, "ratio": 1.0, "bit-exact": exact},
    ]


def float_vs_pytorch(quick: bool) -> list[dict]:
    """The golden float engine against the traced PyTorch model's own forward."""
    from npuc.frontends import trace
    from npuc.nn import LIF as NnLIF

    steps, batch = (10, 32) if quick else (25, 256)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.lif1 = torch.nn.Linear(64, 128), NnLIF(alpha=0.9, threshold=1.0)
            self.fc2, self.lif2 = torch.nn.Linear(128, 10), NnLIF(alpha=0.9, threshold=1.0)

        def forward(self, x):  # x: [T, B, 64]
            return self.lif2(self.fc2(self.lif1(self.fc1(x))))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.rand(steps, batch, 64)
    g = trace(net, x.numpy())
    with torch.no_grad():
        net(x)
        t_torch, want = best_of(25, lambda: net(x))
    simulate(g, x.numpy())
    t_sim, res = best_of(25, lambda: simulate(g, x.numpy()))
    got = res.output
    exact = bool(np.array_equal(got, want.numpy()))
    n = steps * batch
    return [
        {"engine": "PyTorch forward (source model)", "samples": batch, "steps": steps, "seconds": t_torch,
         "sample-steps/s": n / t_torch, "ratio": 1.0, "bit-exact": exact},
        {"engine": "golden float (npuc)", "samples": batch, "steps": steps, "seconds": t_sim,
         "sample-steps/s": n / t_sim, "ratio": t_torch / t_sim, "bit-exact": exact},
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a CI smoke run")
    args = ap.parse_args(argv)
    rows = int_vs_lava(args.quick) + float_vs_pytorch(args.quick)
    Table("Simulation speed " + machine(), ["engine", "samples", "steps", "seconds", "sample-steps/s", "ratio", "bit-exact"]).print(rows)
    return rows


if __name__ == "__main__":
    main()

"""Benchmark 1: simulation speed of the golden engines.

* golden integer engine vs Lava's ``Loihi2SimCfg(select_tag='fixed_pt')`` on the
  same compiled network and input, checked bit-exact on the samples both ran;
  throughput in sample-steps per second (goal: ratio >= 1000x);
* golden float engine vs the source PyTorch model's own forward on the same
  input (goal: not slower);
* RTL simulation: simulated cycles per second of the cocotb testbench (the path
  before issue 17) and of the compiled C++ harness (one process, and one per
  core), on the 784-128-10 MLP and a conv network, checked bit-exact (outputs
  and cycle counts) against each other (goal: >= 10x).

Golden engines and PyTorch: fastest of several runs; Lava: one run including
its process build (~0.1 s per process), as a user would see it.

Run from the repository root: ``python -m bench.sim_speed [--quick] [--rtl-only]``.
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


class ConvNet(torch.nn.Module):
    """Rate-coded 28x28 digits -> conv 5x5/2 (8 ch) -> LIF -> max pool 2 -> dense 10 -> LIF."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        from npuc.nn import LIF as NnLIF
        from npuc.nn import RateEncoder

        self.encode = RateEncoder(steps)
        self.conv, self.lif1 = torch.nn.Conv2d(1, 8, 5, stride=2), NnLIF(alpha=0.9, threshold=1.0, reset="value")
        self.pool = torch.nn.MaxPool2d(2)
        self.fc, self.lif2 = torch.nn.Linear(8 * 6 * 6, 10), NnLIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x):
        spikes = self.encode(x)  # [T, B, 1, 28, 28]
        steps, batch = spikes.shape[:2]
        c = self.conv(spikes.flatten(0, 1)).unflatten(0, (steps, batch))
        s = self.pool(self.lif1(c).flatten(0, 1)).unflatten(0, (steps, batch))
        return self.lif2(self.fc(s.flatten(2))).sum(0)


def _rtl_rate(art: Path, x: np.ndarray, engine: str, procs: int | None = None) -> tuple[float, dict, object]:
    from npuc.backends.rtl import run as rtl_run

    res = rtl_run(art, x, progress=False, engine=engine, procs=procs)
    return res.stats["rtl"]["cycles_per_second"], res.stats["rtl"], res


def rtl_cocotb_vs_harness(quick: bool) -> list[dict]:
    """Simulated cycles/s: cocotb testbench vs compiled harness on the same builds and inputs."""
    from bench.rtl_efficiency import MLP784, STEPS, digits28
    from npuc.backends.rtl.sim import harness_procs

    x, _ = digits28()
    designs = [("784-128-10 MLP", MLP784(), x, "fpga"),
               ("conv 8x5x5/2 + pool + dense", ConvNet(STEPS), x.reshape(-1, 1, 28, 28), "fpga:lanes=4")]
    n_cocotb, n_harness = (2, 8) if quick else (8, 256)
    rows = []
    for name, model, data, target in designs:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            npuc.compile(model, data[:100], target=target, out=Path(tmp) / "b")
            art = Path(tmp) / "b" / "rtl"
            xs = data[1000:1000 + n_harness]
            _rtl_rate(art, xs[:1], "cocotb")  # builds (cached), not timed
            _rtl_rate(art, xs[:1], "harness")
            slow, st_slow, r_slow = _rtl_rate(art, xs[:n_cocotb], "cocotb")
            one, st_one, r_one = _rtl_rate(art, xs, "harness", procs=1)
            par, st_par, r_par = _rtl_rate(art, xs, "harness")
        exact = bool(np.array_equal(r_one.output[:n_cocotb], r_slow.output)  # outputs [B, 10] (summed)
                     and np.array_equal(st_one["step_cycles"][:, :n_cocotb], st_slow["step_cycles"])
                     and np.array_equal(r_par.output, r_one.output)
                     and np.array_equal(st_par["step_cycles"], st_one["step_cycles"]))
        cps = st_one["cycles_per_step"]
        for engine, samples, rate, st in (("cocotb (before)", n_cocotb, slow, st_slow),
                                          ("harness, 1 process", n_harness, one, st_one),
                                          (f"harness, {harness_procs(n_harness)} processes", n_harness, par, st_par)):
            rows.append({"design": name, "engine": engine, "samples": samples, "steps": STEPS,
                         "cycles/step": cps, "seconds": st["sim_seconds"], "cycles/s": rate,
                         "ratio": rate / slow, "bit-exact": exact})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a CI smoke run")
    ap.add_argument("--rtl-only", action="store_true", help="only the RTL cocotb-vs-harness table")
    args = ap.parse_args(argv)
    rows = []
    if not args.rtl_only:
        rows = int_vs_lava(args.quick) + float_vs_pytorch(args.quick)
        Table("Simulation speed " + machine(),
              ["engine", "samples", "steps", "seconds", "sample-steps/s", "ratio", "bit-exact"]).print(rows)
    rtl = rtl_cocotb_vs_harness(args.quick)
    Table("RTL simulation speed (Verilator; simulated cycles per second) " + machine(),
          ["design", "engine", "samples", "steps", "cycles/step", "seconds", "cycles/s", "ratio", "bit-exact"]).print(rtl)
    return rows + rtl


if __name__ == "__main__":
    main()

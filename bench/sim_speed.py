"""Benchmark 1: simulation speed of the golden engines, Lava and (later) RTL, on models written the
way the libraries' tutorials write them (tests/models/).

Per model, in sample-steps per second and as a ratio to the source model's own PyTorch forward
on the same input (goal: >= 1.0x for both golden engines, at batch 1 and at a large batch):

* PyTorch forward (the model's ``forward``, ``torch.no_grad``);
* golden float engine (bit-exact to that forward: checked on the large batch);
* golden integer engine (every overflow check in place; a check is skipped only where the layer's
  bounds prove it idle);
* Lava ``Loihi2SimCfg(select_tag='fixed_pt')``: several samples streamed through one network
  build; the steady state (runtime up, all but the first step) is timed apart from the process
  build (processes created, compiled, runtime started, first step), checked bit-exact against
  the integer engine; ``int / Lava`` compares the integer engine at the large batch with Lava's
  steady state (goal: >= 1000x);
* RTL (a table of its own): simulated cycles per second of the cocotb testbench (the path before
  issue 17) and of the compiled C++ harness (one process, and one per core), on the 784-128-10
  MLP and a conv network, checked bit-exact (outputs and cycle counts) against each other
  (goal: >= 10x).

Timing: the VM's 2 cores are shared, so every engine runs in interleaved rounds and each keeps
its best round; the load average is printed with the table. ``--cpu-time`` times the rounds by
process CPU time instead of wall time (with ``--threads 1``: steadier while other jobs run).

A second table shows memory: the integer engine evaluating a memory-mapped data set in chunks
(``npuc.sim.simulate_chunks``) in a fresh process, its peak RSS against the data set's size.

Run from the repository root: ``python -m bench.sim_speed [--quick] [--only NAME ...] [--threads N] [--cpu-time]
[--json F] [--rtl-only | --no-rtl]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import npuc
from bench.common import Table, machine
from npuc.backends import run_engine
from npuc.builddir import BuildDir
from npuc.frontends import trace
from npuc.sim import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from models import shd_models as shd  # noqa: E402
from models import zoo_models as zoo  # noqa: E402
from models import zoo_snntorch as zsn  # noqa: E402


def _spikes(shape: tuple[int, ...], p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


def _speck(batch: int) -> torch.nn.Module:
    torch.manual_seed(0)  # the same weights at every batch size (IAFSqueeze is built for one)
    m = zoo.SpeckNet(batch, side=32)
    with torch.no_grad():
        m.seq[10].weight.mul_(4.0)  # drive the classifier layer enough to spike
    return m


def _seeded(make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(0)
    return make()


@dataclass
class Model:
    name: str
    source: str
    make: Callable[[int], torch.nn.Module]  # batch -> model (most ignore the batch)
    data: Callable[[int, int], np.ndarray]  # (batch, seed) -> input as the forward takes it
    steps: int
    large: int  # the large batch
    batch_axis: int = 1


MODELS = [
    Model("snntorch MLP 64-96-10 (Leaky)", "snntorch tutorial 5", lambda b: zsn.spiking_mlp(),
          lambda b, s: _spikes((16, b, 64), 0.3, s), 16, 4000),
    Model("snntorch CSNN 28x28 (conv, max pool, Leaky)", "snntorch tutorials 6/7", lambda b: zsn.spiking_csnn(),
          lambda b, s: zsn.rate_images(b, seed=s).numpy(), 25, 1000),
    Model("SpikingJelly CSNN 28x28 (multi-step IF)", "SpikingJelly conv_fashion_mnist example",
          lambda b: zoo.sj_csnn(), lambda b, s: np.random.default_rng(s).random((b, 1, 28, 28)).astype(np.float32),
          4, 1000, batch_axis=0),
    Model("sinabs Speck net 2x32x32 (IAFSqueeze)", "sinabs / Speck deployment", _speck,
          lambda b, s: _spikes((b, 8, 2, 32, 32), 0.1, s), 8, 1000, batch_axis=0),
    Model("norse LIFRecurrentCell 700-128-20", "norse SHD example", lambda b: _seeded(lambda: shd.spiking(shd.NorseSHD())),
          lambda b, s: _spikes((50, b, 700), 0.05, s), 50, 1000),
]


def _first(out: Any) -> np.ndarray:
    """The first output of a forward (the spikes of a ``(spk, mem)`` tuple) as numpy."""
    return (out[0] if isinstance(out, tuple) else out).numpy()


CLOCK = time.perf_counter
"""The timer of `rounds`: wall time, or (``--cpu-time``) this process's CPU time, which other jobs
on a shared machine disturb far less (with one torch thread every engine runs on one core)."""


def rounds(fns: dict[str, Callable[[], Any]], n: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each function's best time over ``n`` interleaved rounds, and its last result."""
    best = {k: float("inf") for k in fns}
    last: dict[str, Any] = {}
    for _ in range(n):
        for k, fn in fns.items():
            t0 = CLOCK()
            last[k] = fn()
            best[k] = min(best[k], CLOCK() - t0)
    return best, last


def reset(model: torch.nn.Module) -> None:
    """Clear the state a SpikingJelly or sinabs model keeps between calls, as their training loops do
    before each batch (snntorch and norse models here start from fresh state in ``forward``)."""
    from spikingjelly.activation_based import base

    for mod in model.modules():
        if isinstance(mod, base.MemoryModule):
            mod.reset()
        elif hasattr(mod, "reset_states") and mod is not model:
            mod.reset_states()


def _engines(model: torch.nn.Module, graph, qgraph, x: np.ndarray) -> dict[str, Callable[[], Any]]:
    xt = torch.from_numpy(x)

    def forward():
        reset(model)
        with torch.no_grad():
            return model(xt)

    return {"torch": forward, "float": lambda: simulate(graph, x, "float"), "int": lambda: simulate(qgraph, x, "int")}


def measure(m: Model, quick: bool, lava_samples: int) -> dict[str, Any]:
    large = 64 if quick else m.large
    n_rounds = (2, 2) if quick else (12, 3)
    x_cal = m.data(16, 0)
    graph = trace(m.make(16), x_cal)
    row: dict[str, Any] = {"model": m.name, "T": m.steps, "large batch": large}
    with tempfile.TemporaryDirectory() as tmp:
        hw = npuc.compile(graph, x_cal, target="loihi2", out=Path(tmp) / "b")
        qgraph = hw.quantized("loihi2")
        for label, batch, n in (("b1", 1, n_rounds[0]), ("large", large, n_rounds[1])):
            x = m.data(batch, 1)
            t, last = rounds(_engines(m.make(batch), graph, qgraph, x), n)
            sample_steps = batch * m.steps
            row[f"PyTorch {label} ss/s"] = sample_steps / t["torch"]
            row[f"float {label} x"] = t["torch"] / t["float"]
            row[f"int {label} x"] = t["torch"] / t["int"]
            if label == "large":
                row["float exact"] = bool(np.array_equal(last["float"].outputs[0], _first(last["torch"])))
                int_rate = sample_steps / t["int"]
        x_lava = m.data(lava_samples, 1)
        lava = run_engine(BuildDir(hw.path), "lava", [x_lava])
        timing = lava.stats.get("lava", {})
        steady = timing.get("steady_us", 0) / 1e6
        ref = simulate(qgraph, x_lava, "int").outputs[0]
        row["Lava exact"] = bool(np.array_equal(lava.outputs[0], ref))
        row["Lava build s"] = timing.get("build_us", 0) / 1e6
        row["Lava steps/s"] = timing.get("steps_per_s")
        lava_rate = lava_samples * m.steps / steady if steady else float("nan")
        row["Lava x"] = lava_rate / row["PyTorch large ss/s"]
        row["int / Lava"] = int_rate / lava_rate
    return row


MEMORY_CODE = """
import sys, time
import numpy as np
import torch
from npuc.builddir import BuildDir
from npuc.sim import simulate_chunks

def hwm():  # this process's peak RSS in KiB (VmHWM: ru_maxrss would include the parent's before exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))

if int(sys.argv[4]):
    torch.set_num_threads(int(sys.argv[4]))
base = hwm()
graph = BuildDir(sys.argv[1]).int_graph(None)
x = np.load(sys.argv[2], mmap_mode="r")
counts = np.zeros(10, dtype=np.int64)
t0 = time.perf_counter()
for lo, hi, res in simulate_chunks(graph, x, "int", chunk=int(sys.argv[3])):
    counts += res.outputs[0].sum((0, 1))
print(base, hwm(), int(counts.sum()), time.perf_counter() - t0)
"""


def memory(quick: bool, samples: int | None = None, threads: int = 0) -> dict[str, Any]:
    """Peak RSS of a fresh process evaluating ``samples`` rate-coded samples of the MLP from a
    memory-mapped ``.npy`` (uint8 spikes) in chunks of 4,096."""
    n = samples or (2_000 if quick else 100_000)
    m = MODELS[0]
    x_cal = m.data(16, 0)
    with tempfile.TemporaryDirectory() as tmp:
        hw = npuc.compile(trace(m.make(16), x_cal), x_cal, target="loihi2", out=Path(tmp) / "b")
        path = Path(tmp) / "data.npy"
        data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(m.steps, n, 64))
        for lo in range(0, n, 50_000):  # written in slices: this process stays small too
            hi = min(n, lo + 50_000)
            data[:, lo:hi] = m.data(hi - lo, lo).astype(np.uint8)
        data.flush()
        del data
        out = subprocess.run([sys.executable, "-c", MEMORY_CODE, str(hw.path), str(path), "4096", str(threads)],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"memory run failed: {out.stderr[-2000:]}")
        fields = out.stdout.split()
        base, peak, spikes, seconds = int(fields[0]), int(fields[1]), int(fields[2]), float(fields[3])
    return {"model": m.name, "samples": n, "data MB": path_size_mb(m.steps * n * 64),
            "RSS after imports MB": base / 1024, "peak RSS MB": peak / 1024, "seconds (simulation)": seconds,
            "sample-steps/s": n * m.steps / seconds, "output spikes": spikes}


def path_size_mb(nbytes: int) -> float:
    return nbytes / 2**20


COLUMNS = ["model", "T", "large batch", "PyTorch b1 ss/s", "float b1 x", "int b1 x", "PyTorch large ss/s",
           "float large x", "int large x", "float exact", "Lava build s", "Lava steps/s", "Lava x", "int / Lava",
           "Lava exact", "RTL cycles/s", "RTL x"]
MEMORY_COLUMNS = ["model", "samples", "data MB", "RSS after imports MB", "peak RSS MB", "seconds (simulation)", "sample-steps/s"]


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
    ap.add_argument("--quick", action="store_true", help="one small model at tiny sizes (the CI smoke run)")
    ap.add_argument("--only", nargs="*", help="substrings of model names")
    ap.add_argument("--lava-samples", type=int, default=None, help="samples per Lava build (default 4; quick 1)")
    ap.add_argument("--memory-samples", type=int, default=None, help="samples of the memory run (default 100,000)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every engine (default: torch's own; 1 is steadier on a loaded machine)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the engines by process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--rtl-only", action="store_true", help="only the RTL cocotb-vs-harness table")
    ap.add_argument("--no-rtl", action="store_true", help="skip the RTL table")
    args = ap.parse_args(argv)
    rtl = [] if args.no_rtl else rtl_table(args.quick)
    if args.rtl_only:
        return rtl
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    models = MODELS[:1] if args.quick else MODELS
    if args.only:
        models = [m for m in models if any(s in m.name for s in args.only)]
    lava_samples = args.lava_samples or (1 if args.quick else 4)
    rows = []
    for m in models:
        print(f"... {m.name}", flush=True)
        rows.append(measure(m, args.quick, lava_samples))
    load = os.getloadavg()[0]
    threads = torch.get_num_threads()
    clock = "CPU time" if args.cpu_time else "wall time"
    table = Table(f"Simulation speed {machine()}, {threads} torch thread(s), {clock}, load {load:.1f}; "
                  "ss/s = sample-steps/s, x = vs PyTorch", COLUMNS)
    table.print(rows)
    print(table.markdown(rows))
    mem = [memory(args.quick, args.memory_samples, args.threads or 0)]
    mem_table = Table("Integer engine on a memory-mapped data set, chunks of 4,096 (fresh process)", MEMORY_COLUMNS)
    mem_table.print(mem)
    print(mem_table.markdown(mem))
    if args.json:
        Path(args.json).write_text(json.dumps({"speed": rows, "memory": mem, "load": load, "clock": clock}, indent=1, default=str) + "\n")
    return rows + mem + rtl


def rtl_table(quick: bool) -> list[dict]:
    rtl = rtl_cocotb_vs_harness(quick)
    table = Table("RTL simulation speed (Verilator; simulated cycles per second) " + machine(),
                  ["design", "engine", "samples", "steps", "cycles/step", "seconds", "cycles/s", "ratio", "bit-exact"])
    table.print(rtl)
    print(table.markdown(rtl))
    return rtl


if __name__ == "__main__":
    main()

"""Benchmark 1: simulation speed of the golden engines, Lava and RTL, on models written the
way the libraries' tutorials write them (tests/models/).

Per model, in sample-steps per second and as a ratio to the source model's own PyTorch forward
on the same input (goal: >= 1.0x for both golden engines, at batch 1 and at a large batch):

* PyTorch forward (the model's ``forward``, ``torch.no_grad``);
* golden float engine (bit-exact to that forward: checked on the large batch);
* golden integer engine (every overflow check in place; a check is skipped only where the layer's
  bounds prove it idle; a large batch runs in as many threads as torch has, one part each);
* Lava ``Loihi2SimCfg(select_tag='fixed_pt')``: several samples streamed through one network
  build; the steady state (runtime up, all but the first step) is timed apart from the process
  build (processes created, compiled, runtime started, first step), checked bit-exact against
  the integer engine; ``int / Lava`` compares the integer engine at the large batch with Lava's
  steady state (goal: >= 1000x);
* RTL (a table of its own): each model compiled for ``fpga`` (the default target), simulated
  cycles per second of the cocotb testbench (the path before issue 17) and of the compiled C++
  harness (one process, and one per usable core), outputs checked against the integer engine and
  cycle counts between the testbenches (goal: >= 10x). Rates by the simulator processes' CPU
  time (steady on a shared machine) and by wall time; cocotb's is the difference of two runs
  (its simulator start removed); the snntorch CSNN is compiled for 4 of its 25 steps (about
  2M cycles per sample: cocotb's time); harness build times cold and cached.

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
import resource
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
    rtl_steps: int | None = None  # fewer steps in the RTL table (cocotb's time), compiled as such
    rtl: bool = True  # in the RTL table (cocotb's time)


MODELS = [
    Model("snntorch MLP 64-96-10 (Leaky)", "snntorch tutorial 5", lambda b: zsn.spiking_mlp(),
          lambda b, s: _spikes((16, b, 64), 0.3, s), 16, 4000),
    Model("snntorch CSNN 28x28 (conv, max pool, Leaky)", "snntorch tutorials 6/7", lambda b: zsn.spiking_csnn(),
          lambda b, s: zsn.rate_images(b, seed=s).numpy(), 25, 1000, rtl_steps=4),
    Model("SpikingJelly CSNN 28x28 (multi-step IF)", "SpikingJelly conv_fashion_mnist example",
          lambda b: zoo.sj_csnn(), lambda b, s: np.random.default_rng(s).random((b, 1, 28, 28)).astype(np.float32),
          4, 1000, batch_axis=0),
    Model("SpikingJelly CSNN 28x28, the example's width (128 channels)", "SpikingJelly conv_fashion_mnist example",
          lambda b: zoo.sj_csnn(128), lambda b, s: np.random.default_rng(s).random((b, 1, 28, 28)).astype(np.float32),
          4, 256, batch_axis=0, rtl=False),
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
           "Lava exact"]
MEMORY_COLUMNS = ["model", "samples", "data MB", "RSS after imports MB", "peak RSS MB", "seconds (simulation)", "sample-steps/s"]


def _samples(x: np.ndarray, m: Model, lo: int, hi: int) -> np.ndarray:
    return np.take(x, range(lo, hi), axis=m.batch_axis)


def _rtl_data(m: Model, batch: int, seed: int) -> np.ndarray:
    """The model's input, cut to ``m.rtl_steps`` steps when the RTL table runs fewer than ``m.steps``."""
    x = m.data(batch, seed)
    if m.rtl_steps is None:
        return x
    return np.take(x, range(m.rtl_steps), axis=1 - m.batch_axis)  # time-major inputs only


def _child_cpu() -> float:
    """CPU seconds of this process's finished children: both testbenches simulate in a child (the
    Verilator executable with cocotb embedded, or the compiled harness)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rtl_run(art: Path, x: np.ndarray, engine: str, procs: int | None = None) -> tuple[dict, object, float]:
    """One cached-build run: its stats, result and the CPU seconds its simulator process(es) used."""
    from npuc.backends.rtl import run as rtl_run

    c0 = _child_cpu()
    res = rtl_run(art, x, progress=False, engine=engine, procs=procs)
    return res.stats["rtl"], res, _child_cpu() - c0


def _builds(art: Path, cold: bool) -> tuple[float | None, float]:
    """Seconds of a cold harness build (a fresh cache holding only the Verilator runtime objects,
    as for every design after a user's first) and of a cached one (source hash + lookup), after
    building both testbenches into the real cache so that the timed runs build nothing."""
    from npuc.backends.rtl import toolchain
    from npuc.backends.rtl.sim import load_design

    top = load_design(art)["top"]
    sources = toolchain.design_sources(art)

    def harness() -> float:
        t0 = time.perf_counter()
        toolchain.build_harness(sources, top, art / f"harness_{top}.cpp", {"PROBE": 0})
        return time.perf_counter() - t0

    t_cold = None
    if cold:
        real, before = toolchain.cache_root(), os.environ.get("NPUC_RTL_CACHE")
        with tempfile.TemporaryDirectory() as tmp:
            if (real / "runtime").is_dir():
                (Path(tmp) / "runtime").symlink_to(real / "runtime", target_is_directory=True)
            os.environ["NPUC_RTL_CACHE"] = tmp
            try:
                t_cold = harness()
            finally:
                os.environ.pop("NPUC_RTL_CACHE")
                if before is not None:
                    os.environ["NPUC_RTL_CACHE"] = before
    harness()
    toolchain.build(sources, top, {"PROBE": 0}, opt="-O0")  # the cocotb testbench's build
    return t_cold, harness()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


RTL_CYCLES = {"cocotb": 1_000_000, "harness": 10_000_000}
"""Simulated cycles the full table gives each testbench per design (samples rounded up): the
cocotb rate is the difference of a one-sample run and a run of 1 + enough samples for these
cycles, which removes its simulator start (about 1-2 s) from the rate."""


def rtl_design(m: Model, quick: bool) -> dict[str, Any]:
    """One tutorial model's design: the cocotb testbench (the path before issue 17) against the
    compiled harness on 1 and 2 processes, outputs and cycle counts checked between them and
    against the integer engine."""
    from npuc.backends.rtl.sim import harness_procs

    x_cal = _rtl_data(m, 16, 0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        hw = npuc.compile(trace(m.make(16), x_cal), x_cal, target="fpga", out=Path(tmp) / "b")
        t_compile = time.perf_counter() - t0
        art = hw.path / "rtl"
        t_cold, t_cached = _builds(art, cold=not quick)
        probe, _, _ = _rtl_run(art, _rtl_data(m, 1, 1), "harness", procs=1)  # sizes the runs
        per_sample = probe["cycles"]
        n_coco = 2 if quick else 1 + -(-RTL_CYCLES["cocotb"] // per_sample)
        n_harness = 8 if quick else min(256, max(4, -(-RTL_CYCLES["harness"] // per_sample)))
        x = _rtl_data(m, max(n_harness, n_coco), 1)
        c1, r_c1, cpu_c1 = _rtl_run(art, _samples(x, m, 0, 1), "cocotb")
        cn, r_cn, cpu_cn = _rtl_run(art, _samples(x, m, 0, n_coco), "cocotb")
        xs = _samples(x, m, 0, n_harness)
        one, r_one, cpu_one = _rtl_run(art, xs, "harness", procs=1)
        par, r_par, _ = _rtl_run(art, xs, "harness")
        qgraph = hw.quantized("fpga")
        int_ok = all(_same(r.outputs, simulate(qgraph, _samples(x, m, 0, n), "int").outputs)
                     for r, n in ((r_one, n_harness), (r_cn, n_coco), (r_c1, 1)))
    cycles_ok = (np.array_equal(one["step_cycles"][:, :n_coco], cn["step_cycles"])
                 and np.array_equal(one["step_cycles"][:, :1], c1["step_cycles"])
                 and np.array_equal(par["step_cycles"], one["step_cycles"])
                 and _same(r_par.outputs, r_one.outputs))
    if quick:  # too few cycles for a difference: whole-run rates, the simulator's start included
        coco_wall, coco_cpu = cn["cycles_per_second"], cn["cycles"] / cpu_cn
    else:
        d_cycles = cn["cycles"] - c1["cycles"]
        coco_wall = d_cycles / (cn["sim_seconds"] - c1["sim_seconds"])
        coco_cpu = d_cycles / (cpu_cn - cpu_c1)
    return {"design": m.name, "T": m.rtl_steps or m.steps, "cycles/step": one["cycles_per_step"],
             "compile s": t_compile, "build cold s": t_cold, "build cached s": t_cached,
             "cocotb samples": f"1 / {n_coco}", "cocotb start s": c1["sim_seconds"] - c1["cycles"] / coco_wall,
             "cocotb c/s (CPU)": coco_cpu, "cocotb c/s (wall)": coco_wall, "harness samples": n_harness,
             "1 proc c/s (CPU)": one["cycles"] / cpu_one, "x (CPU)": one["cycles"] / cpu_one / coco_cpu,
             "1 proc c/s (wall)": one["cycles_per_second"], "x (wall)": one["cycles_per_second"] / coco_wall,
             "procs": harness_procs(n_harness), "procs c/s (wall)": par["cycles_per_second"],
             "x (procs)": par["cycles_per_second"] / coco_wall,
             "outputs = int engine": int_ok, "testbenches agree": cycles_ok}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small model at tiny sizes (the CI smoke run)")
    ap.add_argument("--only", nargs="*", help="substrings of model names")
    ap.add_argument("--lava-samples", type=int, default=None, help="samples per Lava build (default 4; quick 1)")
    ap.add_argument("--memory-samples", type=int, default=None, help="samples of the memory run (default 100,000)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every engine, also the integer engine's threads (parts of a large "
                    "batch at once; default: torch's own; 1 is steadier on a loaded machine)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the engines by process CPU time (steadier on a shared machine; use with --threads 1)")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--rtl-only", action="store_true", help="only the RTL cocotb-vs-harness table")
    ap.add_argument("--no-rtl", action="store_true", help="skip the RTL table")
    args = ap.parse_args(argv)
    rtl = [] if args.no_rtl else rtl_table(args.quick, args.only)
    if args.rtl_only:
        if args.json:
            Path(args.json).write_text(json.dumps({"rtl": rtl, "load": os.getloadavg()[0]}, indent=1, default=str) + "\n")
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


def rtl_table(quick: bool, only: list[str] | None = None) -> list[dict]:
    models = MODELS[:1] if quick else MODELS
    rows = []
    for m in models:
        if m.rtl and (not only or any(s in m.name for s in only)):
            print(f"... RTL {m.name}", flush=True)
            rows.append(rtl_design(m, quick))
    table = Table(f"RTL simulation speed (Verilator; simulated cycles per second, c/s) {machine()}, "
                  f"load {os.getloadavg()[0]:.1f}; CPU = the simulator processes' CPU time", list(rows[0]) if rows else [])
    table.print(rows)
    print(table.markdown(rows))
    return rows


if __name__ == "__main__":
    main()

"""Benchmark 4: RTL efficiency, measured: a 784-128-10 LIF MLP (MNIST size) and a 700-256-20
recurrent net (SHD size) next to Spiker+'s published figures.

Per design, lane count (1, 4, or ``auto``: per layer from the firing rates) and top
(``pipeline=0`` sequential, ``pipeline=1`` stages on consecutive time steps): cycles per time
step measured in Verilator vs the event-driven bound of the slowest stage (the input stream, the output stream or
a layer; goal <= 1.1x), latency per sample in cycles, Verilator time steps per second, and -- unless ``--quick`` -- Yosys + nextpnr place and route on an ecp5 LFE5U-85F
(``npuc.backends.rtl.pnr``): Fmax, logic cells (LUT4s), BRAM (18 kbit DP16KD), multipliers,
and the latency per sample at the measured Fmax (cycles per step x T / Fmax).

Spiker+ (arXiv 2401.01141), published: MNIST 784-128-10, 7,612 logic cells, 18 BRAM, 780 us
per image (93.85 %); SHD, 18,268 logic cells, 51 BRAM, 54 us per sample (T = 100 in Spiker+'s
repository, see below; BRAM size not stated). MNIST and SHD are not available offline: the MNIST-size input is scikit-learn's
digits upsampled to 28x28 and rate coded (T=16), the SHD-size input is sparse random events
on 700 channels (5 % per step, T=100); accuracy is the digits', not MNIST's.

``--shd-lut-budget N`` (slow: one more place and route, 15 minutes at N = 18000 on a loaded 2-core
machine) adds the SHD-size net sized by ``fpga:lut_budget=N,input=events,input_bits=2`` (the
input is 0/1 events: 2-bit payloads instead of 8) and asks ``latency_us=54`` at the measured Fmax:
the answer (met, or the least latency per sample any lane count reaches) is printed. Spiker+'s
own repository (github.com/smilies-polito/Spiker: ``Optimizer/Shd/shd.py``,
``Tutorials/Shd/vhdl_gen.py``) uses 100 time steps for SHD (700-200-20, recurrent), so T = 100
here too.

``--mnist-target SPEC`` (repeatable) adds the MNIST-size MLP compiled for ``fpga:SPEC``, e.g.
``lut_budget=5200,weight_bits=5,input=events,input_bits=2``. With ``input=events`` the digits are
rate coded on the host (the same `RateEncoder`, so the same spikes, which the MLP without its
encoder takes) and stream as one word per spike instead of 784 words per step. Every MNIST row gives the integer engine's accuracy on 500 held-out digits (``int acc
%``); every design's Verilator outputs must equal the integer engine's. ``BRAM 36k``: the DP16KD
count in 36 kbit equivalents (Xilinx' BRAM tiles; Spiker+ does not state its block size).

Run from the repository root: ``python -m bench.rtl_efficiency [--quick] [--lanes 1,4] [--only shd]
[--shd-lut-budget 18000] [--mnist-target SPEC] [--shd-target SPEC]``.

``--shd-target SPEC`` (repeatable) adds the SHD-size net compiled for ``fpga:SPEC``, e.g.
``array=1,input=events,input_bits=2``: every layer a neuron array (one accumulator register per
neuron, one weight row per event).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from bench.common import Table, machine
from npuc.api import compile as npuc_compile
from npuc.backends.rtl import pnr, rtl_report
from npuc.backends.rtl import run as rtl_run
from npuc.backends.rtl.util import RtlSupportError
from npuc.demo.models import digits_split
from npuc.demo.training import train_classifier
from npuc.nn import LIF, RateEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from models.shd_models import SHD_INPUTS, RLeakySHD  # noqa: E402

STEPS = 16
SHD_STEPS = 100
SHD_HIDDEN = 256
SPIKER_PLUS = {
    "mnist": {"design": "Spiker+ MNIST 784-128-10 (published, 93.85%)", "logic cells": 7612, "BRAM": 18,
              "us/sample": 780.0},
    "shd": {"design": "Spiker+ SHD (published)", "logic cells": 18268, "BRAM": 51, "us/sample": 54.0},
}


class MLP784(nn.Module):
    """Spiker+'s MNIST net. ``encode=False``: the same net without its `RateEncoder`, taking the rate-coded
    spikes ``[T, B, 784]`` (coded on the host), so the input can stream as events."""

    def __init__(self, encode: bool = True) -> None:
        super().__init__()
        self.encode = RateEncoder(STEPS) if encode else None
        self.fc1 = nn.Linear(784, 128)
        self.lif1 = LIF(alpha=0.9, threshold=1.0, reset="value")
        self.fc2 = nn.Linear(128, 10)
        self.lif2 = LIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x):
        s = self.encode(x) if self.encode is not None else x
        return self.lif2(self.fc2(self.lif1(self.fc1(s)))).sum(0)


def digits28() -> tuple[np.ndarray, np.ndarray]:
    """Digits upsampled 8x8 -> 24x24 (nearest) and zero-padded to 28x28, flattened."""
    (x, y), _ = digits_split()
    img = np.kron(x.reshape(-1, 8, 8), np.ones((3, 3), np.float32))
    return np.pad(img, ((0, 0), (2, 2), (2, 2))).reshape(-1, 784), y


def shd_events(batch: int, seed: int = 0) -> np.ndarray:
    """SHD-size input [T, B, 700]: sparse events (5 % of the channels per step)."""
    return (np.random.default_rng(seed).random((SHD_STEPS, batch, SHD_INPUTS)) < 0.05).astype(np.float32)


def measure(name: str, model: nn.Module, calib: np.ndarray, x: np.ndarray, steps: int, lanes: int | str,
            synth: bool, pipeline: int = 1, target: str | None = None,
            held_out: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Compile at ``lanes`` and ``pipeline`` (or for ``target``), run ``x`` in Verilator (cycles per
    step; its outputs must equal the integer engine's), place and route on ecp5; with ``held_out``
    (inputs, labels), the integer engine's accuracy on them (what the RTL computes, bit for bit)."""
    target = target or f"fpga:lanes={lanes},pipeline={pipeline}"
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp) / "b" / "rtl"
        hw = npuc_compile(model, calib, target=target, out=Path(tmp) / "b")
        t0 = time.perf_counter()
        # deployment build (PROBE=0): the verification readout of every layer's state would add
        # its words to each step; per-layer cycles and events are status ports
        res = rtl_run(art, x, probe=False)
        t_sim = time.perf_counter() - t0
        want = hw.simulate(x, "int")
        want = list(want) if isinstance(want, (list, tuple)) else [want]
        if len(want) != len(res.outputs) or not all(np.array_equal(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1))
                                                    for a, b in zip(res.outputs, want)):
            raise AssertionError(f"{name} ({target}): the RTL outputs differ from the integer engine's")
        acc = None
        if held_out is not None:
            out = np.asarray(hw.simulate(held_out[0], "int"))
            acc = 100 * float(np.mean(out.reshape(len(held_out[1]), -1).argmax(1) == held_out[1]))
        rep = rtl_report(hw.quantized(), art, res, yosys=False)
        fig = pnr.measure(art, "ecp5", progress=lambda s: print("  " + s, flush=True)) if synth else {}
    print(f"  {name}, {lanes} lane(s): {rep['total']['cycles_per_step']:.1f} cycles/step, "
          f"{({k: fig.get(k) for k in ('lut', 'ff', 'bram', 'dsp', 'fmax_mhz', 'fits')})}", flush=True)
    layers = [lay.get("cycles", {}) for lay in rep["layers"]]
    bound = sum(c.get("bound_mean", 0.0) for c in layers)
    cps = rep["total"]["cycles_per_step"]
    samples = x.shape[0] if x.ndim == 2 else x.shape[1]
    fmax = fig.get("fmax_mhz")
    tot = rep["total"]
    lane_text = f"lanes=auto {rep.get('lanes', '')}" if lanes == "auto" else f"{lanes} lane(s)"
    if target.partition(":")[2] != f"lanes={lanes},pipeline={pipeline}":
        lane_text = f"{target.partition(':')[2]}, lanes {rep.get('lanes', '')}"
    return {
        "design": f"npuc {name}, {lane_text}, {'pipelined' if pipeline else 'sequential'}", "T": steps,
        "cycles/step": cps, "layer bound": bound,
        "slowest stage": f"{tot.get('slowest_stage')} ({tot.get('slowest_stage_bound', 0):.0f})",
        "step/slowest": tot.get("cycles_per_step_over_bound"),
        "latency cycles/sample": tot.get("latency_cycles_per_sample"),
        "steps/s (Verilator)": samples * steps / t_sim,
        "Fmax MHz (ecp5)": fmax, "us/sample": cps * steps / fmax if fmax else None,
        "logic cells": fig.get("lut"), "FF": fig.get("ff"), "BRAM": fig.get("bram"),
        "BRAM 36k": fig["bram"] / 2 if fig.get("bram") is not None else None,
        "DSP": fig.get("dsp"), "fits": fig.get("fits"), "int acc %": acc,
    }


def mnist_rows(configs: list[tuple[int | str, int]], specs: list[str], quick: bool, synth: bool) -> list[dict]:
    """The MNIST-size MLP (trained unless ``quick``) at each (lanes, pipeline) of ``configs`` and for each
    target ``fpga:SPEC`` of ``specs``, with its integer-engine accuracy on held-out digits, then Spiker+."""
    x, y = digits28()
    torch.manual_seed(0)  # the initial weights, whatever the imports drew from torch's generator
    model = MLP784()
    if not quick:
        train_classifier(model, x[:1000], y[:1000], epochs=5, lr=3e-3)
    xs = x[1000:1000 + (4 if quick else 32)]
    held_out = (x[1000:1000 + (20 if quick else 500)], y[1000:1000 + (20 if quick else 500)])
    rows = [measure("784-128-10 MLP", model, x[:200], xs, STEPS, n, synth, pipe, held_out=held_out)
            for n, pipe in configs]
    events = MLP784(encode=False)
    events.load_state_dict(model.state_dict())
    events.eval()
    spikes = lambda v: model.encode(torch.from_numpy(v)).numpy()  # noqa: E731
    for spec in specs:
        # a target with input=events takes the spikes (the on-chip encoder needs every pixel every step)
        m, code = (events, spikes) if "input=events" in spec.replace(" ", "") else (model, lambda v: v)
        rows.append(measure("784-128-10 MLP", m, code(x[:200]), code(xs), STEPS, "auto", synth,
                            target=f"fpga:{spec}", held_out=(code(held_out[0]), held_out[1])))
    return rows + [SPIKER_PLUS["mnist"]]


def shd_budget(model: nn.Module, calib: np.ndarray, xs: np.ndarray, lut: int) -> list[dict[str, Any]]:
    """The SHD-size net sized to ``lut`` estimated LUT4 (0/1 input events, 2-bit payloads), placed and
    routed; then whether any lane count meets Spiker+'s 54 us per sample at the measured Fmax."""
    spec = f"lut_budget={lut},input=events,input_bits=2"
    row = measure(f"700-{SHD_HIDDEN}-20 recurrent", model, calib, xs, SHD_STEPS, "auto", True, target=f"fpga:{spec}")
    fmax = row.get("Fmax MHz (ecp5)")
    if not fmax:
        return [row]
    us = SPIKER_PLUS["shd"]["us/sample"]
    probe = f"fpga:latency_us={us:g},clock_mhz={fmax:.1f},input=events,input_bits=2"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            npuc_compile(model, calib, target=probe, out=Path(tmp) / "b")
            answer = "met"
        except RtlSupportError as e:
            answer = str(e)
    print(f"  {probe}: {answer}", flush=True)
    return [row, {"design": f"npuc, latency_us={us:g} at {fmax:.1f} MHz: {'met' if answer == 'met' else 'not met'}"}]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="no training, few samples, no synthesis (CI smoke run)")
    ap.add_argument("--lanes", default=None,
                    help="comma-separated lane counts or auto (default 1,4,auto; --quick: 4,auto), or none")
    ap.add_argument("--only", choices=("mnist", "shd"), help="run one of the two designs")
    ap.add_argument("--mnist-target", action="append", metavar="SPEC",
                    help="also the MNIST-size MLP compiled for fpga:SPEC (repeatable), e.g. "
                         "lut_budget=5200,weight_bits=5,input=events,input_bits=2 (input=events: rate coded on "
                         "the host, the spikes stream as events)")
    ap.add_argument("--shd-target", action="append", metavar="SPEC",
                    help="also the SHD-size net compiled for fpga:SPEC (repeatable), placed and routed, e.g. "
                         "array=1,input=events,input_bits=2 (the neuron array layer)")
    ap.add_argument("--shd-lut-budget", type=int, default=None, metavar="N",
                    help="also the SHD-size net sized by lut_budget=N (input=events, input_bits=2), placed and "
                         "routed, and the latency_us=54 question at its Fmax (slow)")
    args = ap.parse_args(argv)
    text = args.lanes or ("4,auto" if args.quick else "1,4,auto")
    lanes = [] if text == "none" else [v if v == "auto" else int(v) for v in text.split(",")]
    # sequential and pipelined tops for fixed lanes; lanes=auto sizes a pipelined design's stages
    configs = [(n, p) for n in lanes for p in ((1,) if n == "auto" else (0, 1))]
    if args.quick:
        configs = [c for c in configs if c[1] == 1]
    synth = not args.quick
    rows = []
    if args.only in (None, "mnist"):
        rows += mnist_rows(configs, args.mnist_target or [], args.quick, synth)
    if args.only in (None, "shd"):
        torch.manual_seed(0)
        model = RLeakySHD(hidden=SHD_HIDDEN).eval()
        xs = shd_events(2 if args.quick else 4, seed=1)
        for n, pipe in configs:
            rows.append(measure(f"700-{SHD_HIDDEN}-20 recurrent", model, shd_events(16), xs, SHD_STEPS, n, synth,
                                pipe))
        for spec in args.shd_target or []:
            rows.append(measure(f"700-{SHD_HIDDEN}-20 recurrent", model, shd_events(16), xs, SHD_STEPS, "auto", synth,
                                target=f"fpga:{spec}"))
        if args.shd_lut_budget:
            rows += shd_budget(model, shd_events(16), xs, args.shd_lut_budget)
        rows.append(SPIKER_PLUS["shd"])
    cols = ["design", "T", "cycles/step", "slowest stage", "step/slowest", "latency cycles/sample",
            "steps/s (Verilator)", "Fmax MHz (ecp5)", "us/sample", "logic cells", "FF", "BRAM", "BRAM 36k", "DSP",
            "fits", "int acc %"]
    Table(f"RTL efficiency, measured (P&R on ecp5 LFE5U-85F) {machine()}", cols).print(rows)
    return rows


if __name__ == "__main__":
    main()

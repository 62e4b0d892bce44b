"""Benchmark 4: RTL efficiency of a 784-128-10 LIF MLP.

Cycles per time step measured in Verilator vs the event-driven bound (sum of
active inputs x fan-out / lanes + pipeline depth; goal <= 1.1x), sequential
(``pipeline=0``) and pipelined across time steps (``pipeline=1``: cycles per step
against the slowest stage, the input stream or a layer), latency per sample, Verilator time
steps per second, and Yosys resource estimates, next to Spiker+'s published
784-128-10 MLP (7,612 logic cells, 18 BRAM, 780 us per image; MNIST is not
available offline, so the input here is scikit-learn's digits upsampled to
28x28 and rate coded, and accuracy is not compared).

Run from the repository root: ``python -m bench.rtl_efficiency [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch.nn as nn

from bench.common import Table, machine
from npuc.api import compile as npuc_compile
from npuc.backends.rtl import rtl_report
from npuc.backends.rtl import run as rtl_run
from npuc.demo.models import digits_split
from npuc.demo.training import train_classifier
from npuc.nn import LIF, RateEncoder

STEPS = 16
SPIKER_PLUS = {"logic cells": 7612, "BRAM": 18, "us per image": 780.0, "note": "Spiker+ (published, MNIST, 93.85%)"}


class MLP784(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = RateEncoder(STEPS)
        self.fc1 = nn.Linear(784, 128)
        self.lif1 = LIF(alpha=0.9, threshold=1.0, reset="value")
        self.fc2 = nn.Linear(128, 10)
        self.lif2 = LIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(self.encode(x))))).sum(0)


def digits28() -> tuple[np.ndarray, np.ndarray]:
    """Digits upsampled 8x8 -> 24x24 (nearest) and zero-padded to 28x28, flattened."""
    (x, y), _ = digits_split()
    img = np.kron(x.reshape(-1, 8, 8), np.ones((3, 3), np.float32))
    return np.pad(img, ((0, 0), (2, 2), (2, 2))).reshape(-1, 784), y


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="no training, few samples, no Yosys (CI smoke run)")
    args = ap.parse_args(argv)
    x, y = digits28()
    model = MLP784()
    if not args.quick:
        train_classifier(model, x[:1000], y[:1000], epochs=5, lr=3e-3)
    samples = 4 if args.quick else 32
    rows = []
    configs = [(1, 0), (1, 1), (4, 0), (4, 1), ("auto", 1)]
    for lanes, pipeline in (configs[2:] if args.quick else configs):  # quick: 4 lanes and auto simulate fastest
        with tempfile.TemporaryDirectory() as tmp:
            hw = npuc_compile(model, x[:200], target=f"fpga:lanes={lanes},pipeline={pipeline}", out=Path(tmp) / "b")
            t0 = time.perf_counter()
            # deployment build (PROBE=0): the verification readout of every layer's state
            # would add its words to each step; per-layer cycles and events are status ports
            res = rtl_run(Path(tmp) / "b" / "rtl", x[1000:1000 + samples], probe=False)
            t_sim = time.perf_counter() - t0
            rep = rtl_report(hw.quantized(), Path(tmp) / "b" / "rtl", res, yosys=not args.quick, target="xilinx")
        layers = {layer["node"]: layer.get("cycles", {}) for layer in rep["layers"]}
        measured = sum(c.get("measured_mean", 0.0) for c in layers.values())
        bound = sum(c.get("bound_mean", 0.0) for c in layers.values())
        cps = rep["total"]["cycles_per_step"]
        res_tot = rep["total"].get("resources") or {}
        tot = rep["total"]
        rows.append({
            "design": f"npuc 784-128-10, {lanes} lane(s){' (max)' if lanes == 'auto' else ''}, "
                      f"{'pipelined' if pipeline else 'sequential'}" + (f" {rep['lanes']}" if lanes == "auto" else ""),
            "cycles/step": cps, "layer bound": bound,
            "layers measured/bound": f"{measured / bound:.3f}" if bound else None,
            "slowest stage": f"{tot['slowest_stage']} ({tot['slowest_stage_bound']:.0f})",
            "step/slowest": f"{tot['cycles_per_step_over_bound']:.3f}",
            "latency cycles/sample": tot.get("latency_cycles_per_sample"),
            "steps/s (Verilator)": samples * STEPS / t_sim,
            "us per image @100MHz": cps * STEPS / 100.0,
            "LUT": res_tot.get("LUT"), "FF": res_tot.get("FF"), "BRAM": res_tot.get("BRAM"),
            "DSP": res_tot.get("DSP"), "memory bits": rep["total"].get("memory_bits"),
        })
    rows.append({"design": SPIKER_PLUS["note"], "LUT": f"{SPIKER_PLUS['logic cells']} logic cells",
                 "BRAM": SPIKER_PLUS["BRAM"], "us per image @100MHz": SPIKER_PLUS["us per image"]})
    cols = ["design", "cycles/step", "layer bound", "layers measured/bound", "slowest stage", "step/slowest",
            "latency cycles/sample", "steps/s (Verilator)",
            "us per image @100MHz",
            "LUT", "FF", "BRAM", "DSP", "memory bits"]
    Table(f"RTL efficiency, T={STEPS}, {samples} samples {machine()}", cols).print(rows)
    return rows


if __name__ == "__main__":
    main()

"""Benchmark 2: compile time from trace to emitted artifacts vs network size.

Conv SNNs written with npuc.nn (conv -> LIF -> sum pool -> conv -> LIF -> dense ->
LIF) grow with the input size from ~1e5 to ~1e7 synapses. For each, the wall time
of tracing, of each target's pass pipeline (fold, legalize, quantize with a
calibration run, and for Loihi 2 map-cores and place-cores) and of emitting Lava
and Verilog is measured, and a power law ``time ~ synapses^k`` is fitted
(goal: 10M synapses in <= 10 s, k <= 1.1).

Run from the repository root: ``python -m bench.compile_scaling [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bench.common import Table, machine
from npuc.driver import build
from npuc.frontends import trace
from npuc.nn import LIF, RateEncoder

STEPS = 4


class ConvSNN(nn.Module):
    """x [B, 2, H, W] in [0, 1] -> rate spikes -> conv8 -> LIF -> avg pool 2 -> (conv16 stride 2 -> LIF),
    repeated until the map is at most 16 x 16 -> dense 10 -> LIF -> spike counts.

    Strided spiking convolutions keep the dense layer's fan-in under Loihi 2's
    input-axon limit (a pool folded into a dense layer would not)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.encode = RateEncoder(STEPS)
        self.conv1 = nn.Conv2d(2, 8, 3, padding=1)
        self.lif1 = LIF(alpha=0.9, threshold=1.0, reset="value")
        self.pool = nn.AvgPool2d(2)
        convs, lifs, ch, side = [], [], 8, size // 2
        while not convs or side > 16:  # at least one: a pool folds into the next layer on Loihi 2
            convs.append(nn.Conv2d(ch, 16, 3, stride=2, padding=1))
            lifs.append(LIF(alpha=0.9, threshold=1.0, reset="value"))
            ch, side = 16, (side + 1) // 2
        self.convs, self.lifs = nn.ModuleList(convs), nn.ModuleList(lifs)
        self.fc = nn.Linear(ch * side * side, 10)
        self.lif_out = LIF(alpha=0.9, threshold=1.0, reset="value")

    def forward(self, x):
        s = self.encode(x)
        t, b = s.shape[:2]
        s = self.lif1(self.conv1(s.flatten(0, 1)).unflatten(0, (t, b)))
        s = self.pool(s.flatten(0, 1))
        for conv, lif in zip(self.convs, self.lifs):
            s = lif(conv(s).unflatten(0, (t, b))).flatten(0, 1)
        return self.lif_out(self.fc(s.flatten(1).unflatten(0, (t, b)))).sum(0)


def run_size(size: int, out: Path, targets: list[str]) -> dict:
    torch.manual_seed(0)
    model = ConvSNN(size).eval()
    x = np.random.default_rng(0).random((2, 2, size, size)).astype(np.float32)
    t0 = time.perf_counter()
    graph = trace(model, x)
    t_trace = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = build(graph, targets, out, [x], None, False, None, None, f"ConvSNN({size})")
    t_build = time.perf_counter() - t0
    row = {"input": f"2x{size}x{size}", "trace s": t_trace}
    for name, tr in report["targets"].items():
        passes = sum(e["seconds"] for e in tr["passes"])
        row[f"{name} passes s"] = passes
        if name == "loihi2":
            m = tr.get("mapping", {})
            row["synapses"] = _synapses(tr)
            row["neurons"] = int(sum(layer.get("neurons", 0) for layer in m.get("layers", [])))
            row["cores"] = m.get("cores", {}).get("used")
    row["emit + save s"] = t_build - sum(v for k, v in row.items() if k.endswith("passes s"))
    row["total s"] = t_trace + t_build
    return row


def _synapses(tr: dict) -> int | None:
    mc = next((e for e in tr["passes"] if e["pass"] == "map-cores"), {})
    return mc.get("synapses")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small sizes for a CI smoke run")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    sizes = [8, 16] if args.quick else [8, 16, 32, 64, 128, 192]
    rows = []
    trace(ConvSNN(8).eval(), np.zeros((2, 2, 8, 8), np.float32))  # warm-up: first-call import costs
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            rows.append(run_size(size, Path(tmp) / f"s{size}", ["loihi2", "fpga"]))
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
    syn = np.array([r["synapses"] for r in rows], dtype=np.float64)
    tot = np.array([r["total s"] for r in rows])
    big = syn >= 1e6
    k = float(np.polyfit(np.log(syn[big] if big.sum() >= 2 else syn), np.log(tot[big] if big.sum() >= 2 else tot), 1)[0])
    cols = ["input", "neurons", "synapses", "cores", "trace s", "loihi2 passes s", "fpga passes s", "emit + save s", "total s"]
    Table(f"Compile time, trace -> Lava + Verilog {machine()}", cols).print(rows)
    print(f"fitted exponent (total time ~ synapses^k over >= 1e6 synapses): k = {k:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "exponent": k}, indent=1))
    return rows


if __name__ == "__main__":
    main()

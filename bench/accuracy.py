"""Benchmark 5: accuracy on held-out digits per engine, and mismatches between int, Lava and RTL.

Models: the demo's npuc.nn MLP (shipped checkpoint) and a snntorch conv net
trained here. Float, integer (loihi2 and fpga), Lava fixed_pt and Verilator RTL
engines run the same held-out samples (goal: int within 0.5 points of float,
0 mismatches among int, Lava and RTL).

Run from the repository root: ``python -m bench.accuracy [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
import torch.nn as nn

from bench.common import Table, machine
from npuc.api import Compiled
from npuc.demo.models import digits_split
from npuc.demo.training import train_classifier
from npuc.driver import build
from npuc.frontends import load_model, trace

STEPS = 8


class ConvNet(nn.Module):
    """snntorch: 8x8 digit -> conv 8 (3x3) -> Leaky -> avg pool 2 -> dense 10 -> Leaky, explicit time loop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.lif2 = snn.Leaky(beta=0.9, reset_mechanism="zero")
        self.fc = nn.Linear(16 * 2 * 2, 10)
        self.lif3 = snn.Leaky(beta=0.9, reset_mechanism="zero")

    def forward(self, x):  # x: [B, 1, 8, 8]
        m1, m2, m3 = self.lif1.reset_mem(), self.lif2.reset_mem(), self.lif3.reset_mem()
        out = []
        for _ in range(STEPS):
            s1, m1 = self.lif1(self.conv(x), m1)
            s2, m2 = self.lif2(self.conv2(self.pool(s1)), m2)
            s3, m3 = self.lif3(self.fc(s2.flatten(1)), m3)
            out.append(s3)
        return torch.stack(out).sum(0)


def train_conv(x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    return train_classifier(ConvNet(), x, y, epochs, lr=5e-3)


def evaluate(name: str, graph, calib, x_test, y_test, hw_samples: int, tmp: Path) -> list[dict]:
    build(graph, ["loihi2", "fpga"], tmp / name, [calib], None)
    hw = Compiled(tmp / name)
    rows = []
    ref = hw.simulate(x_test, "float")
    for engine, target, n in (("float", None, len(x_test)), ("int", "loihi2", len(x_test)), ("int", "fpga", len(x_test)),
                              ("lava", "loihi2", hw_samples), ("rtl", "fpga", hw_samples)):
        xs, ys = x_test[:n], y_test[:n]
        row = {"model": name, "engine": engine + (f" ({target})" if target else ""), "samples": n}
        if engine in ("lava", "rtl"):
            cmp = hw.verify(xs, engine)
            out = hw.simulate(xs, engine)
            row["mismatches vs int"] = f"{cmp.mismatches} / {sum(cmp.compared.values()):,}"
        else:
            out = hw.simulate(xs, engine, target=target)
        row["accuracy %"] = 100 * float(np.mean(np.asarray(out).reshape(n, -1).argmax(1) == ys))
        if engine == "int":
            row["output agreement with float %"] = 100 * float(np.mean(out == ref))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few samples, short training (CI smoke run)")
    args = ap.parse_args(argv)
    (xtr, ytr), (xte, yte) = digits_split()
    n_test = 40 if args.quick else len(xte)
    hw_samples = 4 if args.quick else len(xte)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(resources.files("npuc.demo").joinpath("digits_mlp.pt"))
        mlp = load_model("npuc.demo.models:mlp", checkpoint=ckpt, example_input=[xtr[:300]])
        rows += evaluate("demo MLP (npuc.nn)", mlp, xtr[:300], xte[:n_test], yte[:n_test], hw_samples, Path(tmp))
        conv = train_conv(xtr.reshape(-1, 1, 8, 8), ytr, 2 if args.quick else 15)
        xi = xtr.reshape(-1, 1, 8, 8)
        g = trace(conv, xi[:300])
        rows += evaluate("conv net (snntorch)", g, xi[:300], xte.reshape(-1, 1, 8, 8)[:n_test], yte[:n_test],
                         hw_samples, Path(tmp))
    cols = ["model", "engine", "samples", "accuracy %", "output agreement with float %", "mismatches vs int"]
    Table(f"Held-out digits accuracy per engine {machine()}", cols).print(rows)
    return rows


if __name__ == "__main__":
    main()

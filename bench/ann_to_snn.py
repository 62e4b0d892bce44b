"""Benchmark 8: ANN-to-SNN conversion on scikit-learn's digits.

A ReLU MLP (64-128-10) and a small CNN (Conv-BN-ReLU-AvgPool, Conv-ReLU, Linear), trained
briefly, converted with data-based threshold balancing: ANN accuracy vs the float SNN's and
the compiled FPGA integer graph's accuracy at each T, the smallest T within 1 point of the
ANN, and a plot (``bench-out/ann_to_snn.png``).

Run from the repository root: ``python -m bench.ann_to_snn [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

import npuc
from bench.common import Table, machine
from npuc.frontends.ann import ann_accuracy, ann_to_snn
from npuc.sim import simulate


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn, self.pool = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.AvgPool2d(2)
        self.c2, self.fc = nn.Conv2d(16, 32, 3, padding=1), nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.c1(x))))
        return self.fc(torch.flatten(torch.relu(self.c2(x)), 1))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(x), 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + 100]), yt[i:i + 100]).backward()
            opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench-out", help="folder for the plot")
    args = ap.parse_args(argv)
    d = load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    steps = [8, 16] if args.quick else [4, 8, 16, 32, 64]
    torch.manual_seed(0)
    models = [("ReLU MLP 64-128-10", train(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
                                           xtr, ytr, 5 if args.quick else 40), lambda a: a)]
    if not args.quick:
        models.append(("ReLU CNN (BN, avg pool)", train(DigitsCNN(), xtr.reshape(-1, 1, 8, 8), ytr, 20),
                       lambda a: a.reshape(-1, 1, 8, 8)))
    rows, curves = [], {}
    for name, model, shape in models:
        ann = ann_accuracy(model, shape(xte), yte)
        curves[name] = (ann, [])
        for t in steps:
            graph = ann_to_snn(model, shape(xtr[:500]), t)
            snn = float((simulate(graph, shape(xte)).output.argmax(1) == yte).mean())
            with tempfile.TemporaryDirectory() as tmp:
                hw = npuc.compile(graph, shape(xtr[:500]), target="fpga", out=Path(tmp) / "b")
                integer = float((hw.simulate(shape(xte), "int").argmax(1) == yte).mean())
            curves[name][1].append((t, snn, integer))
            rows.append({"model": name, "T": t, "ANN": ann, "SNN float": snn, "SNN int (fpga)": integer,
                         "float - ANN (points)": round(100 * (snn - ann), 2)})
        within = [t for t, s, _ in curves[name][1] if s >= ann - 0.01]
        rows[-1]["smallest T within 1 point"] = within[0] if within else "none"
    table = Table(f"ANN-to-SNN on digits (397 test samples) {machine()}",
                  ["model", "T", "ANN", "SNN float", "SNN int (fpga)", "float - ANN (points)", "smallest T within 1 point"])
    table.print(rows)
    print(table.markdown(rows))
    _plot(curves, Path(args.out) / "ann_to_snn.png")
    return 0


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, (ann, pts)) in enumerate(curves.items()):
        ts = [p[0] for p in pts]
        ax.plot(ts, [p[1] for p in pts], "o-", color=f"C{i}", label=f"{name}: SNN float")
        ax.plot(ts, [p[2] for p in pts], "x--", color=f"C{i}", label=f"{name}: SNN int (fpga)")
        ax.axhline(ann, color=f"C{i}", lw=0.8, ls=":", label=f"{name}: ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())

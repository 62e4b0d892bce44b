"""Train the demo's digits MLP (npuc.demo.models:mlp) and save its checkpoint.

    python examples/train_digits.py            # writes compiler/demo/digits_mlp.pt

Data: scikit-learn's 8x8 digits (shipped with the package, no download),
split by a fixed permutation (seed 0): 1500 samples to train, the other 297
held out for the demo's accuracy figures (`npuc.demo.models.digits_split`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from npuc.demo.models import digits_split, mlp
from npuc.demo.training import accuracy, train_classifier


def train(epochs: int = 30, seed: int = 0) -> tuple[torch.nn.Module, float]:
    (x_train, y_train), (x_test, y_test) = digits_split()
    torch.manual_seed(seed)  # the initial weights too
    model = train_classifier(mlp(), x_train, y_train, epochs, lr=5e-3, seed=seed)
    return model, accuracy(model, x_test, y_test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "compiler" / "demo" / "digits_mlp.pt"))
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    t0 = time.perf_counter()
    model, acc = train(args.epochs)
    torch.save(model.state_dict(), args.out)
    print(f"held-out accuracy {acc:.4f}; trained in {time.perf_counter() - t0:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()

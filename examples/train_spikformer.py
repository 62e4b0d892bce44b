"""Train the demo's Spikformer-style model (npuc.demo.models:spikformer) and save its checkpoint.

    python examples/train_spikformer.py        # writes compiler/demo/digits_spikformer.pt

The digits are read as 8 tokens (image rows) of 8 features; same split as the MLP.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from npuc.demo.models import digits_split, spikformer
from npuc.demo.training import accuracy, train_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "compiler" / "demo" / "digits_spikformer.pt"))
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    (x_train, y_train), (x_test, y_test) = digits_split()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = train_classifier(spikformer(), x_train.reshape(-1, 8, 8), y_train, args.epochs, lr=1e-2, batch=100)
    torch.save(model.state_dict(), args.out)
    print(f"held-out accuracy {accuracy(model, x_test.reshape(-1, 8, 8), y_test):.4f}; "
          f"trained in {time.perf_counter() - t0:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()

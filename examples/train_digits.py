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


def train(epochs: int = 30, seed: int = 0) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = digits_split()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 5 == 4:
            print(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    return model, float(acc)


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

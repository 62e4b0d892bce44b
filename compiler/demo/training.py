"""A minimal classifier training loop shared by the demo's training script, examples and benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def train_classifier(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 5e-3,
                     forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
                     batch: int = 64, seed: int = 0) -> torch.nn.Module:
    """Adam on cross-entropy of ``forward(model, x)`` (default ``model(x)``, logits ``[B, classes]``).

    Returns the model in eval mode. Seeded: the same call trains the same weights.
    """
    forward = forward or (lambda m, xb: m(xb))
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(forward(model, xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray,
             forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None) -> float:
    forward = forward or (lambda m, xb: m(xb))
    with torch.no_grad():
        return float((forward(model, torch.from_numpy(np.asarray(x))).argmax(1).numpy() == np.asarray(y)).mean())

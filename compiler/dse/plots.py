"""Explore and evaluate plots: accuracy against each cost (Pareto front marked) and a
confusion matrix. Agg backend, no timestamps (same data, same file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .pareto import front  # noqa: E402


def plot_pareto(rows: list[dict[str, Any]], costs: list[str], path: str | Path, title: str,
                color_by: str | None = None) -> Path:
    """One panel per cost: every measured point, the 2-D front (accuracy vs that cost) as a step line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r.get("accuracy") is not None]
    fig, axes = plt.subplots(1, max(1, len(costs)), figsize=(5.2 * max(1, len(costs)), 4.2), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        pts = [r for r in ok if r.get(cost) is not None]
        xs = np.array([r[cost] for r in pts], dtype=np.float64)
        ys = np.array([r["accuracy"] for r in pts], dtype=np.float64)
        if color_by and pts and all(_num(r.get(color_by)) for r in pts):
            sc = ax.scatter(xs, ys, c=[float(r[color_by]) for r in pts], cmap="viridis", s=22, alpha=0.8)
            fig.colorbar(sc, ax=ax, label=color_by)
        else:
            ax.scatter(xs, ys, s=22, alpha=0.8, color="tab:blue")
        idx = sorted(front(pts, [cost]), key=lambda i: pts[i][cost])
        if idx:
            ax.step(xs[idx], ys[idx], where="post", color="tab:red", lw=1.5, label="Pareto front")
            ax.scatter(xs[idx], ys[idx], s=46, facecolors="none", edgecolors="tab:red")
            ax.legend(loc="lower right")
        ax.set_xlabel(cost)
        ax.set_ylabel("accuracy (integer engine)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def _num(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def plot_confusion(matrix: np.ndarray, path: str | Path, title: str) -> Path:
    """Row-normalized confusion matrix with counts in the cells."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = matrix.shape[0]
    norm = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * k, 1.0 + 0.5 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path

"""Plots for ``DIR/report/``: the core map of a many-core mapping.

`plot_core_map` draws the chip mesh as a heat map of each core's utilisation
(the largest fraction of any per-core limit it uses) with the placed link
traffic on top: every mesh link is a segment whose width and colour grow with
the messages per step it carries (both directions summed, XY routing). Chips
are separated by thick lines. Uses the Agg backend (no display needed); the
PNG carries no timestamp, so the same graph gives the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from .ir import Graph  # noqa: E402
from .passes.packing import RESOURCES  # noqa: E402
from .passes.placement import initial_positions, link_loads, mesh_of  # noqa: E402


def plot_core_map(graph: Graph, target: Any, path: str | Path) -> Path:
    """Write a PNG of the placed core map of ``graph`` to ``path``.

    Uses ``graph.meta["mapping"]`` and, if present, ``graph.meta["placement"]``
    (otherwise cores are shown row-major without link traffic).

    Returns:
        The path written.

    Raises:
        KeyError: the graph has no mapping (run map-cores first).
    """
    mapping = graph.meta["mapping"]
    placement = graph.meta.get("placement")
    mesh = mesh_of(mapping)
    cores = mapping["cores"]
    n = len(cores)
    pos = np.asarray(placement["positions"], np.int64).reshape(n, 2) if placement else initial_positions(n, mesh, "row-major")
    lim = mapping["limits"]
    util = np.full((mesh.ny, mesh.width), np.nan)
    for c, (x, y) in zip(cores, pos):
        util[y, x] = max(c["usage"][r] / lim[r] for r in RESOURCES)

    W, H = mesh.width, mesh.ny
    fig, ax = plt.subplots(figsize=(min(3 + 0.45 * W, 40), 2 + 0.45 * H))
    cmap = matplotlib.colormaps["Blues"].copy()
    cmap.set_bad("#f4f4f4")
    im = ax.imshow(util, cmap=cmap, vmin=0, vmax=1, origin="lower", extent=(-0.5, W - 0.5, -0.5, H - 0.5))
    fig.colorbar(im, ax=ax, location="right", fraction=0.04, pad=0.02,
                 label="core utilisation (max fraction of any limit)")

    title = f"{graph.name} on {getattr(target, 'name', target)}: {n} cores, {mapping['chips']} chip(s)"
    if placement:
        loads = link_loads(mapping, pos, mesh)
        segs, vals = [], []
        horiz = loads["east"] + loads["west"]  # [W-1, H]
        vert = loads["north"] + loads["south"]  # [W, H-1]
        for x, y in zip(*np.nonzero(horiz)):
            segs.append([(x, y), (x + 1, y)])
            vals.append(horiz[x, y])
        for x, y in zip(*np.nonzero(vert)):
            segs.append([(x, y), (x, y + 1)])
            vals.append(vert[x, y])
        if segs:
            v = np.asarray(vals)
            top = float(v.max())
            lc = LineCollection(segs, cmap="YlOrRd", linewidths=0.8 + 4.2 * v / top, alpha=0.9)
            lc.set_array(v)
            lc.set_clim(0, top)
            ax.add_collection(lc)
            fig.colorbar(lc, ax=ax, location="bottom", fraction=0.04, pad=0.08,
                         label="link load (messages/step, both directions)")
        title += (f"\nhop traffic {placement['hop_traffic_per_step']:.4g}/step "
                  f"(row-major {placement['row_major_hop_traffic_per_step']:.4g}), "
                  f"max link load {placement['max_link_load']:.4g}")
    for c in range(1, mapping["chips"]):
        ax.axvline(c * mesh.nx - 0.5, color="black", linewidth=2.5)
    if W * H <= 512:
        for c, (x, y) in zip(cores, pos):
            ax.text(x, y, str(c["id"]), ha="center", va="center", fontsize=6,
                    color="white" if util[y, x] > 0.55 else "black")
    ax.set_xticks(range(W))
    ax.set_yticks(range(H))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("x (mesh column; chips side by side)")
    ax.set_ylabel("y (mesh row)")
    ax.set_title(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)
    return path


def plot_rasters(layers: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Spike raster per layer for one sample: ``layers[name]`` is ``[T, ...]`` (neurons flattened).

    Each panel shows time steps on x and neurons on y; graded spikes are shaded by value.
    """
    n = len(layers)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.2 + 1.6 * n), squeeze=False, sharex=True)
    for ax, (name, s) in zip(axes[:, 0], layers.items()):
        s = np.asarray(s).reshape(s.shape[0], -1)
        t, idx = np.nonzero(s)
        ax.scatter(t, idx, s=4, c=np.abs(s[t, idx]), cmap="Greys", vmin=0, vmax=max(1, np.abs(s).max()), marker="|")
        ax.set_ylabel(f"{name}\n({s.shape[1]})", fontsize=8)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.set_xlim(-0.5, s.shape[0] - 0.5)
        ax.text(1.0, 1.0, f"{s.astype(bool).mean():.3f} spikes/neuron/step", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7)
    axes[-1, 0].set_xlabel("time step")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_accuracy(rows: list[tuple[str, float, int]], path: str | Path, title: str = "") -> Path:
    """Bar chart of accuracy per engine: ``rows`` are ``(engine, accuracy, samples)``."""
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [r[0] for r in rows]
    acc = [100 * r[1] for r in rows]
    bars = ax.bar(range(len(rows)), acc, color="#4878a8")
    for b, (_, a, n) in zip(bars, rows):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.3, f"{100 * a:.1f}%\n(n={n})", ha="center", fontsize=7)
    ax.set_xticks(range(len(rows)), names, rotation=15, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(max(0.0, min(acc) - 10), 101)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_ann_vs_snn(sweep: dict, path: str | Path, title: str = "") -> Path:
    """ANN accuracy (a line) vs the converted SNN's float accuracy over T, with each target's
    integer accuracy at the compiled T (``sweep``: the report's ``ann_to_snn`` entry)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ts = [r["steps"] for r in sweep["snn"]]
    ax.plot(ts, [100 * r["accuracy"] for r in sweep["snn"]], "o-", label="SNN, float engine")
    ax.axhline(100 * sweep["ann_accuracy"], color="k", lw=0.8, ls=":", label="ANN")
    for i, (name, acc) in enumerate(sorted((sweep.get("int_accuracy") or {}).items())):
        if acc is not None:
            ax.plot([sweep["steps"]], [100 * acc], "x", ms=9, color=f"C{i + 1}", label=f"{name}, integer (compiled)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set_xlabel("time steps T")
    ax.set_ylabel(f"accuracy (%, n={sweep['samples']})")
    ax.legend(fontsize=7)
    ax.set_title(title or "ANN vs converted SNN", fontsize=10)
    return _save(fig, path)

"""What an explore run leaves in ``DIR``: ``explore.csv`` and ``explore.json`` (every point),
``pareto.png``, ``best-<objective>/`` build directories, and the front as a terminal table."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from . import bundle
from .cache import PointCache
from .pareto import best, front
from .plots import plot_pareto

FLAT = ("id", "status", "accuracy", "LUT", "FF", "BRAM", "memory_bits", "neurons", "cycles_per_step", "fmax_mhz",
        "clock_mhz", "latency_us", "cores", "chips", "messages", "synops", "energy_uj", "agreement_mean",
        "agreement_min", "num_steps", "design_hash", "spec", "seconds")


def columns(result: Any) -> list[str]:
    knobs = list(result.space.knobs) if result.space else []
    present = [c for c in FLAT if c not in knobs and any(c in r for r in result.rows)]
    return knobs + present


def write_outputs(result: Any, cache: PointCache, model: str, search: str, min_accuracy: float | None) -> None:
    root: Path = result.out
    root.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    result.costs = [c for c in result.costs if any(r.get(c) is not None for r in rows)]
    result.front = front(rows, result.costs)
    ok = [r["accuracy"] for r in rows if r.get("accuracy") is not None]
    floor = min_accuracy if min_accuracy is not None else (max(ok) - 0.01 if ok else None)
    for objective in ["accuracy", *result.costs]:
        i = best(rows, objective, result.costs, floor)
        data = cache.build(rows[i]["id"]) if i is not None else None
        if data is not None:
            result.best[objective] = bundle.install(data, root / f"best-{objective}")
    cols = columns(result)
    with (root / "explore.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*cols, "pareto"])
        for i, r in enumerate(rows):
            w.writerow([*("" if r.get(c) is None else r[c] for c in cols), int(i in result.front)])
    sp = result.space
    doc = {"model": model, "target": sp.target, "kind": sp.kind, "space": {k: list(v) for k, v in sp.knobs.items()},
           "search": search, "costs": result.costs, "min_accuracy": floor,
           "front": [rows[i]["id"] for i in result.front],
           "best": {k: str(v.relative_to(root.resolve())) if v.is_relative_to(root.resolve()) else str(v)
                    for k, v in result.best.items()},
           "points": rows}
    (root / "explore.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if result.costs and result.front:
        plot_pareto(rows, result.costs, root / "pareto.png", f"{model} on {sp.target}: accuracy vs cost",
                    color_by=next(iter(sp.knobs)))


def print_front(result: Any, console: Any = None) -> None:
    """The front (best accuracy first) as a rich table, then a line per refused point kind."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    rows = result.rows
    knobs = list(result.space.knobs)
    t = Table(title=f"Pareto front: accuracy vs {', '.join(result.costs)} ({len(result.front)} of {len(rows)} points)")
    for c in [*knobs, "accuracy", *result.costs, "agreement_min"]:
        t.add_column(c, justify="right")
    for i in sorted(result.front, key=lambda i: (-rows[i]["accuracy"], *(rows[i][c] for c in result.costs))):
        r = rows[i]
        t.add_row(*(str(r.get(k, "")) for k in knobs), f"{r['accuracy']:.4f}",
                  *(_fmt(r.get(c)) for c in result.costs), _fmt(r.get("agreement_min")))
    console.print(t)
    refused: dict[str, int] = {}
    for r in rows:
        if r["status"] != "ok":
            refused[r["status"]] = refused.get(r["status"], 0) + 1
    for status, n in sorted(refused.items()):
        console.print(f"{n} point(s) {status}")
    for objective, path in result.best.items():
        console.print(f"best {objective}: {path}")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)

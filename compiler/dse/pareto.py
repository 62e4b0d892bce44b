"""Pareto fronts over measured points: accuracy (maximized) against costs (minimized)."""

from __future__ import annotations

from typing import Any


def _vector(row: dict[str, Any], costs: list[str]) -> list[float] | None:
    if row.get("accuracy") is None or any(row.get(c) is None for c in costs):
        return None
    return [-float(row["accuracy"]), *(float(row[c]) for c in costs)]


def front(rows: list[dict[str, Any]], costs: list[str]) -> list[int]:
    """Indices of the rows no other row dominates (>= accuracy and <= every cost, one strictly);
    rows missing a value are never on the front. Equal rows are all kept."""
    vecs = [_vector(r, costs) for r in rows]
    out = []
    for i, a in enumerate(vecs):
        if a is None:
            continue
        dominated = any(b is not None and all(y <= x for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b))
                        for b in vecs)
        if not dominated:
            out.append(i)
    return out


def best(rows: list[dict[str, Any]], objective: str, costs: list[str], min_accuracy: float | None) -> int | None:
    """The row best on one objective: ``accuracy`` (highest; ties: cheapest on the costs in
    order), or a cost (lowest among rows with accuracy >= ``min_accuracy``; ties: higher
    accuracy, then the other costs)."""
    ok = [i for i, r in enumerate(rows) if _vector(r, costs) is not None]
    if objective == "accuracy":
        return min(ok, key=lambda i: (-rows[i]["accuracy"], *(rows[i][c] for c in costs)), default=None)
    floor = -1.0 if min_accuracy is None else min_accuracy
    ok = [i for i in ok if rows[i]["accuracy"] >= floor]
    others = [c for c in costs if c != objective]
    return min(ok, key=lambda i: (rows[i][objective], -rows[i]["accuracy"], *(rows[i][c] for c in others)),
               default=None)

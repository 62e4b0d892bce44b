"""Compare two engines' per-node traces and report mismatches down to the neuron and step.

Both sides are ``{node: {port: array[T, B, ...]}}`` in logical time (backends
undo their hardware delays before comparing). Only nodes and ports present on
both sides are compared; a node the reference has but the other side lacks is
reported as not observed, never silently skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Traces = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Mismatch:
    """One differing value."""

    node: str
    port: str
    step: int
    sample: int
    index: tuple[int, ...]
    expected: float
    actual: float

    def __str__(self) -> str:
        idx = ",".join(map(str, self.index))
        return (f"{self.node}.{self.port} step {self.step} sample {self.sample} neuron [{idx}]: "
                f"expected {_fmt(self.expected)}, got {_fmt(self.actual)}")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


@dataclass
class Comparison:
    """Result of comparing two sets of traces."""

    reference: str
    engine: str
    compared: dict[str, int] = field(default_factory=dict)  # "node.port" -> values compared
    mismatched: dict[str, int] = field(default_factory=dict)  # "node.port" -> differing values
    first: list[Mismatch] = field(default_factory=list)  # earliest mismatches (by step), a few per node
    not_observed: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return sum(self.mismatched.values())

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and sum(self.compared.values()) > 0

    def format(self, limit: int = 10) -> str:
        """A human-readable report: '0 mismatches' or the first differences."""
        total = sum(self.compared.values())
        lines = [f"{self.engine} vs {self.reference}: {self.mismatches} mismatches in {total} compared values "
                 f"({len(self.compared)} node outputs)"]
        if self.not_observed:
            lines.append("  not observed by " + self.engine + ": " + ", ".join(self.not_observed))
        for key, n in self.mismatched.items():
            if n:
                lines.append(f"  {key}: {n} of {self.compared[key]} values differ")
        if self.first:
            lines.append("  first differences:")
            for m in sorted(self.first, key=lambda m: (m.step, m.node))[:limit]:
                lines.append(f"    {m}")
        return "\n".join(lines)


def compare(reference: Traces, actual: Traces, reference_name: str = "int", engine: str = "engine",
            per_node: int = 5) -> Comparison:
    """Compare traces node by node, port by port (exact equality).

    Args:
        reference: traces of the golden engine.
        actual: traces of the engine under test.
        per_node: how many first mismatches to keep per node output.
    """
    out = Comparison(reference_name, engine)
    for node in reference:
        if node not in actual:
            out.not_observed.append(node)
            continue
        for port, ref in reference[node].items():
            if port not in actual[node]:
                continue
            got = np.asarray(actual[node][port])
            key = f"{node}.{port}"
            if got.shape != ref.shape:
                raise ValueError(f"{key}: {engine} trace has shape {got.shape}, reference {ref.shape}")
            diff = ref != got
            out.compared[key] = int(ref.size)
            out.mismatched[key] = int(diff.sum())
            if out.mismatched[key]:
                where = np.argwhere(diff)
                where = where[np.lexsort((where[:, 1], where[:, 0]))][:per_node]
                for w in where:
                    t, b, *idx = (int(i) for i in w)
                    out.first.append(Mismatch(node, port, t, b, tuple(idx), float(ref[tuple(w)]), float(got[tuple(w)])))
    return out

"""A readable, deterministic text dump of a graph (``npuc inspect``)."""

from __future__ import annotations

from .graph import Graph


def dump(graph: Graph) -> str:
    """One line per node: name, op type, inputs, output shape and parameters."""
    head = f"graph {graph.name}: {len(graph)} nodes, T={graph.num_steps}"
    if graph.profile is not None:
        head += f", profile {graph.profile.summary()}"
    rows = []
    for name in graph.topo_order():
        n = graph[name]
        ins = ", ".join(str(r) for r in n.inputs) or "-"
        shape = "x".join(map(str, n.shape)) if n.shapes else "?"
        rows.append((name, type(n.op).__name__, ins, shape, n.op.summary()))
    widths = [max(len(r[i]) for r in rows + [("node", "op", "inputs", "shape", "")]) for i in range(4)]
    lines = [head, "  ".join(h.ljust(w) for h, w in zip(("node", "op", "inputs", "shape"), widths)) + "  params"]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return "\n".join(lines)

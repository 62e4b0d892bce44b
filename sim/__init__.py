"""Golden simulators: float semantics (the source framework's arithmetic) and
integer semantics (the hardware's, per numeric profile), vectorized over batch
and time. `simulate` is the entry point; `compare` reports mismatches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..ir.graph import Graph
from .engine import SimResult

ENGINES = ("float", "int")


def simulate(
    graph: Graph,
    inputs: Any | Sequence[Any],
    engine: str = "float",
    probe: bool | Sequence[str] = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> SimResult:
    """Run a graph on user inputs with a golden engine.

    Args:
        graph: a verified graph; the integer engine needs a quantized graph
            (``graph.profile`` set and integer parameters on every node).
        inputs: the array the model's forward takes (numpy or torch), or a
            sequence of arrays for a multi-input graph, in each input's layout.
        engine: ``"float"`` or ``"int"``.
        probe: keep every node's per-step values (True) or those of named nodes.
        progress: optional ``progress(done, total, node)`` callback.

    Returns:
        `SimResult`; ``.output`` is the single output (``[T, B, ...]`` for a
        sequence output), ``.outputs`` all of them.
    """
    from . import attention_kernels, float_kernels, int_kernels  # noqa: F401  (kernel registration)
    from .engine import run

    n_in = len(graph.inputs())
    xs = list(inputs) if (n_in > 1 and isinstance(inputs, (list, tuple))) else [inputs]
    if engine == "float":
        return run(graph, xs, float_kernels.FLOAT, None, probe, progress)
    if engine == "int":
        if graph.profile is None:
            raise ValueError(
                f"graph '{graph.name}' has no numeric profile: the integer engine runs on a "
                "quantized graph (npuc compile --target ...)"
            )
        return run(graph, xs, int_kernels.INT, graph.profile, probe, progress)
    raise ValueError(f"unknown golden engine {engine!r}; choose from {ENGINES}")


__all__ = ["simulate", "SimResult", "ENGINES"]

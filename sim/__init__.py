"""Golden simulators: float semantics (the source framework's arithmetic) and
integer semantics (the hardware's, per numeric profile), vectorized over batch
and time. `simulate` is the entry point; `compare` reports mismatches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import UserError
from ..ir.graph import Graph
from .engine import SimResult, add_counts

ENGINES = ("float", "int")


def simulate(
    graph: Graph,
    inputs: Any | Sequence[Any],
    engine: str = "float",
    probe: bool | Sequence[str] = False,
    progress: Callable[[int, int, str], None] | None = None,
    chunk: int | None = None,
    threads: int | None = None,
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
        chunk: evaluate at most this many samples at a time (see `simulate_chunks`): memory stays
            bounded by one chunk plus the outputs, and inputs may be memory-mapped arrays
            (``np.load(path, mmap_mode='r')``), read one chunk at a time. The integer engine's
            results do not depend on it; the float engine's equal the model's forward on batches
            of ``chunk`` samples.
        threads: integer engine: how many threads run parts of the batch at once (default:
            ``torch.get_num_threads()``, at most one per usable core and per 16 samples; set
            ``torch.set_num_threads(1)`` or pass 1 for one; the float engine runs one). Results
            and counters do not depend on it.

    Returns:
        `SimResult`; ``.output`` is the single output (``[T, B, ...]`` for a
        sequence output), ``.outputs`` all of them.
    """
    if chunk is not None:
        if probe:
            raise UserError("probe keeps every node's values of every sample: simulate without chunk, "
                            "or probe a few samples")
        return _joined(graph, list(simulate_chunks(graph, inputs, engine, chunk, threads=threads)))
    from . import attention_kernels, float_kernels, int_kernels  # noqa: F401  (kernel registration)
    from .engine import run

    xs = _input_list(graph, inputs)
    if engine == "float":
        return run(graph, xs, float_kernels.FLOAT, None, probe, progress, threads)
    if engine == "int":
        if graph.profile is None:
            raise ValueError(
                f"graph '{graph.name}' has no numeric profile: the integer engine runs on a "
                "quantized graph (npuc compile --target ...)"
            )
        return run(graph, xs, int_kernels.INT, graph.profile, probe, progress, threads)
    raise ValueError(f"unknown golden engine {engine!r}; choose from {ENGINES}")


def _input_list(graph: Graph, inputs: Any) -> list[Any]:
    n_in = len(graph.inputs())
    return list(inputs) if (n_in > 1 and isinstance(inputs, (list, tuple))) else [inputs]


def _batch_axis(layout: str) -> int:
    return 1 if layout == "TB" else 0


def simulate_chunks(graph: Graph, inputs: Any | Sequence[Any], engine: str = "int",
                    chunk: int = 4096, **kwargs: Any) -> Iterator[tuple[int, int, SimResult]]:
    """`simulate` on consecutive slices of at most ``chunk`` samples, yielding
    ``(first, stop, result)`` per slice: reduce each result (accuracy, spike counts) and memory
    stays bounded by one chunk however large the data set (a memory-mapped ``.npy`` is read one
    slice at a time). ``kwargs`` go to `simulate` (e.g. ``probe``)."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise UserError(f"chunk must be a positive number of samples, got {chunk!r}")
    xs = _input_list(graph, inputs)
    axes = [_batch_axis(n.op.layout) for n in graph.inputs()]
    if len(xs) != len(axes):
        raise UserError(f"graph '{graph.name}' takes {len(axes)} input(s), got {len(xs)}")
    batch = int(np.shape(xs[0])[axes[0]])
    for lo in range(0, batch, int(chunk)):
        hi = min(lo + int(chunk), batch)
        part = []
        for x, ax in zip(xs, axes):
            piece = x[(slice(None),) * ax + (slice(lo, hi),)]
            part.append(np.array(piece) if isinstance(piece, np.ndarray) else piece)  # copies a memmap's slice
        yield lo, hi, simulate(graph, part if len(part) > 1 else part[0], engine, **kwargs)


def _joined(graph: Graph, parts: list[tuple[int, int, SimResult]]) -> SimResult:
    """One `SimResult` from per-chunk results (outputs joined along their batch axis)."""
    first = parts[0][2]
    outs = []
    for i, node in enumerate(graph.outputs()):
        op = node.op
        ax = 1 if op.decoding == "sequence" and op.layout == "TB" else 0
        outs.append(np.concatenate([r.outputs[i] for _, _, r in parts], axis=ax))
    stats: dict[str, dict[str, int]] = {}
    for _, _, r in parts:
        add_counts(stats, r.stats)
    return SimResult(outs, first.output_names, first.steps, None, stats, sum(r.seconds for _, _, r in parts),
                     max(r.threads for _, _, r in parts))


__all__ = ["simulate", "simulate_chunks", "SimResult", "ENGINES"]

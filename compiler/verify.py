"""``npuc verify``: a hardware engine (Lava or RTL) against the golden integer engine.

Exit status 0 with "0 mismatches", or 1 with a report naming the layer, neuron
and time step of the first differences. Every neuron layer's spikes and every
output are compared; membranes too where the engine exposes them.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .backends import check_target_kind, for_engine, run_engine
from .builddir import BuildDir
from .ir import LIF, Graph, Output
from .sim import simulate
from .sim.compare import Comparison, compare
from .sim.engine import SimResult


def verify(bd: BuildDir, engine: str, xs: list[np.ndarray], target: str | None = None,
           allow_modified: bool = False) -> tuple[Comparison, Graph, SimResult]:
    """Run ``engine`` and the golden integer engine on ``xs`` and compare them.

    Returns:
        the comparison, the quantized graph, and the hardware engine's result
        (outputs and traces, e.g. for accuracy figures without a second run).
    """
    target = check_target_kind(bd, engine, target) if target else bd.target_for_kind(for_engine(engine).kind)
    graph = bd.int_graph(target)
    x = xs if len(xs) > 1 else xs[0]
    ref = simulate(graph, x, "int", probe=True)
    got = run_engine(bd, engine, xs, target=target, probe=True, allow_modified=allow_modified)
    keep = {n.name for n in graph if isinstance(n.op, (LIF, Output))}
    ref_traces = {n: p for n, p in (ref.probes or {}).items() if n in keep}
    traces = dict(got.probes or {})
    for name, out in zip(got.output_names, got.outputs):
        traces.setdefault(name, {})["out"] = _as_time_major(graph[name].op, out)
    for name in ref_traces:
        if isinstance(graph[name].op, Output):
            ref_traces[name] = {"out": _as_time_major(graph[name].op, ref.outputs[ref.output_names.index(name)])}
    return compare(ref_traces, traces, "int", engine), graph, got


def _as_time_major(op: Output, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if op.decoding == "sequence":
        return a if op.layout == "TB" else np.swapaxes(a, 0, 1)
    return a[None]  # reduced outputs: one "step"


def verify_cli(args: argparse.Namespace) -> int:
    from .inputs import load_inputs

    bd = BuildDir(args.dir)
    xs = load_inputs(args.input)
    labels = None
    if getattr(args, "labels", None):
        from .inputs import load_labels_for

        labels = load_labels_for(args.labels, bd.float_graph(), xs)
    result, graph, got = verify(bd, args.engine, xs, args.target, allow_modified=args.allow_modified)
    print(result.format())
    if got.stats.get("rtl"):
        from .backends.rtl.sim import speed_line

        line = speed_line(got.stats["rtl"])
        if line:
            print(line, file=sys.stderr)
    if labels is not None:
        from .inputs import accuracy

        print(f"{args.engine} accuracy: {accuracy(got.outputs[0], graph.outputs()[0].op, labels):.4f} "
              f"on {len(labels)} labelled samples")
    if not result.ok:
        print(f"npuc verify: {args.engine} differs from the golden integer engine for '{graph.name}'", file=sys.stderr)
        return 1
    return 0

"""The golden simulator's driver: walks a graph and runs kernels over batch and time.

Engines differ only in their kernel tables (`npuc.sim.float_kernels`,
`npuc.sim.int_kernels`). The driver:

* converts user inputs to ``[T, B, ...]`` and encodes them;
* runs nodes in topological order; a node outside any recurrent loop is
  computed for all time steps at once (stateless ops batched over ``T*B`` or
  per step, neurons looping over ``T`` vectorized over batch and neurons);
* runs each recurrent group (nodes joined by ``delay=1`` edges) step by step;
* decodes outputs and optionally keeps every node's values (``probe=True``).
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import GraphError, UserError
from ..ir.graph import Graph, Ref
from ..ir.ops import LIF, Add, Conv1d, Conv2d, Dense, Input, MaxPool2d, Op, Output, Permute, Reshape
from ..ir.values import NumericProfile
from ..limits import check_memory
from .encoding import (
    InputError,
    check_finite,
    decode,
    encode,
    encode_int_spikes_float,
    to_time_major,
)

Values = dict[str, torch.Tensor]


@dataclass
class Context:
    """What kernels may read: the engine mode, the profile, sizes, a cache and counters."""

    mode: str
    profile: NumericProfile | None
    steps: int
    batch: int
    node: str = ""
    cache: dict[Any, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    needed: set[tuple[str, str]] = field(default_factory=set)
    kept: set[tuple[str, str]] = field(default_factory=set)  # probed ports
    # ports whose values leave the run (probed, or read by an Output): a kernel may reuse its
    # buffers between runs only for the others
    leaving: set[tuple[str, str]] = field(default_factory=set)
    float_out: bool = False  # the current node may return exact-integer floats (`_float_outputs`)
    channels_last: bool = False  # ... and keep them channels-last (`_channels_last_outputs`)
    ranges: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # this chunk's
    # (lo, hi) bounds of the current node's inputs where known without looking at the values
    # (spike ports; an input's extremes found while checking it), else None: set by the driver
    in_ranges: list[tuple[float, float] | None] = field(default_factory=list)
    # set by a stateless kernel that knows bounds of its result (a weighted sum's, from its weights
    # and input bounds): the driver keeps them in `ranges` where they hold for every step
    out_range: tuple[float, float] | None = None
    small_spikes: bool = False  # spike inputs only weighted ops read may come as uint8 (`KernelTable.small_spikes`)

    def count(self, key: str, n: int | torch.Tensor) -> None:
        """Add ``n`` events (e.g. saturations) to the current node's counter ``key``."""
        n = int(n)
        if n:
            d = self.stats.setdefault(self.node, {})
            d[key] = d.get(key, 0) + n


def add_counts(into: dict[str, dict[str, int]], stats: dict[str, dict[str, int]]) -> None:
    """Add a part's counters (per node and key) to ``into`` (a run's chunks, `simulate`'s chunks)."""
    for node, counts in stats.items():
        d = into.setdefault(node, {})
        for k, n in counts.items():
            d[k] = d.get(k, 0) + n


class StatelessKernel:
    """``apply(op, xs, ctx) -> {port: y}`` on inputs with any leading batch axis (``strided``: also
    on ``[T, B, ...]`` inputs whose batch axis is a strided slice, which it takes without a copy)."""

    def __init__(self, fn: Callable[..., Any], strided: bool = False) -> None:
        self.fn = fn
        self.strided = strided

    def apply(self, op: Op, xs: list[torch.Tensor], ctx: Context) -> Values:
        y = self.fn(op, xs, ctx)
        return y if isinstance(y, dict) else {op.ports[0]: y}


class StatefulKernel:
    """Subclass with ``init(op, shape, ctx) -> state`` and
    ``step(op, state, xs, t, ctx) -> {port: y}`` (inputs ``[B, ...]``)."""

    def init(self, op: Op, shape: tuple[int, ...], ctx: Context) -> Any:
        raise NotImplementedError

    def step(self, op: Op, state: Any, xs: list[torch.Tensor], t: int, ctx: Context) -> Values:
        raise NotImplementedError

    def prepare(self, op: Op, state: Any, xs: list[torch.Tensor], ctx: Context) -> None:
        """Optional: see all time steps' inputs ``[T, B, ...]`` before stepping (not called
        inside recurrent groups, where inputs are produced step by step)."""

    def prepare_range(self, op: Op, state: Any, rng: tuple[float, float], ctx: Context) -> None:
        """Optional, inside recurrent groups: bounds ``(lo, hi)`` the first input holds at every step."""

    def all_steps(self, op: Op, state: Any) -> Values | None:
        """Optional: every step's outputs ``[T, B, ...]`` when `prepare` computed them all."""
        return None


class KernelTable:
    """Kernels by op type (looked up along the op's class hierarchy)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._k: dict[type, StatelessKernel | StatefulKernel] = {}
        # whether this engine's weighted sums take uint8 spike inputs as they are (asked per run)
        self.small_spikes: Callable[[], bool] = lambda: False
        # pairs of nodes outside loops the engine may run as one: ``pairs(graph, ctx)`` gives
        # ``{second: (first, arg)}`` (the first's only reader is the second, which reads only it),
        # ``run_pair(first_node, second_node, arg, x, ctx)`` the second's ports from the first's input
        self.pairs: Callable[[Graph, Context], dict[str, tuple[str, Any]]] | None = None
        self.run_pair: Callable[..., Values] | None = None

    def stateless(self, *types: type, strided: bool = False) -> Callable:
        def deco(fn: Callable) -> Callable:
            for t in types:
                self._k[t] = StatelessKernel(fn, strided)
            return fn

        return deco

    def stateful(self, *types: type) -> Callable:
        def deco(cls: type[StatefulKernel]) -> type[StatefulKernel]:
            for t in types:
                self._k[t] = cls()
            return cls

        return deco

    def lookup(self, op: Op) -> StatelessKernel | StatefulKernel:
        for cls in type(op).__mro__:
            if cls in self._k:
                return self._k[cls]
        raise NotImplementedError(f"the {self.mode} engine has no kernel for {type(op).__name__}")


@dataclass
class SimResult:
    """Outputs (ordered by Output index), optional per-node probes, and counters."""

    outputs: list[np.ndarray]
    output_names: list[str]
    steps: int
    probes: dict[str, dict[str, np.ndarray]] | None = None
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    threads: int = 1  # threads that ran parts of the batch at once (integer engine)

    @property
    def output(self) -> np.ndarray:
        """The single output (raises if the graph has several)."""
        if len(self.outputs) != 1:
            raise ValueError(f"graph has {len(self.outputs)} outputs: use .outputs")
        return self.outputs[0]


def _shift(x: torch.Tensor, delay: int) -> torch.Tensor:
    """Values ``delay`` steps late along the time axis (zeros first)."""
    if delay == 0:
        return x
    pad = torch.zeros_like(x[:delay])
    return torch.cat([pad, x[:-delay]], 0)


def window_max(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """The maximum over each ``kernel`` window at ``stride`` of ``[N, C, H, W]`` ``x`` without
    padding, one spatial axis at a time, as ``torch.maximum`` of strided views."""
    for axis, (k, st) in enumerate(zip(kernel, stride)):
        dim = x.dim() - 2 + axis
        n = (x.shape[dim] - k) // st + 1
        parts = [x.narrow(dim, i, st * (n - 1) + 1)[(slice(None),) * dim + (slice(None, None, st),)] for i in range(k)]
        y = parts[0]
        for part in parts[1:]:
            y = torch.maximum(y, part)
        x = y
    return x


def run(
    graph: Graph,
    inputs: Sequence[Any],
    table: KernelTable,
    profile: NumericProfile | None = None,
    probe: bool | Sequence[str] = False,
    progress: Callable[[int, int, str], None] | None = None,
    threads: int | None = None,
) -> SimResult:
    """Simulate ``graph`` on user inputs with one engine.

    Args:
        graph: a verified graph.
        inputs: one array per `Input` node, in index order, in the input's layout.
        table: the engine's kernels.
        profile: numeric profile (integer engine).
        probe: keep every node's values (True) or those of the named nodes.
        progress: called as ``progress(done, total, node_name)``.
        threads: integer engine: chunks of the batch run at once in this many threads (default:
            `torch.get_num_threads`, at most one per usable core and per `MIN_THREAD_SAMPLES`
            samples). Results and counters do not depend on it.

    Returns:
        `SimResult` with numpy outputs (float32 for the float engine, int64 or
        float64 for the integer engine).
    """
    t0 = time.perf_counter()
    in_nodes = graph.inputs()
    if len(inputs) != len(in_nodes):
        raise ValueError(f"graph '{graph.name}' takes {len(in_nodes)} input(s), got {len(inputs)}")
    raw: dict[str, torch.Tensor] = {}
    steps: int | None = None
    batch: int | None = None
    for node, x in zip(in_nodes, inputs):
        # integer spikes: the integer check of every value (`_encode_input`) also fails on NaN and
        # infinities, which it then names; a pass over the input less (a tenth of norse's run)
        tm, s = to_time_major(node.name, node.op, x, graph.num_steps,
                              finite=not (table.mode == "int" and node.op.encoding.kind == "spikes"))
        if steps is not None and s != steps:
            raise ValueError(f"inputs disagree on the number of time steps ({steps} vs {s})")
        if batch is not None and tm.shape[1] != batch:
            raise ValueError(f"inputs disagree on the batch size ({batch} vs {tm.shape[1]})")
        steps, batch = s, int(tm.shape[1])
        raw[node.name] = tm
    assert steps is not None and batch is not None
    keep = set(n.name for n in graph) if probe is True else set(probe or ())
    # samples are independent: the integer engine (exact at any batch size) runs large batches
    # in chunks whose [T, B, ...] tensors stay cache-sized; the float engine keeps the user's
    # batch because float matmul rounding can depend on the call shape
    cache = _graph_cache(graph, table.mode, profile)
    chunk = max(batch, 1) if table.mode == "float" else _chunk_size(graph, steps, batch, cache)
    n_threads = _threads(threads, batch, table.mode)
    if n_threads > 1:  # at least one chunk per thread, all of equal size
        chunk = min(chunk, -(-batch // n_threads))
        chunk = -(-batch // -(-batch // chunk))
    check_memory(_estimate_bytes(graph, steps, batch, chunk * n_threads, keep, table.mode, cache),
                 f"simulating '{graph.name}' ({steps:,} steps x {batch:,} samples, {table.mode} engine)")

    def context() -> Context:
        return Context(table.mode, profile, steps, batch, cache=cache, small_spikes=table.small_spikes())

    def evaluate(lo: int, ctx: Context) -> dict[tuple[str, str], torch.Tensor]:
        hi = min(lo + chunk, batch)
        ctx.batch = hi - lo
        # one contiguous copy of the chunk (a batch slice of [T, B, ...] is strided): the kernels'
        # flattening to [T*B, ...] and the input checks then need no copies of their own; float
        # spikes only dense layers read stay a view (each step's rows are contiguous: `dense`
        # multiplies them step by step without a copy)
        views = _strided_inputs(graph, ctx, keep) if chunk < batch else set()
        part = ({k: v[:, lo:hi] if k in views and v.is_contiguous() else v[:, lo:hi].contiguous()
                 for k, v in raw.items()} if chunk < batch else raw)
        return _evaluate(graph, part, table, ctx, keep, progress if lo == 0 else None)

    starts = list(range(0, max(batch, 1), chunk))
    if n_threads > 1 and len(starts) > 1:
        # samples are independent and the integer engine exact at any chunk size: chunks run at
        # once in threads (torch's kernels and the compiled neuron loops release the GIL), each
        # with its own counters, added up in chunk order (the one-thread run's order)
        ctxs = [context() for _ in starts]
        futures = [_pool(n_threads).submit(evaluate, lo, c) for lo, c in zip(starts, ctxs)]
        wait(futures)
        parts = [f.result() for f in futures]  # the first failing chunk's error, as one thread raises it
        ctx = ctxs[0]
        for other in ctxs[1:]:
            add_counts(ctx.stats, other.stats)
    else:
        ctx = context()
        parts = [evaluate(lo, ctx) for lo in starts]
    values = parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts], 1) for k in parts[0]}

    outs = graph.outputs()
    # C order (a neuron layer's values may be held channels-last: `int_fused.Population`)
    decoded = [np.ascontiguousarray(decode(n.op, values[(n.name, "out")]).cpu().numpy()) for n in outs]
    probes = None
    if keep:
        probes = {}
        for (name, port), v in values.items():
            if name in keep:
                probes.setdefault(name, {})[port] = np.ascontiguousarray(v.cpu().numpy())
    return SimResult(decoded, [n.name for n in outs], steps, probes, ctx.stats, time.perf_counter() - t0,
                     n_threads if len(starts) > 1 else 1)


_GRAPH_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graph_cache(graph: Graph, mode: str, profile: NumericProfile | None) -> dict:
    """The kernel cache (parameter tensors, weight bounds, the graph's analysis) kept between runs
    of one graph, so that small batches do not pay for it again. Kernels key it by the ids of
    parameter arrays (which ops hold read-only, and the cache keeps alive); it is dropped when
    the graph's nodes, ops, edges, time folding or profile change."""
    keep = (mode, profile, [n.op for n in graph])  # alive, so that their ids are not reused
    sig = (mode, id(profile), tuple((n.name, id(n.op), n.inputs, n.meta.get("time_folded")) for n in graph))
    hit = _GRAPH_CACHES.get(graph)
    if hit is None or hit[0] != sig:
        hit = (sig, {"_alive": keep})
        _GRAPH_CACHES[graph] = hit
    return hit[1]


def _analysis(graph: Graph, ctx: Context) -> tuple[list[list[str]], set[tuple[str, str]]]:
    """The recurrent groups and the ports somebody reads (cached with the graph)."""
    if "_analysis" not in ctx.cache:
        needed = {(r.node, graph[r.node].port(r)) for n in graph for r in n.inputs}
        ctx.cache["_analysis"] = (graph.recurrent_groups(), needed)
    return ctx.cache["_analysis"]


MIN_THREAD_SAMPLES = 16
"""The fewest samples a thread of the integer engine takes (smaller shares cost more in per-step
overhead than a second core gains)."""

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _threads(asked: int | None, batch: int, mode: str) -> int:
    """How many threads run the integer engine's chunks of ``batch`` samples at once (the float
    engine: one; ``asked`` is checked either way)."""
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, (int, np.integer)) or asked < 1):
        raise UserError(f"threads must be a positive number, got {asked!r}")
    if mode != "int":
        return 1
    if asked is not None:
        return max(1, min(int(asked), batch))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores, batch // MIN_THREAD_SAMPLES))


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` threads kept for the process: the fused neuron kernels keep their buffers
    per thread (`int_kernels.LIFInt._population`), so the same threads find them again next run."""
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="npuc-sim")
        return _POOLS[n]


_CHUNK_ELEMENTS = 1 << 21  # ~16 MB per int64 [T, B, ...] tensor of the widest node


def _widths(graph: Graph, cache: dict | None) -> tuple[int, int]:
    """Values per sample and step: of all ports, and of the widest port of a node other than an
    input (cached with the graph when ``cache`` is given)."""
    if cache is not None and "_widths" in cache:
        return cache["_widths"]
    per_sample = sum(math.prod(sh) for n in graph for sh in n.shapes.values())
    # inputs are not counted in the widest: their values are the caller's, sliced per chunk
    widest = max((math.prod(sh) for n in graph if not isinstance(n.op, Input) for sh in n.shapes.values()), default=1)
    if cache is not None:
        cache["_widths"] = per_sample, widest
    return per_sample, widest


def _estimate_bytes(graph: Graph, steps: int, batch: int, chunk: int, keep: set[str], mode: str,
                    cache: dict | None = None) -> int:
    """An upper estimate of the [T, B, ...] tensors one run holds: every port of a chunk,
    plus the kept (probed) ports of the whole batch."""
    item = 4 if mode == "float" else 8
    per_sample = _widths(graph, cache)[0]
    kept = sum(math.prod(sh) for n in graph if n.name in keep for sh in n.shapes.values()) if keep else 0
    return steps * item * (min(chunk, batch) * per_sample + batch * kept)


def _chunk_size(graph: Graph, steps: int, batch: int, cache: dict | None = None) -> int:
    widest = _widths(graph, cache)[1]
    chunk = max(1, min(batch, _CHUNK_ELEMENTS // max(1, steps * widest)))  # >= 1 even for batch 0
    # chunks of equal size: a small last one would pay the per-step overhead for few samples
    return -(-batch // -(-batch // chunk)) if batch else chunk


def _evaluate(
    graph: Graph,
    raw: dict[str, torch.Tensor],
    table: KernelTable,
    ctx: Context,
    keep: set[str],
    progress: Callable[[int, int, str], None] | None,
) -> dict[tuple[str, str], torch.Tensor]:
    """Every node on time-major inputs ``raw``; returns the outputs' and kept nodes' values."""
    values: dict[tuple[str, str], torch.Tensor] = {}
    _, needed = _analysis(graph, ctx)
    ctx.ranges = {}
    floats = _float_outputs(graph, ctx, keep)
    # ports somebody reads (or probes): only these are stacked over time
    ctx.kept = {(n, p) for n in keep for p in graph[n].op.ports}
    ctx.needed = needed | ctx.kept
    if "_output_reads" not in ctx.cache:
        ctx.cache["_output_reads"] = {(r.node, graph[r.node].port(r)) for n in graph.outputs() for r in n.inputs}
    ctx.leaving = ctx.cache["_output_reads"] | ctx.kept
    with torch.no_grad():
        if _step_major(graph, ctx):
            _run_step_major(graph, raw, values, table, ctx, keep, progress)
        else:
            _run_schedule(graph, raw, values, table, ctx, keep, floats, progress)
    if "_output_names" not in ctx.cache:
        ctx.cache["_output_names"] = {n.name for n in graph.outputs()}
    outs = ctx.cache["_output_names"]
    return {k: v for k, v in values.items() if k[0] in keep or (k[0] in outs and k[1] == "out")}


def _run_schedule(graph: Graph, raw: dict[str, torch.Tensor], values: dict, table: KernelTable, ctx: Context,
                  keep: set[str], floats: set[str], progress: Callable[[int, int, str], None] | None) -> None:
    """Node by node in `_schedule` order (each for all steps), recurrent groups step by step."""
    batch_major = _batch_major_reads(graph, ctx)
    total, done = len(graph), 0
    pairs = _pairs(graph, table, ctx, keep)
    for kind, name, node, reads in _schedule(graph, ctx):
        if kind == "group":
            _run_group(graph, name, values, table, ctx)
            done += len(name)
            if progress:
                progress(done, total, name[-1])
            continue
        ctx.node = name
        if kind == "input":
            out = {"out": _encode_input(graph, name, raw[name], ctx, name in keep)}
        elif name in pairs and pairs[name] is None:  # the first of a pair: run with the second
            done += 1
            continue
        elif name in pairs:
            first, arg = pairs[name]
            ((key, delay),) = _reads(graph, ctx)[first]
            ctx.float_out, ctx.channels_last = name in floats, False
            out = table.run_pair(graph[first], node, arg, _shift(values[key], delay), ctx)
        elif kind == "output":
            out = {"out": _shift(values[reads[0][0]], reads[0][1])}
        else:
            ctx.in_ranges = _input_ranges(graph, name, ctx)
            ctx.float_out = name in floats
            ctx.channels_last = ctx.float_out and name in _channels_last_outputs(graph, ctx)
            ctx.out_range = None
            out = _run_node(node, [_shift(values[key], delay) for key, delay in reads], table, ctx, batch_major)
            if ctx.out_range is not None:  # found over all steps of this chunk
                ctx.ranges[(name, node.op.ports[0])] = ctx.out_range
        for port, v in out.items():
            values[(name, port)] = v
        done += 1
        if progress:
            progress(done, total, name)


def _pairs(graph: Graph, table: KernelTable, ctx: Context, keep: set[str]) -> dict[str, tuple[str, Any] | None]:
    """This run's pairs of nodes run as one (`KernelTable.pairs`): the second's name to ``(first,
    arg)``, the first's to None; not where either is probed or another node reads more of the
    second than its first port."""
    if table.pairs is None:
        return {}
    out: dict[str, tuple[str, Any] | None] = {}
    for second, (first, arg) in table.pairs(graph, ctx).items():
        extra = graph[second].op.ports[1:]
        if first not in keep and second not in keep and not any((second, p) in ctx.needed for p in extra):
            out[second], out[first] = (first, arg), None
    return out


def _schedule(graph: Graph, ctx: Context) -> list[tuple[str, Any, Any, list[tuple[tuple[str, str], int]]]]:
    """The recurrent groups in order as ``(kind, name, node, reads)``: kind ``input``, ``output``,
    ``node`` (outside loops) or ``group`` (then ``name`` is the group's list of names), ``reads``
    as in `_reads`. Cached with the graph: a small batch pays for the walk once."""
    if "_schedule" not in ctx.cache:
        plan = []
        reads = _reads(graph, ctx)
        for group in _analysis(graph, ctx)[0]:
            node = graph[group[0]]
            if len(group) > 1 or any(r.node == group[0] for r in node.inputs):
                plan.append(("group", group, None, []))
                continue
            kind = "input" if isinstance(node.op, Input) else "output" if isinstance(node.op, Output) else "node"
            plan.append((kind, node.name, node, reads[node.name]))
        ctx.cache["_schedule"] = plan
    return ctx.cache["_schedule"]


def _reads(graph: Graph, ctx: Context) -> dict[str, list[tuple[tuple[str, str], int]]]:
    """Per node, the ``((node, port), delay)`` of each input it reads: a library-form neuron's are
    its terms (`_term_refs`) in the float engine (cached with the graph)."""
    if "_reads" not in ctx.cache:
        ctx.cache["_reads"] = {n.name: [((r.node, graph[r.node].port(r)), r.delay)
                                        for r in _term_refs(graph, n, ctx) or n.inputs] for n in graph}
    return ctx.cache["_reads"]


def _float_inputs(graph: Graph, ctx: Context) -> set[str]:
    """The inputs only weighted ops read (cached with the graph)."""
    if "_float_inputs" not in ctx.cache:
        ctx.cache["_float_inputs"] = {n.name for n in graph.inputs()
                                      if all(type(graph[u].op) in _WEIGHTED for u, _ in graph.users(n.name))}
    return ctx.cache["_float_inputs"]


def _strided_inputs(graph: Graph, ctx: Context, keep: set[str]) -> set[str]:
    """Integer-engine inputs whose batch chunks may stay strided views: float spikes (checked
    per contiguous step) read only by `Dense` ops, which take ``[T, B, ...]`` views as they are."""
    if ctx.mode != "int":
        return set()
    if "_dense_inputs" not in ctx.cache:
        ctx.cache["_dense_inputs"] = {n.name for n in graph.inputs() if n.op.layout == "TB"
                                      and n.op.encoding.kind == "spikes"
                                      and all(type(graph[u].op) is Dense for u, _ in graph.users(n.name))}
    return ctx.cache["_dense_inputs"] - keep


def _encode_input(graph: Graph, name: str, x: torch.Tensor, ctx: Context, probed: bool) -> torch.Tensor:
    """An input's per-step values. Integer spikes only weighted ops read (and nobody probes) stay
    in their float type (exact integers: those ops multiply in float anyway) instead of a round
    trip through int64, or become uint8 where the engine's int8 products take them."""
    op = graph[name].op
    try:
        if ctx.mode == "int" and not probed and name in _float_inputs(graph, ctx):
            found = encode_int_spikes_float(op, x, ctx.steps, ctx.small_spikes)
            if found is not None:
                v, (lo, hi) = found
                ctx.ranges[(name, "out")] = min(lo, 0.0), max(hi, 0.0)  # 0: a delayed read's first value
                return v
        return encode(op, x, ctx.steps, ctx.mode)
    except InputError as e:
        check_finite(name, x)  # (`run` left it to this check): NaN or infinities are named as such
        if f"'{name}'" in str(e):
            raise
        raise InputError(f"input '{name}': {e}") from None


_WEIGHTED = (Dense, Conv1d, Conv2d)
_RANGE_KEEPING = (Reshape, Permute, MaxPool2d)  # values out are values in


def _static_range(graph: Graph, name: str, port: str) -> tuple[float, float] | None:
    """Bounds every value of a port holds at every step (and 0, a delayed edge's first value), when
    the op alone proves them: spikes, and reshapes or max pools of spikes."""
    op = graph[name].op
    if isinstance(op, LIF) and port == "spikes":
        if op.spike in ("binary", "bernoulli"):
            return 0.0, 1.0
        if op.spike == "ternary":
            return -1.0, 1.0
        return None if op.levels is None else (0.0, float(op.levels - 1))
    if isinstance(op, _RANGE_KEEPING) and len(graph[name].inputs) == 1:
        (r,) = graph[name].inputs
        return _static_range(graph, r.node, graph[r.node].port(r))
    return None


def _float_outputs(graph: Graph, ctx: Context, keep: set[str]) -> set[str]:
    """Integer-engine nodes whose values may stay exact-integer floats between two kernels that
    work in float anyway (saving conversions per value): weighted sums only neurons read (directly
    or through an `Add`, which sums exact floats in float, or a `MaxPool2d`), and binary spikes only
    weighted ops read. Never a probed node or one an Output reads."""
    if ctx.mode != "int":
        return set()
    if "_float_outputs" not in ctx.cache:
        found = set()
        for n in graph:
            users = [graph[u] for u, _ in graph.users(n.name)]
            if not users:
                continue
            if isinstance(n.op, _WEIGHTED) and all(_reaches_neurons(graph, u) for u in users):
                found.add(n.name)
            elif isinstance(n.op, Add) and all(isinstance(u.op, LIF) for u in users):
                found.add(n.name)  # a float sum when exact (`int_kernels.add`), else int64
            elif isinstance(n.op, MaxPool2d) and all(isinstance(u.op, LIF) for u in users):
                found.add(n.name)  # the maximum of exact floats is one of them
            elif (isinstance(n.op, LIF) and n.op.spike == "binary" and all(type(u.op) in _WEIGHTED for u in users)
                  and all(r.node != n.name or n.port(r) == "spikes" for u in users for r in u.inputs)):
                found.add(n.name)  # also inside a loop: its weighted sums take float rows as they are
        ctx.cache["_float_outputs"] = found
    return ctx.cache["_float_outputs"] - keep


def _channels_last_outputs(graph: Graph, ctx: Context) -> set[str]:
    """Float-output convolutions (`_float_outputs`) whose sums may stay channels-last, as oneDNN
    writes them: every reader a binary-spike neuron (the fused kernel then orders its neurons
    channels-last, `int_fused.Population`) or a max pool only such neurons read (the pool keeps
    the order). Other readers get the plain order (a copy here saves several in per-step torch ops)."""
    if "_channels_last" not in ctx.cache:
        def binary(name: str) -> bool:
            op = graph[name].op
            return isinstance(op, LIF) and op.spike == "binary"

        def fits(name: str) -> bool:
            if isinstance(graph[name].op, MaxPool2d):
                users = [u for u, _ in graph.users(name)]
                return bool(users) and all(binary(u) for u in users)
            return binary(name)

        ctx.cache["_channels_last"] = {n.name for n in graph if isinstance(n.op, Conv2d)
                                       and all(fits(u) for u, _ in graph.users(n.name))}
    return ctx.cache["_channels_last"]


def _reaches_neurons(graph: Graph, user: Any) -> bool:
    """Whether float values read by ``user`` only reach neurons' inputs: ``user`` is a neuron
    (outside loops its `prepare` converts all steps at once, inside it converts each step), or an
    `Add` or `MaxPool2d` only neurons read."""
    if isinstance(user.op, (Add, MaxPool2d)):
        return all(isinstance(graph[u].op, LIF) for u, _ in graph.users(user.name))
    return isinstance(user.op, LIF)


def _input_ranges(graph: Graph, name: str, ctx: Context) -> list[tuple[float, float] | None]:
    """`Context.in_ranges` for node ``name``: static bounds (cached with the graph), or an input's
    extremes this chunk (`Context.ranges`, set by `_encode_input`)."""
    if ctx.mode != "int":
        return []
    cache = ctx.cache.setdefault("_static_ranges", {})
    if name not in cache:
        cache[name] = [(r.node, graph[r.node].port(r), _static_range(graph, r.node, graph[r.node].port(r)))
                       for r in graph[name].inputs]
    return [known if known is not None else ctx.ranges.get((src, port)) for src, port, known in cache[name]]


def _step_major(graph: Graph, ctx: Context) -> bool:
    """Whether to run the float engine step by step through the whole graph, as the source model's
    own loop does: every op then sees the same ``[B, ...]`` call as in layer-by-layer order (so the
    results are the same bits) while each step's values stay in cache. Not when an op runs on the
    time-folded ``[T*B, ...]`` tensor, when a static input is computed once for all steps, or with
    delays longer than one step."""
    if "_step_major" not in ctx.cache:  # the graph's part (cached with it)
        ctx.cache["_step_major"] = (not any(n.meta.get("time_folded") for n in graph)
                                    and not any(isinstance(n.op, Input) and n.op.layout == "B" for n in graph)
                                    and all(r.delay <= 1 for n in graph for r in n.inputs))
    return ctx.mode == "float" and ctx.steps > 1 and ctx.cache["_step_major"]


def _run_step_major(graph: Graph, raw: dict[str, torch.Tensor], values: dict, table: KernelTable, ctx: Context,
                    keep: set[str], progress: Callable[[int, int, str], None] | None) -> None:
    """Every node for step 0, then step 1, ...; only outputs and kept ports are stacked over time.
    A stateless node nobody reads is skipped (the `Add` whose terms a library-form neuron sums itself)."""
    order = [n for group in _analysis(graph, ctx)[0] for n in group]
    reads = _reads(graph, ctx)
    wanted = {(n, p) for n in keep for p in graph[n].op.ports}
    wanted |= {(n.name, "out") for n in graph.outputs()}
    read = {key for name in order for key, _ in reads[name]} | wanted
    rows: dict[tuple[str, str], list[torch.Tensor]] = {}
    plan, states = [], {}
    for name in order:
        node = graph[name]
        ctx.node = name
        if isinstance(node.op, Input):
            values[(name, "out")] = encode(node.op, raw[name], ctx.steps, table.mode)
            continue
        k = None if isinstance(node.op, Output) else table.lookup(node.op)
        if isinstance(k, StatefulKernel):
            states[name] = k.init(node.op, node.shape, ctx)
        elif k is not None and not any((name, p) in read for p in node.op.ports):
            continue
        plan.append((name, node.op, k, reads[name], [p for p in node.op.ports if (name, p) in wanted]))
    prev: dict[tuple[str, str], torch.Tensor] = {}
    for t in range(ctx.steps):
        cur: dict[tuple[str, str], torch.Tensor] = {}
        for name, op, k, node_reads, kept in plan:
            ctx.node = name
            xs = [_read_step(graph, key, delay, t, values, cur, prev, ctx) for key, delay in node_reads]
            if k is None:  # an Output
                out = {"out": xs[0]}
            elif isinstance(k, StatefulKernel):
                out = k.step(op, states[name], xs, t, ctx)
            else:
                out = k.apply(op, xs, ctx)
            for p, y in out.items():
                cur[(name, p)] = y
            for p in kept:
                rows.setdefault((name, p), []).append(out[p])
        prev = cur
        if progress:
            progress(len(graph) * (t + 1) // ctx.steps, len(graph), order[-1])
    for key, seq in rows.items():
        values[key] = torch.stack(seq)


def _read_step(graph: Graph, key: tuple[str, str], delay: int, t: int, values: dict, cur: dict, prev: dict,
               ctx: Context) -> torch.Tensor:
    """Port ``key`` read ``delay`` steps late at step ``t`` in step-major order (graph inputs are
    whole ``[T, B, ...]`` tensors)."""
    if key in values:  # an encoded graph input
        full = values[key]
        return full[t - delay] if t >= delay else torch.zeros_like(full[0])
    if not delay:
        return cur[key]
    if t == 0:
        return torch.zeros((ctx.batch, *graph[key[0]].shapes[key[1]]), dtype=torch.float32)
    return prev[key]


def _run_node(node: Any, xs: list[torch.Tensor], table: KernelTable, ctx: Context,
              batch_major: frozenset = frozenset()) -> Values:
    """All time steps of one node outside recurrent loops; a neuron's ports in ``batch_major``
    are stacked ``[B, T, ...]`` (returned as their ``[T, B, ...]`` view, see `_batch_major_reads`)."""
    kernel = table.lookup(node.op)
    steps, batch = ctx.steps, ctx.batch
    if isinstance(kernel, StatelessKernel):
        folded_float = ctx.mode == "float" and node.meta.get("time_folded", False)
        if steps > 1 and not folded_float and all(x.stride(0) == 0 for x in xs):
            # time-invariant inputs (a static input repeated every step): compute one step and
            # repeat it; the per-step call shape [B, ...] is kept, so float results are unchanged
            one = _run_node(node, [x[:1] for x in xs], table, _one_step(ctx))
            return {p: y.expand((steps,) + tuple(y.shape[1:])) for p, y in one.items()}
        # Float results depend on the matmul call shape: evaluate per step ([B, ...]) unless
        # the source model applied this op to the time-folded [T*B, ...] tensor.
        folded = node.meta.get("time_folded", False)
        if ctx.mode == "float" and not folded:
            per = [kernel.apply(node.op, [x[t] for x in xs], ctx) for t in range(steps)]
            return {p: torch.stack([o[p] for o in per]) for p in per[0]}
        if ctx.mode == "float" and folded == "BT":
            # the source folded [B, T, ...] batch-major (sinabs): a matmul row's rounding
            # depends on its position, so fold in the same order
            flat = [x.transpose(0, 1).reshape((batch * steps,) + tuple(x.shape[2:])) for x in xs]
            out = kernel.apply(node.op, flat, ctx)
            return {p: y.reshape((batch, steps) + tuple(y.shape[1:])).transpose(0, 1) for p, y in out.items()}
        if kernel.strided and not all(x.is_contiguous() for x in xs):
            # a strided [T, B, ...] view (a batch chunk of the input): applied step by step as is
            return kernel.apply(node.op, list(xs), ctx)
        flat = [x.reshape((steps * batch,) + tuple(x.shape[2:])) for x in xs]
        out = kernel.apply(node.op, flat, ctx)
        return {p: y.reshape((steps, batch) + tuple(y.shape[1:])) for p, y in out.items()}
    state = kernel.init(node.op, node.shape, ctx)
    kernel.prepare(node.op, state, xs, ctx)
    whole = kernel.all_steps(node.op, state)
    if whole is not None:
        return {p: y for p, y in whole.items() if (node.name, p) in ctx.needed}
    per = [kernel.step(node.op, state, [x[t] for x in xs], t, ctx) for t in range(steps)]
    return {p: _stack([o[p] for o in per], 1).transpose(0, 1) if (node.name, p) in batch_major
            else _stack([o[p] for o in per]) for p in per[0] if (node.name, p) in ctx.needed}


def _batch_major_reads(graph: Graph, ctx: Context) -> frozenset:
    """Float-engine neuron ports that only ops folded batch-major read (``time_folded == 'BT'``,
    sinabs): stacked ``[B, T, ...]`` as the library stacks them, their readers' ``[B*T, ...]``
    is a view instead of a copy of every step's values (cached with the graph)."""
    if "_batch_major" not in ctx.cache:
        found = set()
        if ctx.mode == "float":
            for n in graph:
                if not isinstance(n.op, LIF):
                    continue
                for port in n.op.ports:
                    readers = [graph[u] for u, _ in graph.users(n.name)
                               if any(r.node == n.name and n.port(r) == port for r in graph[u].inputs)]
                    if readers and all(u.meta.get("time_folded") == "BT" and not isinstance(u.op, Output)
                                       and all(r.delay == 0 for r in u.inputs) for u in readers):
                        found.add((n.name, port))
        ctx.cache["_batch_major"] = frozenset(found)
    return ctx.cache["_batch_major"]


def _stack(rows: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.stack(rows, dim)``, or the buffer the rows already are (a kernel that wrote them in place)."""
    base = rows[0]._base
    if (base is not None and base.is_contiguous() and base.dim() == rows[0].dim() + 1 and base.shape[dim] == len(rows)
            and tuple(base.shape[:dim] + base.shape[dim + 1:]) == tuple(rows[0].shape)):
        # row t of the buffer starts t strides along ``dim`` in and has the buffer's other strides
        step, strides = base.stride(dim), base.stride()[:dim] + base.stride()[dim + 1:]
        first = base.storage_offset()
        if all(r._base is base and r.storage_offset() == first + t * step and r.stride() == strides
               for t, r in enumerate(rows)):
            return base
    return torch.stack(rows, dim)


def _one_step(ctx: Context) -> Context:
    """A view of the context for evaluating a single time step (shares cache and counters)."""
    one = Context(ctx.mode, ctx.profile, 1, ctx.batch, ctx.node, ctx.cache, ctx.stats, ctx.needed,
                  float_out=ctx.float_out, ranges=ctx.ranges, in_ranges=ctx.in_ranges)
    return one


def _run_group(graph: Graph, group: list[str], values: dict, table: KernelTable, ctx: Context) -> None:
    """A recurrent group, step by step; delayed edges read the previous step.

    Input bounds are gathered in the first step, member by member (a member's bounds then know
    those of the members before it): bounds a stateless member derives from bounds alone (not
    from one step's values) hold for every step, and a stateful member that knows its input's
    bounds for every step may prove checks idle (`StatefulKernel.prepare_range`)."""
    members = set(group)
    kernels = {n: table.lookup(graph[n].op) for n in group}
    ranges: dict[str, list] = {}
    states = {}
    for n in group:
        ctx.node = n
        if isinstance(kernels[n], StatefulKernel):
            states[n] = kernels[n].init(graph[n].op, graph[n].shape, ctx)
    floats = _float_outputs(graph, ctx, set(n for n, _ in ctx.kept))
    per_step: dict[tuple[str, str], list[torch.Tensor]] = {}
    for t in range(ctx.steps):
        for n in group:
            node = graph[n]
            ctx.node = n
            k = kernels[n]
            ctx.float_out = n in floats
            if t == 0:
                ranges[n] = _input_ranges(graph, n, ctx)
                if isinstance(k, StatefulKernel) and ranges[n] and ranges[n][0] is not None:
                    k.prepare_range(node.op, states[n], ranges[n][0], ctx)
            ctx.in_ranges = ranges[n]
            ctx.out_range = None
            xs = []
            for r in _term_refs(graph, node, ctx) or node.inputs:
                xs.append(_read(graph, r, t, members, values, per_step, ctx))
            if isinstance(k, StatefulKernel):
                out = k.step(node.op, states[n], xs, t, ctx)
            elif isinstance(node.op, Output):
                out = {"out": xs[0]}
            else:
                out = k.apply(node.op, xs, ctx)
                if t == 0 and ctx.out_range is not None and all(r is not None for r in ranges[n]):
                    ctx.ranges[(n, node.op.ports[0])] = ctx.out_range
            for p, y in out.items():
                per_step.setdefault((n, p), []).append(y)
    # only ports read outside the group (or probed) are stacked over time
    outside = {(r.node, graph[r.node].port(r)) for n in graph if n.name not in members for r in n.inputs}
    for key, seq in per_step.items():
        if key in outside or key in ctx.kept:
            values[key] = _stack(seq)


def _term_refs(graph: Graph, node: Any, ctx: Context) -> list[Ref] | None:
    """The inputs of the `Add` a library-form neuron reads, when the library sums those terms into
    its state itself (``form_args['terms']``, set by converters of recurrent cells): float32 rounds
    ``(beta*mem + x) + rec`` differently from ``beta*mem + (x + rec)``, so the form adds them one by
    one in the library's order. Integer sums are exact in any order: the int engine reads the Add."""
    op = node.op
    if ctx.mode != "float" or not isinstance(op, LIF) or "terms" not in op.form_args:
        return None
    (ref,) = node.inputs
    src = graph[ref.node]
    if not isinstance(src.op, Add) or ref.delay or len(src.inputs) != int(op.form_args["terms"]):
        raise GraphError(f"neuron '{node.name}': its float form sums {int(op.form_args['terms'])} input terms, "
                         f"but its input '{ref.node}' is not an Add of that many")
    return list(src.inputs)


def _read(graph: Graph, r: Ref, t: int, members: set, values: dict, per_step: dict, ctx: Context) -> torch.Tensor:
    src = graph[r.node]
    key = (r.node, src.port(r))
    if r.node in members:
        if r.delay:
            if t == 0:  # a recurrent input is zero before the first step
                dtype = torch.float32 if ctx.mode == "float" else torch.int64
                return torch.zeros((ctx.batch, *src.shapes[key[1]]), dtype=dtype)
            return per_step[key][t - 1]
        return per_step[key][t]
    full = values[key]
    if r.delay:
        return torch.zeros_like(full[0]) if t == 0 else full[t - 1]
    return full[t]

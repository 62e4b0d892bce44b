"""NIR (Neuromorphic Intermediate Representation, nir 1.0.x) import.

A NIR graph describes one time step of a network whose neurons are
continuous-time ODEs. npuc discretizes them with forward Euler at a step
``dt`` (seconds), the input current ``x_t`` entering the same step, as the
snnTorch and Norse NIR importers do (see docs/nir-onnx.md)::

    LIF      tau dv/dt = v_leak - v + r x       alpha = 1 - dt/tau, gain = dt r/tau,
                                                bias = dt v_leak/tau
    CubaLIF  tau_syn dI/dt = -I + w_in x        alpha_i = 1 - dt/tau_syn, c = dt w_in/tau_syn,
             tau_mem dv/dt = v_leak - v + r I   alpha = 1 - dt/tau_mem,
                                                gain = (dt r/tau_mem) c, bias = dt v_leak/tau_mem
    IF / I   dv/dt = r x                        alpha = 1, gain = dt r
    LI       as LIF, no spikes, output v        reset "none", consumers read port "v"
    Threshold  z = H(x - thr)                   LIF alpha = 0, gain = 1, reset "none"

i.e. ``v_t = alpha v_{t-1} + gain x_t + bias`` (the IR `LIF` equations; the
IR current ``i`` of a CubaLIF is NIR's ``I / c``). Spikes are ``v > v_threshold``.

Reset: nir < 1.0.6 documents subtraction (``v - v_threshold``); nir >= 1.0.6
nodes carry ``v_reset`` and reset to it. A node with ``v_reset`` resets to it, a
node without (a file written by nir < 1.0.6, or a graph object of such a nir)
subtracts; ``metadata["npuc.reset"]`` (what npuc exported) and the ``reset``
argument override both. Note that a `nir.LIF` built in Python with nir >= 1.0.7
gets ``v_reset = 0`` by default, i.e. reset to zero.

Edges are identities; several edges into one node are summed (an IR `Add`).
A cycle is closed by the importer with ``delay=1`` on the DFS back edges
(depth-first from the inputs, names in sorted order), each moved upstream past
stateless nodes: for ``lif -> w_rec -> lif`` that is ``lif -> w_rec``, i.e. the
recurrent Affine reads the previous step's spikes (zero before the first step)
and its bias enters every step, the first included, as in snntorch's RSynaptic.
`nir.Delay` nodes of one step become delayed edges.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import networkx as nx
import nir
import numpy as np
from nir.serialization import hdf2dict

from ..ir import Graph, GraphError, Ref, ops
from .errors import FrontendError
from .nir_common import (
    DEFAULT_DT,
    NIR_TYPES,
    NIR_VERSION,
    RESETS,
    STATELESS,
    feedback_edges,
    has_field,
    ir_name,
    nir_graph,
)
from .nir_common import to_str as _str

__all__ = ["DEFAULT_DT", "FrontendError", "import_nir"]

_NIR_TYPES = NIR_TYPES
_ir_name = ir_name


def import_nir(
    src: str | os.PathLike | nir.NIRGraph,
    dt: float | None = None,
    steps: int | None = None,
    *,
    reset: str | None = None,
    name: str | None = None,
) -> Graph:
    """Import a NIR graph (a ``.nir`` HDF5 file or a `nir.NIRGraph`) as an npuc graph.

    Args:
        src: path of a file written by ``nir.write`` or a graph object.
        dt: Euler step in the NIR time unit; ``None`` takes ``metadata["npuc.dt"]``
            of a graph written by npuc, else `DEFAULT_DT`.
        steps: time steps per sample. Given: inputs are static ``[B, ...]``
            values repeated every step (layout ``B``). ``None``: inputs are
            sequences ``[T, B, ...]`` (layout ``TB``) and T comes from the data.
        reset: override the neuron reset: ``"subtract"`` (nir < 1.0.6 docstrings),
            ``"value"`` (reset to ``v_reset``, nir >= 1.0.6; 0 when absent) or
            ``"none"``. ``None`` follows ``metadata["npuc.reset"]``, then
            ``v_reset`` if the node has one, else subtraction.
        name: graph name (default: the file stem or ``"nir"``).

    Returns:
        A verified `Graph`; outputs are per-step sequences (layout ``TB``).

    Raises:
        FrontendError: unreadable file, unknown or unsupported node type, a
            parameter without an IR equivalent, or a shape mismatch (naming the node).
    """
    if reset is not None and reset not in RESETS:
        raise FrontendError(f"reset={reset!r} is not one of {list(RESETS)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise FrontendError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(src, nir.NIRGraph):
        root, where = src, "NIR graph"
    elif isinstance(src, (str, os.PathLike)):
        root, where = _read_file(Path(src)), str(src)
    else:
        raise FrontendError(f"cannot import a {type(src).__name__} as NIR: pass a path or a nir.NIRGraph")
    if dt is None:
        dt = float(np.asarray(root.metadata.get("npuc.dt", DEFAULT_DT))) if root.metadata else DEFAULT_DT
    if not (np.isfinite(dt) and dt > 0):
        raise FrontendError(f"dt must be a positive number, got {dt!r}")
    gname = name or (Path(src).stem if isinstance(src, (str, os.PathLike)) else "nir")
    imp = _Importer(root, where, float(dt), steps, reset, _ir_name(gname))
    graph = imp.run()
    for msg in imp.warnings:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return graph


def _read_file(path: Path) -> nir.NIRGraph:
    """Read a NIR file written by any nir 1.0.x, keeping whether a neuron had ``v_reset``.

    Not ``nir.read``: nir >= 1.0.6 fills in ``v_reset = 0`` for files written
    without it (by nir < 1.0.6, whose neurons reset by subtraction), nir < 1.0.6
    rejects files with it, and nir >= 1.0.5 type-checks the graph on reading.
    """
    if not path.is_file():
        raise FrontendError(f"{path}: no such NIR file")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise FrontendError(f"{path}: not a NIR file (no 'node' group)")
            data = hdf2dict(f["node"])
    except OSError as e:
        raise FrontendError(f"{path}: not a NIR (HDF5) file: {e}") from None
    node = _node_from_dict(data, "", path)
    if not isinstance(node, nir.NIRGraph):
        raise FrontendError(f"{path}: the root node is a {type(node).__name__}, not a NIRGraph")
    return node


def _node_from_dict(d: Any, where: str, path: Path) -> nir.NIRNode:
    label = f"{path}: node '{where or '<root>'}'"
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise FrontendError(f"{label}: malformed (no 'type' field)")
    d = dict(d)
    t = d["type"]
    if t not in _NIR_TYPES:
        raise FrontendError(f"{label}: unknown NIR node type '{t}' (supported: {sorted(_NIR_TYPES)})")
    if not hasattr(nir, t):
        raise FrontendError(f"{label}: the installed nir {NIR_VERSION} has no '{t}' node")
    try:
        if t == "NIRGraph":
            nodes = d.get("nodes", {})
            if not isinstance(nodes, dict):
                raise FrontendError(f"{label}: 'nodes' is not a group")
            edges = [(_str(a), _str(b)) for a, b in np.asarray(d.get("edges", []), dtype=object).reshape(-1, 2)]
            sub = {k: _node_from_dict(v, f"{where}.{k}" if where else k, path) for k, v in nodes.items()}
            return nir_graph(sub, edges, d.get("metadata", {}))
        has_v_reset = has_field(t, "v_reset")
        v_reset = d.pop("v_reset", None) if not has_v_reset else d.get("v_reset")
        node = nir.dict2NIRNode(d)
    except FrontendError:
        raise
    except (AssertionError, TypeError, ValueError, KeyError, IndexError) as e:
        raise FrontendError(f"{label} ({t}): malformed: {type(e).__name__}: {e}") from None
    if has_v_reset or v_reset is not None:
        # absent in the file: the neuron subtracts (see the module docstring), whatever
        # default the installed nir filled in; present: reset to it (nir < 1.0.6 lacks the field)
        node.v_reset = None if v_reset is None else np.asarray(v_reset)
    return node


def _arr(x: Any, label: str) -> np.ndarray:
    """A float64 copy of a NIR parameter (numpy, torch tensor or scalar)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.array(x, dtype=np.float64, order="C")  # float results depend on the layout
    except (TypeError, ValueError) as e:
        raise FrontendError(f"{label}: not numeric ({e})") from None
    if np.any(np.isnan(a)):
        raise FrontendError(f"{label}: contains NaN")
    return a


def _compress(a: np.ndarray) -> np.ndarray:
    """The smallest broadcastable form of a per-neuron array: every axis along
    which its float32 values (what the IR stores) do not vary shrinks to 1, and
    a uniform array becomes a scalar (e.g. per-channel ``(C, 1, 1)``)."""
    a32 = a.astype(np.float32)
    for ax in range(a.ndim):
        first = a32.take([0], axis=ax)
        if a.shape[ax] > 1 and np.array_equal(a32, np.broadcast_to(first, a32.shape)):
            a, a32 = a.take([0], axis=ax), first
    return a.reshape(()) if a.size == 1 else a


def _shape(t: Any) -> tuple[int, ...] | None:
    """A declared NIR type (``{"input": shape}``) as a tuple, or None if unknown/empty."""
    if not isinstance(t, dict) or len(t) != 1:
        return None
    (s,) = t.values()
    if s is None:
        return None
    s = np.asarray(s).reshape(-1)
    if s.size == 0:
        return None
    return tuple(int(v) for v in s)


@dataclass
class _Unit:
    """One NIR node after nested graphs are flattened."""

    path: str  # flat name, "sub.node" inside nested graphs
    node: nir.NIRNode
    kind: str  # "input" | "output" | "op" | "alias" (nested Input/Output) | "delay"
    preds: list[str] = field(default_factory=list)
    delay: int = 0  # steps, for "delay"


@dataclass
class _Real:
    """A unit that becomes IR node(s): its inputs as (real source, delay)."""

    unit: _Unit
    ins: list[list] = field(default_factory=list)  # [src_path, delay]
    ir: str = ""  # IR name of its output node
    port: str | None = None  # IR port consumers read
    out_delay: int = 0  # materialized multi-input Delay nodes


class _Importer:
    def __init__(self, root: nir.NIRGraph, where: str, dt: float, steps: int | None, reset: str | None, name: str):
        self.root, self.where, self.dt, self.steps, self.reset = root, where, dt, steps, reset
        self.g = Graph(name, steps)
        self.units: dict[str, _Unit] = {}
        self.warnings: list[str] = []

    def err(self, path: str, msg: str) -> FrontendError:
        u = self.units.get(path)
        t = f" ({type(u.node).__name__})" if u is not None else ""
        return FrontendError(f"{self.where}: NIR node '{path}'{t}: {msg}")

    # -- structure ---------------------------------------------------------
    def run(self) -> Graph:
        self._flatten(self.root, "", top=True)
        reals = self._resolve()
        self._break_cycles(reals)
        self._emit(reals)
        try:
            self.g.verify()
        except GraphError as e:
            raise FrontendError(f"{self.where}: {e}") from None
        self._check_declared(reals)
        self.g.meta["source"] = {"format": "nir", "file": self.where, "dt": self.dt, "nir_version": NIR_VERSION}
        return self.g

    def _flatten(self, graph: nir.NIRGraph, prefix: str, top: bool) -> tuple[str | None, str | None]:
        """Add ``graph``'s nodes as units; return the entry/exit paths of a nested graph."""
        entry: dict[str, str] = {}
        exit_: dict[str, str] = {}
        ins, outs = [], []
        if not isinstance(graph.nodes, dict) or not graph.nodes:
            raise FrontendError(f"{self.where}: graph '{prefix or '<root>'}' has no nodes")
        for key in graph.nodes:
            node = graph.nodes[key]
            path = f"{prefix}{key}"
            if isinstance(node, nir.NIRGraph):
                entry[key], exit_[key] = self._flatten(node, path + ".", top=False)
                continue
            if type(node).__name__ not in _NIR_TYPES:
                raise FrontendError(
                    f"{self.where}: NIR node '{path}' has unknown type {type(node).__name__} "
                    f"(supported: {sorted(_NIR_TYPES - {'NIRGraph'})})"
                )
            if isinstance(node, nir.Input):
                kind = "input" if top else "alias"
                ins.append(path)
            elif isinstance(node, nir.Output):
                kind = "output" if top else "alias"
                outs.append(path)
            elif isinstance(node, nir.Delay):
                kind = "delay"
            else:
                kind = "op"
            self.units[path] = _Unit(path, node, kind)
            entry[key] = exit_[key] = path
        for e in graph.edges:
            try:
                a, b = (_str(x) for x in e)
            except (TypeError, ValueError):
                raise FrontendError(f"{self.where}: malformed edge {e!r} in graph '{prefix or '<root>'}'") from None
            for x in (a, b):
                if x not in entry:
                    raise FrontendError(
                        f"{self.where}: edge ({a!r}, {b!r}) names unknown node '{prefix}{x}'"
                    )
            src, dst = exit_[a], entry[b]
            u = self.units[dst]
            if src in u.preds:
                self.warnings.append(f"{self.where}: duplicate NIR edge ({src}, {dst}) ignored")
                continue
            u.preds.append(src)
        if top:
            return None, None
        if len(ins) != 1 or len(outs) != 1:
            raise FrontendError(
                f"{self.where}: nested graph '{prefix[:-1]}' has {len(ins)} Input and {len(outs)} Output "
                "nodes; npuc flattens nested graphs with exactly one of each"
            )
        return ins[0], outs[0]

    def _resolve(self) -> dict[str, _Real]:
        """Real nodes and their inputs, looking through one-input aliases and delays."""
        for u in self.units.values():
            if u.kind == "delay":
                u.delay = self._delay_steps(u)
        reals = {}
        for path in sorted(self.units):
            u = self.units[path]
            if u.kind == "input":
                if u.preds:
                    raise self.err(path, f"an Input cannot have incoming edges (from {u.preds})")
            elif not u.preds:
                raise self.err(path, "has no incoming edge")
            if u.kind in ("input", "output", "op") or len(u.preds) > 1:
                reals[path] = _Real(u, out_delay=u.delay if u.kind == "delay" else 0)
        for r in reals.values():
            for p in r.unit.preds:
                r.ins.append(list(self._source(p, reals, set())))
        return reals

    def _source(self, path: str, reals: dict[str, _Real], seen: set) -> tuple[str, int]:
        if path in reals:
            return path, reals[path].out_delay
        if path in seen:
            raise self.err(path, "is part of a loop of Input/Output/Delay nodes only")
        seen.add(path)
        u = self.units[path]
        src, d = self._source(u.preds[0], reals, seen)
        return src, d + (u.delay if u.kind == "delay" else 0)

    def _delay_steps(self, u: _Unit) -> int:
        d = _arr(u.node.delay, f"node '{u.path}' field 'delay'") / self.dt
        k = np.round(d)
        if d.size == 0 or np.any(np.abs(d - k) > 1e-6 * np.maximum(1.0, np.abs(d))) or np.any(k != k.reshape(-1)[0]):
            raise self.err(
                u.path, f"delay {np.unique(d * self.dt)} is not one whole number of steps of dt={self.dt} "
                "for every element (npuc edges delay by 0 or 1 step)"
            )
        return int(k.reshape(-1)[0])

    def _break_cycles(self, reals: dict[str, _Real]) -> None:
        """Put delay=1 on the back edges of a DFS over same-step edges (sorted names),
        each moved up past stateless nodes to the output of the neuron (`feedback_edges`)."""
        back = feedback_edges({p: [s for s, d in r.ins if d == 0] for p, r in reals.items()},
                              [p for p, r in reals.items() if r.unit.kind == "input"],
                              {p for p, r in reals.items() if isinstance(r.unit.node, STATELESS)})
        for dst, src in back:
            for item in reals[dst].ins:
                if item[0] == src and item[1] == 0:
                    item[1] = 1
        for p, r in reals.items():
            for src, d in r.ins:
                if d > 1:
                    raise self.err(p, f"input from '{src}' is delayed by {d} steps; npuc edges delay by 0 or 1")

    # -- nodes -------------------------------------------------------------
    def _emit(self, reals: dict[str, _Real]) -> None:
        dag = nx.DiGraph()
        dag.add_nodes_from(reals)
        for p, r in reals.items():
            for src, d in r.ins:
                if d == 0:
                    dag.add_edge(src, p)
        order = list(nx.lexicographical_topological_sort(dag))
        used: set[str] = set()
        for p in order:
            base = _ir_name(p)
            nm = base
            k = 1
            while nm in used:
                nm = f"{base}_{k}"
                k += 1
            used.add(nm)
            reals[p].ir = nm
            if isinstance(reals[p].unit.node, (nir.LI, nir.I)):
                reals[p].port = "v"  # a leaky integrator outputs its membrane
        inputs = sorted(p for p, r in reals.items() if r.unit.kind == "input")
        outputs = sorted(p for p, r in reals.items() if r.unit.kind == "output")
        for p in order:
            r = reals[p]
            refs = [Ref(reals[s].ir, reals[s].port, d) for s, d in r.ins]
            try:
                self._emit_one(r, refs, reals, inputs, outputs, used)
            except GraphError as e:
                raise self.err(p, str(e)) from None
            except ValueError as e:
                if isinstance(e, FrontendError):
                    raise
                raise self.err(p, str(e)) from None

    def _emit_one(self, r: _Real, refs: list[Ref], reals: dict, inputs: list, outputs: list, used: set) -> None:
        u, g = r.unit, self.g
        meta = {"nir_type": type(u.node).__name__}
        if u.path != r.ir:
            meta["nir_name"] = u.path
        if u.kind == "input":
            shape = self._input_shape(u, reals)
            layout = "B" if self.steps is not None else "TB"
            g.add(r.ir, ops.Input(shape, layout=layout, index=inputs.index(u.path)), meta=meta)
            return
        if len(refs) > 1:
            if u.kind in ("alias", "delay"):
                g.add(r.ir, ops.Add(), refs, meta=meta)
                return
            s = f"{r.ir}.sum"
            k = 1
            while s in used:
                s = f"{r.ir}.sum_{k}"
                k += 1
            used.add(s)
            g.add(s, ops.Add(), refs, meta={"nir_sum_of": u.path})
            refs = [Ref(s)]
        if u.kind == "output":
            g.add(r.ir, ops.Output(index=outputs.index(u.path)), refs, meta=meta)
            return
        g.add(r.ir, self._op(u, refs), refs, meta=meta)

    def _input_shape(self, u: _Unit, reals: dict) -> tuple[int, ...]:
        shape = _shape(u.node.output_type) or _shape(u.node.input_type)
        if shape is None:
            raise self.err(u.path, "has no shape")
        consumers = [r.unit for r in reals.values() if any(s == u.path for s, _ in r.ins)]
        declared = [_shape(c.node.input_type) for c in consumers if c.kind == "op"]
        declared = [d for d in declared if d is not None]
        if declared and all(d == declared[0] for d in declared):
            k = len(declared[0])
            if len(shape) > k and shape[-k:] == declared[0]:
                self.warnings.append(
                    f"{self.where}: NIR Input '{u.path}' has shape {list(shape)}, its consumers take "
                    f"{list(declared[0])}: dropping the leading batch/time axes the exporter kept from "
                    "its sample data"
                )
                shape = shape[-k:]
        return shape

    def _in_shape(self, refs: list[Ref]) -> tuple[int, ...] | None:
        r = refs[0]
        if r.node not in self.g:
            return None
        n = self.g[r.node]
        return n.shapes.get(n.port(r)) if n.shapes else None

    def _op(self, u: _Unit, refs: list[Ref]) -> Any:
        n, p = u.node, u.path
        a = lambda x, f: _arr(x, f"{self.where}: NIR node '{p}' field '{f}'")  # noqa: E731
        if isinstance(n, nir.Affine):
            return ops.Dense(self._w2(a(n.weight, "weight"), p), a(n.bias, "bias"))
        if isinstance(n, nir.Linear):
            return ops.Dense(self._w2(a(n.weight, "weight"), p))
        if isinstance(n, (nir.Conv1d, nir.Conv2d)):
            nd = 1 if isinstance(n, nir.Conv1d) else 2
            w = a(n.weight, "weight")
            k = w.shape[2:]
            dil = _ints(n.dilation, nd, "dilation", p)
            pad = self._padding(n.padding, k, dil, nd, p, _ints(n.stride, nd, "stride", p))
            cls = ops.Conv1d if nd == 1 else ops.Conv2d
            return cls(w, a(n.bias, "bias"), _ints(n.stride, nd, "stride", p), pad, dil, int(np.asarray(n.groups)))
        if isinstance(n, (nir.SumPool2d, nir.AvgPool2d)):
            cls = ops.SumPool2d if isinstance(n, nir.SumPool2d) else ops.AvgPool2d
            return cls(_ints(n.kernel_size, 2, "kernel_size", p), _ints(n.stride, 2, "stride", p),
                       _ints(n.padding, 2, "padding", p))
        if isinstance(n, nir.Flatten):
            return ops.Reshape(self._flatten_shape(n, refs, p))
        if isinstance(n, nir.Scale):
            return ops.Scale(_compress(a(n.scale, "scale")))
        if isinstance(n, nir.Threshold):
            thr = a(n.threshold, "threshold")
            return ops.LIF(alpha=0.0, gain=1.0, bias=0.0, threshold=_compress(thr), reset="none")
        return self._neuron(n, p, a)

    def _neuron(self, n: nir.NIRNode, p: str, a: Any) -> Any:
        dt = self.dt
        if isinstance(n, (nir.LIF, nir.LI)):
            tau = self._tau(a(n.tau, "tau"), p, "tau")
            alpha, gain, bias = 1.0 - dt / tau, dt * a(n.r, "r") / tau, dt * a(n.v_leak, "v_leak") / tau
            if isinstance(n, nir.LI):
                return ops.LIF(alpha=_compress(alpha), gain=_compress(gain), bias=_compress(bias), reset="none")
            mode, value = self._reset(n, p)
            return ops.LIF(alpha=_compress(alpha), gain=_compress(gain), bias=_compress(bias),
                           threshold=_compress(a(n.v_threshold, "v_threshold")), reset=mode, reset_value=value)
        if isinstance(n, nir.CubaLIF):
            ts = self._tau(a(n.tau_syn, "tau_syn"), p, "tau_syn")
            tm = self._tau(a(n.tau_mem, "tau_mem"), p, "tau_mem")
            c = dt * a(n.w_in, "w_in") / ts
            mode, value = self._reset(n, p)
            return ops.LIF(
                alpha=_compress(1.0 - dt / tm), alpha_i=_compress(1.0 - dt / ts),
                gain=_compress(dt * a(n.r, "r") / tm * c), bias=_compress(dt * a(n.v_leak, "v_leak") / tm),
                threshold=_compress(a(n.v_threshold, "v_threshold")), reset=mode, reset_value=value,
            )
        if isinstance(n, nir.IF):
            if dt != 1.0 and np.all(a(n.r, "r") == 1):
                self.warnings.append(
                    f"{self.where}: NIR node '{p}': IF with r = 1 at dt={dt:g} adds {dt:g} x per step; sinabs "
                    "(and the NIR paper's CNN) write r = 1 for v += x per step: import such files with dt=1 (--dt 1)"
                )
            mode, value = self._reset(n, p)
            return ops.IF(alpha=1.0, gain=_compress(dt * a(n.r, "r")),
                          threshold=_compress(a(n.v_threshold, "v_threshold")), reset=mode, reset_value=value)
        if isinstance(n, nir.I):
            return ops.LIF(alpha=1.0, gain=_compress(dt * a(n.r, "r")), reset="none")
        raise self.err(p, "has no npuc equivalent")

    def _tau(self, tau: np.ndarray, p: str, fname: str) -> np.ndarray:
        if np.any(tau <= 0):
            raise self.err(p, f"field '{fname}' must be positive, got min {tau.min()}")
        if np.any(self.dt / tau > 1):
            self.warnings.append(
                f"{self.where}: NIR node '{p}': dt={self.dt} exceeds {fname}={tau.min():.3g}, so forward Euler "
                f"gives a negative decay {1 - self.dt / tau.min():.3g}. Does the file use another time unit? "
                "(norse 1.1 writes tau = dt_norse * tau_mem: import its files with dt=dt_norse**2)"
            )
        return tau

    def _reset(self, n: nir.NIRNode, p: str) -> tuple[str, float]:
        md = n.metadata if isinstance(getattr(n, "metadata", None), dict) else {}
        v_reset = getattr(n, "v_reset", None)
        mode = self.reset
        if mode is None:
            m = md.get("npuc.reset")
            m = _str(m) if m is not None else None
            if m in RESETS:
                mode = m
                v_reset = md.get("npuc.v_reset", v_reset)
            elif v_reset is not None:
                mode = "value"
            else:
                mode = "subtract"  # no v_reset: the nir < 1.0.6 docstrings, v <- v - v_threshold
        if mode != "value":
            return mode, 0.0
        if v_reset is None:
            return mode, 0.0
        vr = _arr(v_reset, f"{self.where}: NIR node '{p}' field 'v_reset'").reshape(-1)
        if vr.size and np.any(vr != vr[0]):
            raise self.err(p, f"per-neuron v_reset {np.unique(vr)[:4]}... has no IR equivalent (one reset value per population)")
        return mode, float(vr[0]) if vr.size else 0.0

    def _w2(self, w: np.ndarray, p: str) -> np.ndarray:
        if w.ndim != 2:
            raise self.err(p, f"weight of shape {list(w.shape)}: npuc supports 2-d [out, in] weights only")
        return w

    def _padding(self, pad: Any, k: Sequence[int], dil: tuple, nd: int, p: str, stride: tuple) -> tuple[int, ...]:
        if isinstance(pad, (str, bytes)):
            pad = _str(pad)
            if pad == "valid":
                return (0,) * nd
            if pad == "same":
                total = [d * (kk - 1) for d, kk in zip(dil, k)]
                if any(t % 2 for t in total) or any(s != 1 for s in stride):
                    raise self.err(p, f"padding 'same' with kernel {list(k)} needs asymmetric padding; npuc pads symmetrically")
                return tuple(t // 2 for t in total)
            raise self.err(p, f"padding {pad!r} is not 'same', 'valid' or integers")
        return _ints(pad, nd, "padding", p)

    def _flatten_shape(self, n: nir.Flatten, refs: list[Ref], p: str) -> tuple[int, ...]:
        s = self._in_shape(refs)
        if s is None:
            s = _shape(n.input_type)
        start, end = int(np.asarray(n.start_dim)), int(np.asarray(n.end_dim))
        if s is None:
            if start == 0 and end == -1:
                return (-1,)
            raise self.err(p, "Flatten with an unknown input shape (inside a recurrent loop?)")
        nd = len(s)
        a, b = start % nd if start < 0 else start, end % nd if end < 0 else end
        if not (0 <= a <= b < nd):
            raise self.err(p, f"start_dim={start}, end_dim={end} do not fit a {nd}-d input {list(s)}")
        return (*s[:a], -1, *s[b + 1:])

    def _check_declared(self, reals: dict[str, _Real]) -> None:
        """Compare the shapes NIR nodes declare with what the IR inferred."""
        for p, r in reals.items():
            u = r.unit
            if u.kind not in ("op", "output") or r.ir not in self.g:
                continue
            node = self.g[r.ir]
            checks = [("output", _shape(u.node.output_type), node.shapes.get(r.port or node.op.ports[0]))]
            if r.ins:
                src = self.g[node.inputs[0].node]
                declared = _shape(u.node.input_type)
                if declared and isinstance(u.node, (nir.Conv1d, nir.Conv2d)):
                    # nir 1.0 declares weight.shape[1] input channels, which is C_in / groups
                    declared = (int(np.asarray(u.node.groups)) * declared[0], *declared[1:])
                checks.append(("input", declared, src.shapes.get(src.port(node.inputs[0]))))
            for what, declared, actual in checks:
                if declared is None or actual is None:
                    continue
                actual = tuple(actual)
                if u.kind == "output" and len(declared) > len(actual) and declared[len(declared) - len(actual):] == actual:
                    continue  # an Output shape with the exporter's batch/time axes
                if declared != actual:
                    raise self.err(p, f"shape mismatch: declares {what} shape {list(declared)}, "
                                      f"but the graph gives {list(actual)}")


def _ints(x: Any, n: int, fname: str, p: str) -> tuple[int, ...]:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n or np.any(a != np.round(a)):
        raise FrontendError(f"NIR node '{p}' field '{fname}': expected {n} integer(s), got {a.tolist()}")
    return tuple(int(v) for v in a)



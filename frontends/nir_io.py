"""NIR (Neuromorphic Intermediate Representation, nir 1.0) import and export.

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
NIR 1.0's documented reset is subtraction (``v - v_threshold``); NIR >= 1.1
nodes carry ``v_reset`` and reset to it. npuc records the reset it exported
in ``metadata["npuc.reset"]`` so its own round trips are exact.

Edges are identities; several edges into one node are summed (an IR `Add`).
A cycle is closed by the importer with ``delay=1`` on the DFS back edges
(depth-first from the inputs, names in sorted order): for ``lif -> w_rec ->
lif`` that is ``w_rec -> lif``, i.e. the recurrent input is the previous
step's spikes. `nir.Delay` nodes of one step become delayed edges.
"""

from __future__ import annotations

import os
import re
import tempfile
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

from ..ir import (
    IF,
    LIF,
    Add,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Dense,
    Graph,
    GraphError,
    Input,
    Output,
    Ref,
    Reshape,
    Scale,
    SumPool2d,
)
from .errors import FrontendError

__all__ = ["DEFAULT_DT", "FrontendError", "export_nir", "import_nir", "write_nir"]

DEFAULT_DT = 1e-4
"""Euler step (seconds) when neither the caller nor the file gives one.
snnTorch exports with ``dt = 1e-4`` (``tau = dt/(1-beta)``, ``r = tau/dt``)."""

RESETS = ("subtract", "value", "none")
_IR_NAME = re.compile(r"[^A-Za-z0-9_.:\-]")
_NIR_TYPES = {
    "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
    "Threshold", "LI", "LIF", "CubaLIF", "IF", "I", "Delay", "Input", "Output", "NIRGraph",
}


# =============================================================================
# Import
# =============================================================================


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
        reset: override the neuron reset: ``"subtract"`` (NIR 1.0 docstrings),
            ``"value"`` (reset to ``v_reset``, NIR >= 1.1; 0 when absent) or
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
    """Read a NIR file, accepting ``v_reset`` fields written by NIR >= 1.1."""
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
    try:
        if t == "NIRGraph":
            nodes = d.get("nodes", {})
            if not isinstance(nodes, dict):
                raise FrontendError(f"{label}: 'nodes' is not a group")
            edges = [(_str(a), _str(b)) for a, b in np.asarray(d.get("edges", []), dtype=object).reshape(-1, 2)]
            sub = {k: _node_from_dict(v, f"{where}.{k}" if where else k, path) for k, v in nodes.items()}
            return nir.NIRGraph(nodes=sub, edges=edges, metadata=dict(d.get("metadata", {})))
        v_reset = d.pop("v_reset", None) if "v_reset" in d and not _has_field(t, "v_reset") else None
        node = nir.dict2NIRNode(d)
    except FrontendError:
        raise
    except (AssertionError, TypeError, ValueError, KeyError, IndexError) as e:
        raise FrontendError(f"{label} ({t}): malformed: {type(e).__name__}: {e}") from None
    if v_reset is not None:
        node.v_reset = np.asarray(v_reset)  # a NIR >= 1.1 field; nir 1.0 classes lack it
    return node


def _has_field(type_name: str, fname: str) -> bool:
    cls = getattr(nir, type_name)
    return fname in getattr(cls, "__dataclass_fields__", {})


def _str(x: Any) -> str:
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def _ir_name(s: str) -> str:
    s = _IR_NAME.sub("_", str(s)) or "n"
    return s if s[0] not in ".:-" else "n" + s


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
        self.g.meta["source"] = {"format": "nir", "file": self.where, "dt": self.dt, "nir_version": nir.version}
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
        """Put delay=1 on the back edges of a DFS over same-step edges (sorted names)."""
        back = feedback_edges({p: [s for s, d in r.ins if d == 0] for p, r in reals.items()},
                              [p for p, r in reals.items() if r.unit.kind == "input"])
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
            g.add(r.ir, Input(shape, layout=layout, index=inputs.index(u.path)), meta=meta)
            return
        if len(refs) > 1:
            if u.kind in ("alias", "delay"):
                g.add(r.ir, Add(), refs, meta=meta)
                return
            s = f"{r.ir}.sum"
            k = 1
            while s in used:
                s = f"{r.ir}.sum_{k}"
                k += 1
            used.add(s)
            g.add(s, Add(), refs, meta={"nir_sum_of": u.path})
            refs = [Ref(s)]
        if u.kind == "output":
            g.add(r.ir, Output(index=outputs.index(u.path)), refs, meta=meta)
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
            return Dense(self._w2(a(n.weight, "weight"), p), a(n.bias, "bias"))
        if isinstance(n, nir.Linear):
            return Dense(self._w2(a(n.weight, "weight"), p))
        if isinstance(n, (nir.Conv1d, nir.Conv2d)):
            nd = 1 if isinstance(n, nir.Conv1d) else 2
            w = a(n.weight, "weight")
            k = w.shape[2:]
            dil = _ints(n.dilation, nd, "dilation", p)
            pad = self._padding(n.padding, k, dil, nd, p, _ints(n.stride, nd, "stride", p))
            cls = Conv1d if nd == 1 else Conv2d
            return cls(w, a(n.bias, "bias"), _ints(n.stride, nd, "stride", p), pad, dil, int(np.asarray(n.groups)))
        if isinstance(n, (nir.SumPool2d, nir.AvgPool2d)):
            cls = SumPool2d if isinstance(n, nir.SumPool2d) else AvgPool2d
            return cls(_ints(n.kernel_size, 2, "kernel_size", p), _ints(n.stride, 2, "stride", p),
                       _ints(n.padding, 2, "padding", p))
        if isinstance(n, nir.Flatten):
            return Reshape(self._flatten_shape(n, refs, p))
        if isinstance(n, nir.Scale):
            return Scale(_compress(a(n.scale, "scale")))
        if isinstance(n, nir.Threshold):
            thr = a(n.threshold, "threshold")
            return LIF(alpha=0.0, gain=1.0, bias=0.0, threshold=_compress(thr), reset="none")
        return self._neuron(n, p, a)

    def _neuron(self, n: nir.NIRNode, p: str, a: Any) -> Any:
        dt = self.dt
        if isinstance(n, (nir.LIF, nir.LI)):
            tau = self._tau(a(n.tau, "tau"), p, "tau")
            alpha, gain, bias = 1.0 - dt / tau, dt * a(n.r, "r") / tau, dt * a(n.v_leak, "v_leak") / tau
            if isinstance(n, nir.LI):
                return LIF(alpha=_compress(alpha), gain=_compress(gain), bias=_compress(bias), reset="none")
            mode, value = self._reset(n, p)
            return LIF(alpha=_compress(alpha), gain=_compress(gain), bias=_compress(bias),
                       threshold=_compress(a(n.v_threshold, "v_threshold")), reset=mode, reset_value=value)
        if isinstance(n, nir.CubaLIF):
            ts = self._tau(a(n.tau_syn, "tau_syn"), p, "tau_syn")
            tm = self._tau(a(n.tau_mem, "tau_mem"), p, "tau_mem")
            c = dt * a(n.w_in, "w_in") / ts
            mode, value = self._reset(n, p)
            return LIF(
                alpha=_compress(1.0 - dt / tm), alpha_i=_compress(1.0 - dt / ts),
                gain=_compress(dt * a(n.r, "r") / tm * c), bias=_compress(dt * a(n.v_leak, "v_leak") / tm),
                threshold=_compress(a(n.v_threshold, "v_threshold")), reset=mode, reset_value=value,
            )
        if isinstance(n, nir.IF):
            mode, value = self._reset(n, p)
            return IF(alpha=1.0, gain=_compress(dt * a(n.r, "r")),
                      threshold=_compress(a(n.v_threshold, "v_threshold")), reset=mode, reset_value=value)
        if isinstance(n, nir.I):
            return LIF(alpha=1.0, gain=_compress(dt * a(n.r, "r")), reset="none")
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
                mode = "subtract"  # the NIR 1.0 docstrings: v <- v - v_threshold
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


def feedback_edges(preds: dict[str, list[str]], inputs: Sequence[str]) -> list[tuple[str, str]]:
    """Edges ``(dst, src)`` that close cycles: back edges of a depth-first search
    that starts at ``inputs`` (sorted) and visits successors in sorted name order,
    then restarts from any unvisited node (sorted). Deterministic in the names only."""
    succ: dict[str, list[str]] = {p: [] for p in preds}
    for dst, srcs in preds.items():
        for s in srcs:
            succ.setdefault(s, []).append(dst)
    for s in succ:
        succ[s] = sorted(set(succ[s]))
    state: dict[str, int] = {}  # 1 on stack, 2 done
    back: list[tuple[str, str]] = []
    for root in [*sorted(inputs), *sorted(succ)]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.append((nxt, node))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return back


def _ints(x: Any, n: int, fname: str, p: str) -> tuple[int, ...]:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n or np.any(a != np.round(a)):
        raise FrontendError(f"NIR node '{p}' field '{fname}': expected {n} integer(s), got {a.tolist()}")
    return tuple(int(v) for v in a)


# =============================================================================
# Export
# =============================================================================


def export_nir(graph: Graph, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """Export an npuc graph as a NIR graph, inverting the import's Euler convention.

    ``Dense`` becomes Affine (Linear without bias), convolutions and pools their
    NIR nodes, ``Reshape`` of a contiguous axis range Flatten, ``Scale`` Scale,
    ``Add`` several edges into its consumer, and ``LIF``/``IF`` LIF, CubaLIF,
    IF, Threshold (``alpha = 0``, ``gain = 1``, no bias), LI or I (no reset,
    membrane read out)::

        tau = dt / (1 - alpha), r = gain / (1 - alpha), v_leak = bias / (1 - alpha)
        CubaLIF: tau_syn = dt / (1 - alpha_i), w_in = 1 / (1 - alpha_i)   (so I = i)
        IF / I:  r = gain / dt

    Delayed edges that the importer would put on the same edges (the DFS back
    edges of each cycle) stay plain NIR edges; otherwise every delayed edge
    becomes a `nir.Delay` of ``dt``.

    Warns (`UserWarning`, naming the node) for every semantic NIR cannot hold:
    reset other than subtraction (kept only in ``metadata["npuc.reset"]``),
    delayed reset timing, ``>=`` comparison, ternary/multilevel/bernoulli spikes,
    ``v_min``, ``v_init``, library float forms, time-folded evaluation, input
    encodings, output decodings and integer parameters.

    Raises:
        FrontendError: an op NIR cannot express (BatchNorm, MaxPool2d, Permute,
            a Dense on a multi-axis input, ...), naming the node.
    """
    out, msgs = _export(graph, dt)
    for msg in msgs:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return out


def _export(graph: Graph, dt: float) -> tuple[nir.NIRGraph, list[str]]:
    if not (np.isfinite(dt) and dt > 0):
        raise FrontendError(f"dt must be a positive number, got {dt!r}")
    try:
        graph.verify()
    except GraphError as e:
        raise FrontendError(f"cannot export graph '{graph.name}': {e}") from None
    exp = _Exporter(graph, float(dt))
    return exp.run(), exp.warnings


def write_nir(graph: Graph, path: str | os.PathLike, dt: float = DEFAULT_DT) -> Path:
    """Export ``graph`` (see `export_nir`) and write it with ``nir.write``.

    The file is written to a temporary name and renamed into place, so a
    failure never leaves a half-written file. Same graph -> identical bytes.
    """
    ng, msgs = _export(graph, dt)
    for msg in msgs:
        warnings.warn(msg, UserWarning, stacklevel=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".npuc-", suffix=".nir", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, ng)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Exporter:
    def __init__(self, graph: Graph, dt: float):
        self.g, self.dt = graph, dt
        self.nodes: dict[str, nir.NIRNode] = {}
        self.readout: dict[str, str] = {}  # LIF name -> port its consumers read
        self.warnings: list[str] = []

    def warn(self, name: str, msg: str) -> None:
        self.warnings.append(f"NIR export, node '{name}': {msg}")

    def err(self, name: str, msg: str) -> FrontendError:
        op = self.g[name].op
        return FrontendError(f"cannot export node '{name}' ({type(op).__name__}) to NIR: {msg}")

    def run(self) -> nir.NIRGraph:
        g = self.g
        if g.profile is not None:
            self.warnings.append(
                f"NIR export of graph '{g.name}': integer parameters (profile {g.profile.name}) are not "
                "exported; NIR holds the float model"
            )
        order = g.topo_order()
        for name in order:
            if not isinstance(g[name].op, Add):
                self._ports(name)
        for name in order:
            op = g[name].op
            if not isinstance(op, Add):
                self.nodes[name] = self._node(name, op)
        edges, delayed = self._edges(order)
        back = feedback_edges({n: [s for s, d in edges if d == n] for n in self.nodes},
                              [n for n in self.nodes if isinstance(self.nodes[n], nir.Input)])
        plain = [(s, d) for s, d in edges]
        if {(s, d) for d, s in back} != set(delayed):
            plain = [e for e in edges if e not in delayed]
            for s, d in delayed:
                dn = s + ".delay"
                k = 1
                while dn in self.nodes or dn in g:
                    dn = f"{s}.delay_{k}"
                    k += 1
                port = self.readout.get(s)
                src = g[s]
                shape = src.shapes[port or src.op.ports[0]]
                self.nodes[dn] = nir.Delay(delay=np.full(shape, self.dt))
                plain += [(s, dn), (dn, d)]
        return nir.NIRGraph(nodes=self.nodes, edges=plain, metadata={"npuc.dt": self.dt, "npuc.graph": g.name})

    def _ports(self, name: str) -> None:
        """Which port of a LIF its consumers read (NIR nodes have one output)."""
        node = self.g[name]
        if not isinstance(node.op, LIF):
            return
        ports = set()
        for user, idx in self.g.users(name):
            r = self.g[user].inputs[idx]
            ports.add(node.port(r))
        if "i" in ports:
            raise self.err(name, "its synaptic current 'i' is read; NIR nodes output spikes or (LI) the membrane")
        if "v" in ports and "spikes" in ports:
            raise self.err(name, "both spikes and membrane 'v' are read; a NIR node has one output")
        self.readout[name] = "v" if "v" in ports else "spikes"

    def _edges(self, order: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        edges: list[tuple[str, str]] = []
        delayed: list[tuple[str, str]] = []
        for name in order:
            node = self.g[name]
            if isinstance(node.op, Add):
                continue
            for r in node.inputs:
                for src, port, d in self._expand(r, 0):
                    want = self.readout.get(src)
                    srcnode = self.g[src]
                    p = port or srcnode.op.ports[0]
                    if want is not None and p != want:
                        raise self.err(src, f"port '{p}' is read where the NIR node outputs '{want}'")
                    if d > 1:
                        raise self.err(name, f"input from '{src}' is delayed by {d} steps (two delayed edges in series)")
                    if (src, name) in edges:
                        raise self.err(name, f"reads '{src}' twice (NIR edges are a set)")
                    edges.append((src, name))
                    if d:
                        delayed.append((src, name))
        return edges, delayed

    def _expand(self, r: Ref, delay: int) -> list[tuple[str, str | None, int]]:
        node = self.g[r.node]
        if isinstance(node.op, Add):
            out = []
            for rr in node.inputs:
                out += self._expand(rr, delay + r.delay)
            return out
        return [(r.node, r.port, delay + r.delay)]

    def _in_shape(self, name: str) -> tuple[int, ...]:
        r = self.g[name].inputs[0]
        src = self.g[r.node]
        return tuple(src.shapes[src.port(r)])

    def _node(self, name: str, op: Any) -> nir.NIRNode:
        node = self.g[name]
        if node.meta.get("time_folded"):
            self.warn(name, "evaluated on the time-folded [T*B, ...] tensor by its source library; NIR "
                        "evaluates per step (float rounding of matmuls may differ)")
        f32 = lambda x: np.array(x, dtype=np.float32)  # noqa: E731
        if isinstance(op, Input):
            if op.encoding.kind not in ("current", "spikes"):
                self.warn(name, f"the {op.encoding.kind} input encoding is not part of NIR; the graph takes per-step values")
            return nir.Input(input_type=np.array(op.shape))
        if isinstance(op, Output):
            if op.decoding != "sequence":
                self.warn(name, f"the '{op.decoding}' output decoding is not part of NIR; the graph emits per-step values")
            return nir.Output(output_type=np.array(node.shape))
        if isinstance(op, Dense):
            if len(self._in_shape(name)) != 1:
                raise self.err(name, f"input shape {list(self._in_shape(name))}: NIR Affine maps a 1-d vector")
            if op.bias is None:
                return nir.Linear(weight=f32(op.weight))
            return nir.Affine(weight=f32(op.weight), bias=f32(op.bias))
        if isinstance(op, Conv2d):
            s = self._in_shape(name)
            bias = f32(op.bias) if op.bias is not None else np.zeros(op.weight.shape[0], np.float32)
            return nir.Conv2d(input_shape=tuple(s[1:]), weight=f32(op.weight), stride=tuple(op.stride),
                              padding=tuple(op.padding), dilation=tuple(op.dilation), groups=op.groups, bias=bias)
        if isinstance(op, Conv1d):
            s = self._in_shape(name)
            bias = f32(op.bias) if op.bias is not None else np.zeros(op.weight.shape[0], np.float32)
            return nir.Conv1d(input_shape=s[1], weight=f32(op.weight), stride=op.stride[0], padding=op.padding[0],
                              dilation=op.dilation[0], groups=op.groups, bias=bias)
        if isinstance(op, (SumPool2d, AvgPool2d)) and type(op) in (SumPool2d, AvgPool2d):
            cls = nir.SumPool2d if isinstance(op, SumPool2d) else nir.AvgPool2d
            return cls(kernel_size=np.array(op.kernel), stride=np.array(op.stride), padding=np.array(op.padding))
        if isinstance(op, Reshape):
            return self._flatten(name)
        if isinstance(op, Scale):
            return nir.Scale(scale=np.broadcast_to(f32(op.factor), self._in_shape(name)).copy())
        if isinstance(op, LIF):
            return self._lif(name, op)
        hint = " (run the fold-batchnorm pass first)" if type(op).__name__ == "BatchNorm" else ""
        raise self.err(name, f"NIR 1.0 has no {type(op).__name__} node{hint}")

    def _flatten(self, name: str) -> nir.NIRNode:
        s, out = self._in_shape(name), tuple(self.g[name].shape)
        for a in range(len(s)):
            for b in range(a, len(s)):
                if (*s[:a], int(np.prod(s[a:b + 1])), *s[b + 1:]) == out:
                    return nir.Flatten(input_type={"input": np.array(s)}, start_dim=a, end_dim=b if b < len(s) - 1 else -1)
        raise self.err(name, f"reshape {list(s)} -> {list(out)} is not a flatten of contiguous axes")

    def _lif(self, name: str, op: LIF) -> nir.NIRNode:
        shape = tuple(self.g[name].shape)
        dt = self.dt
        full = lambda x: np.broadcast_to(np.asarray(x, dtype=np.float64), shape).copy()  # noqa: E731
        alpha, gain, bias, thr = full(op.alpha), full(op.gain), full(op.bias), full(op.threshold)
        readout = self.readout.get(name, "spikes")
        if readout == "v":
            if op.reset != "none":
                raise self.err(name, f"its membrane is read after a {op.reset} reset; NIR's LI/I have no reset")
            if op.cuba:
                raise self.err(name, "a current-based leaky integrator (CubaLI) is not in NIR 1.0")
            self._lost(name, op, spiking=False)
            if np.all(alpha == 1) and np.all(bias == 0):
                return nir.I(r=gain / dt)
            if np.any(alpha == 1):
                raise self.err(name, "alpha = 1 (no leak) with a bias has no NIR form")
            k = 1.0 - alpha
            return nir.LI(tau=dt / k, r=gain / k, v_leak=bias / k)
        same_or_none = op.reset == "none" or op.reset_timing == "same"
        if (not op.cuba and np.all(alpha == 0) and np.all(gain == 1) and np.all(bias == 0) and same_or_none
                and op.spike == "binary" and op.compare == "gt"):
            return nir.Threshold(threshold=thr)  # exactly H(x - thr): v is multiplied by 0
        self._lost(name, op, spiking=True)
        md = {"npuc.reset": op.reset}
        if op.reset == "value":
            md["npuc.v_reset"] = float(op.reset_value)
        if np.all(alpha == 1) and not op.cuba:
            if np.any(bias != 0):
                raise self.err(name, "an integrate-and-fire neuron with a bias has no NIR form (IF has no v_leak)")
            return nir.IF(r=gain / dt, v_threshold=thr, metadata=md)
        if np.any(alpha == 1):
            raise self.err(name, "alpha = 1 (no leak) on some neurons only, or in a CUBA neuron: no NIR form")
        k = 1.0 - alpha
        if not op.cuba:
            return nir.LIF(tau=dt / k, r=gain / k, v_leak=bias / k, v_threshold=thr, metadata=md)
        ai = full(op.alpha_i)
        if np.any(ai == 1):
            raise self.err(name, "alpha_i = 1 (a non-decaying current) has no NIR CubaLIF form")
        ki = 1.0 - ai
        return nir.CubaLIF(tau_syn=dt / ki, tau_mem=dt / k, r=gain / k, v_leak=bias / k,
                           v_threshold=thr, w_in=1.0 / ki, metadata=md)

    def _lost(self, name: str, op: LIF, spiking: bool) -> None:
        if spiking:
            if op.reset == "subtract":
                self.warn(name, "subtract reset is NIR 1.0's documented reset, but NIR >= 1.1 and the snnTorch/Norse "
                            "importers reset to v_reset (0); npuc keeps it in metadata['npuc.reset']")
            elif op.reset == "value":
                self.warn(name, f"reset to {op.reset_value} has no NIR 1.0 field (NIR 1.0 resets by subtraction); "
                            "npuc keeps it in metadata['npuc.reset'/'npuc.v_reset']")
            else:
                self.warn(name, "a spiking neuron without reset has no NIR form; npuc keeps it in metadata['npuc.reset']")
            if op.reset != "none" and op.reset_timing != "same":
                self.warn(name, f"reset timing '{op.reset_timing}' (reset applied one step late) is lost: NIR resets in the same step")
            if op.compare != "gt":
                self.warn(name, "spike comparison v >= threshold is lost: NIR fires on v > threshold")
            if op.spike != "binary":
                self.warn(name, f"{op.spike} spikes are lost: NIR neurons emit binary spikes")
        if op.v_min is not None:
            self.warn(name, "the lower membrane bound v_min is lost")
        if op.v_init != 0:
            self.warn(name, f"the initial membrane v_init={op.v_init} is lost (NIR has no initial state)")
        if op.form != "npuc":
            self.warn(name, f"the float arithmetic order of form '{op.form}' is lost; NIR holds the canonical dynamics only")

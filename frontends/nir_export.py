"""NIR export: an npuc graph as a `nir.NIRGraph` (the inverse of `nir_import`'s
Euler convention), written with ``nir.write``.

Each IR op exports through one function registered in `NIR_EXPORT` (op class ->
function); an op without one is refused with a clear error. The file holds the
float model; what NIR cannot hold is warned about once per node and, where npuc
needs it for its own round trip, kept in node metadata (``npuc.reset``).

Reset (see `nir_common`): nir < 1.0.6 has no ``v_reset`` and documents reset by
subtraction; nir >= 1.0.6 writes ``v_reset`` and documents reset to it. So the
warning for a neuron depends on the installed nir: with nir >= 1.0.6 a value
reset exports exactly and a subtract reset is written as ``v_reset = 0`` plus
metadata; with nir < 1.0.6 it is the other way round.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import nir
import numpy as np

from ..ir import Graph, GraphError, Ref, ops
from ..ir.optable import OpTable
from .errors import FrontendError
from .nir_common import (
    DEFAULT_DT,
    HAS_V_RESET,
    NIR_VERSION,
    STATELESS,
    TYPE_CHECKS,
    V_RESET_SINCE,
    feedback_edges,
    nir_graph,
)

__all__ = ["DEFAULT_DT", "NIR_EXPORT", "FrontendError", "export_nir", "write_nir"]

NIR_EXPORT = OpTable("NIR export")
"""IR op class -> ``fn(exporter, name, op) -> nir.NIRNode``."""


def export_nir(graph: Graph, dt: float = DEFAULT_DT, *, r_one: bool = False) -> nir.NIRGraph:
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

    ``r_one=True`` writes ``r = 1`` on LIF/IF/LI/I nodes and folds ``r`` into the
    Affine/Linear/Conv that alone feeds the neuron (``W r``, ``b r``): norse's
    ``from_nir`` ignores ``r`` on these nodes (it assumes 1), so without this a
    graph whose neurons take their input with gain 1 (``r = tau/dt``, what snnTorch
    expects) is silent in norse. A neuron whose ``r`` cannot be folded keeps it, with
    a warning; without ``r_one`` every ``r != 1`` is named in a warning.

    Warns (`UserWarning`, naming the node) for every semantic NIR cannot hold:
    a reset the installed nir has no field for (subtraction with nir >= 1.0.6,
    a reset value with older nir, no reset with any; kept in
    ``metadata["npuc.reset"]``), a grouped convolution nir's own type check
    refuses (nir >= 1.0.5), delayed reset timing, ``>=`` comparison, ternary/multilevel/bernoulli spikes,
    ``v_min``, ``v_init``, library float forms, time-folded evaluation, input
    encodings, output decodings and integer parameters.

    Raises:
        FrontendError: an op NIR cannot express (BatchNorm, MaxPool2d, Permute,
            a Dense on a multi-axis input, ...), naming the node.
    """
    out, msgs = _export(graph, dt, r_one)
    for msg in msgs:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return out


def _export(graph: Graph, dt: float, r_one: bool = False) -> tuple[nir.NIRGraph, list[str]]:
    if not (np.isfinite(dt) and dt > 0):
        raise FrontendError(f"dt must be a positive number, got {dt!r}")
    try:
        graph.verify()
    except GraphError as e:
        raise FrontendError(f"cannot export graph '{graph.name}': {e}") from None
    exp = _Exporter(graph, float(dt), r_one)
    return exp.run(), exp.warnings


def write_nir(graph: Graph, path: str | os.PathLike, dt: float = DEFAULT_DT, *, r_one: bool = False) -> Path:
    """Export ``graph`` (see `export_nir`) and write it with ``nir.write``.

    The file is written to a temporary name and renamed into place, so a
    failure never leaves a half-written file. Same graph -> identical bytes.
    """
    ng, msgs = _export(graph, dt, r_one)
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
    def __init__(self, graph: Graph, dt: float, r_one: bool = False):
        self.g, self.dt, self.r_one = graph, dt, r_one
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
            if not isinstance(g[name].op, ops.Add):
                self._ports(name)
        for name in order:
            op = g[name].op
            if not isinstance(op, ops.Add):
                self.nodes[name] = self._node(name, op)
        edges, delayed = self._edges(order)
        self._r_for_norse(edges, delayed)
        back = feedback_edges({n: [s for s, d in edges if d == n] for n in self.nodes},
                              [n for n in self.nodes if isinstance(self.nodes[n], nir.Input)],
                              {n for n, v in self.nodes.items() if isinstance(v, STATELESS)})
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
        return nir_graph(self.nodes, plain, {"npuc.dt": self.dt, "npuc.graph": g.name})

    def _r_for_norse(self, edges: list[tuple[str, str]], delayed: list[tuple[str, str]]) -> None:
        """Fold each neuron's ``r`` into the weights that alone feed it (``r_one``), else name it.
        norse's from_nir builds LIF/IF/LI/I cells without ``r`` (it warns and assumes 1)."""
        for name, node in list(self.nodes.items()):
            if not isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.I)) or np.all(np.asarray(node.r) == 1):
                continue
            why = "" if not self.r_one else self._fold_r(name, node, edges, delayed)
            if why is None:
                continue
            r = np.unique(np.asarray(node.r))
            self.warn(name, f"r = {r[0]:.6g}{'...' if r.size > 1 else ''}: norse's from_nir ignores r on "
                            f"{type(node).__name__} (it assumes r = 1), so norse would integrate the input "
                            f"scaled by 1/r; " + (why or "export with r_one=True to fold r into the weights"))

    def _fold_r(self, name: str, node: Any, edges: list, delayed: list) -> str | None:
        """Move ``r`` into the single Affine/Linear/Conv that feeds only ``name``; the reason if not."""
        ins = [s for s, d in edges if d == name]
        src = ins[0] if len(ins) == 1 else None
        w = self.nodes.get(src) if src is not None else None
        if not isinstance(w, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)) or (src, name) in delayed:
            return "r_one: its input is not one Affine/Linear/Conv edge, so r stays"
        if [d for s, d in edges if s == src] != [name]:
            return f"r_one: '{src}' feeds other nodes too, so r stays"
        r = np.broadcast_to(np.asarray(node.r, dtype=np.float64), self.g[name].shape)
        per_out = r.reshape(r.shape[0], -1)
        if np.any(per_out != per_out[:, :1]):
            return "r_one: r differs within an output channel of the convolution, so r stays"
        k = per_out[:, 0]
        weight = np.asarray(w.weight, dtype=np.float64)
        scaled = {"weight": _f32(weight * k.reshape(-1, *([1] * (weight.ndim - 1))))}
        if not isinstance(w, nir.Linear):
            scaled["bias"] = _f32(np.asarray(w.bias, dtype=np.float64) * k)
        self.nodes[src] = dataclasses.replace(w, **scaled)
        self.nodes[name] = dataclasses.replace(node, r=np.ones_like(np.asarray(node.r)))
        return None

    def _ports(self, name: str) -> None:
        """Which port of a LIF its consumers read (NIR nodes have one output)."""
        node = self.g[name]
        if not isinstance(node.op, ops.LIF):
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
            if isinstance(node.op, ops.Add):
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
        if isinstance(node.op, ops.Add):
            out = []
            for rr in node.inputs:
                out += self._expand(rr, delay + r.delay)
            return out
        return [(r.node, r.port, delay + r.delay)]

    def in_shape(self, name: str) -> tuple[int, ...]:
        r = self.g[name].inputs[0]
        src = self.g[r.node]
        return tuple(src.shapes[src.port(r)])

    def grouped(self, name: str, op: ops.Conv1d | ops.Conv2d) -> None:
        if op.groups > 1 and TYPE_CHECKS:
            self.warn(name, f"grouped convolution: the type check of nir {NIR_VERSION}'s NIRGraph and nir.read "
                            "rejects it (it declares C_in/groups input channels); read the file with npuc, or "
                            "with nir.read(path, type_check=False) (nir >= 1.0.7)")

    def _node(self, name: str, op: Any) -> nir.NIRNode:
        if self.g[name].meta.get("time_folded"):
            self.warn(name, "evaluated on the time-folded [T*B, ...] tensor by its source library; NIR "
                        "evaluates per step (float rounding of matmuls may differ)")
        fn = NIR_EXPORT.lookup(op)
        if fn is None:
            hint = " (run the fold-batchnorm pass first)" if type(op).__name__ == "BatchNorm" else ""
            raise self.err(name, f"NIR has no {type(op).__name__} node{hint}")
        return fn(self, name, op)


def _f32(x: Any) -> np.ndarray:
    return np.array(x, dtype=np.float32)


def _conv_bias(op: ops.Conv1d | ops.Conv2d) -> np.ndarray:
    return _f32(op.bias) if op.bias is not None else np.zeros(op.weight.shape[0], np.float32)


@NIR_EXPORT.register(ops.Input)
def _input(ex: _Exporter, name: str, op: ops.Input) -> nir.NIRNode:
    if op.encoding.kind not in ("current", "spikes"):
        ex.warn(name, f"the {op.encoding.kind} input encoding is not part of NIR; the graph takes per-step values")
    return nir.Input(input_type=np.array(op.shape))


@NIR_EXPORT.register(ops.Output)
def _output(ex: _Exporter, name: str, op: ops.Output) -> nir.NIRNode:
    if op.decoding != "sequence":
        ex.warn(name, f"the '{op.decoding}' output decoding is not part of NIR; the graph emits per-step values")
    return nir.Output(output_type=np.array(ex.g[name].shape))


@NIR_EXPORT.register(ops.Dense)
def _dense(ex: _Exporter, name: str, op: ops.Dense) -> nir.NIRNode:
    if len(ex.in_shape(name)) != 1:
        raise ex.err(name, f"input shape {list(ex.in_shape(name))}: NIR Affine maps a 1-d vector")
    if op.bias is None:
        return nir.Linear(weight=_f32(op.weight))
    return nir.Affine(weight=_f32(op.weight), bias=_f32(op.bias))


@NIR_EXPORT.register(ops.Conv2d)
def _conv2d(ex: _Exporter, name: str, op: ops.Conv2d) -> nir.NIRNode:
    ex.grouped(name, op)
    return nir.Conv2d(input_shape=tuple(ex.in_shape(name)[1:]), weight=_f32(op.weight), stride=tuple(op.stride),
                      padding=tuple(op.padding), dilation=tuple(op.dilation), groups=op.groups, bias=_conv_bias(op))


@NIR_EXPORT.register(ops.Conv1d)
def _conv1d(ex: _Exporter, name: str, op: ops.Conv1d) -> nir.NIRNode:
    ex.grouped(name, op)
    return nir.Conv1d(input_shape=ex.in_shape(name)[1], weight=_f32(op.weight), stride=op.stride[0],
                      padding=op.padding[0], dilation=op.dilation[0], groups=op.groups, bias=_conv_bias(op))


@NIR_EXPORT.register(ops.SumPool2d, ops.AvgPool2d)
def _pool(ex: _Exporter, name: str, op: ops.SumPool2d | ops.AvgPool2d) -> nir.NIRNode:
    cls = nir.SumPool2d if isinstance(op, ops.SumPool2d) else nir.AvgPool2d
    return cls(kernel_size=np.array(op.kernel), stride=np.array(op.stride), padding=np.array(op.padding))


@NIR_EXPORT.register(ops.Reshape)
def _reshape(ex: _Exporter, name: str, op: ops.Reshape) -> nir.NIRNode:
    s, out = ex.in_shape(name), tuple(ex.g[name].shape)
    for a in range(len(s)):
        for b in range(a, len(s)):
            if (*s[:a], int(np.prod(s[a:b + 1])), *s[b + 1:]) == out:
                return nir.Flatten(input_type={"input": np.array(s)}, start_dim=a, end_dim=b if b < len(s) - 1 else -1)
    raise ex.err(name, f"reshape {list(s)} -> {list(out)} is not a flatten of contiguous axes")


@NIR_EXPORT.register(ops.Scale)
def _scale(ex: _Exporter, name: str, op: ops.Scale) -> nir.NIRNode:
    return nir.Scale(scale=np.broadcast_to(_f32(op.factor), ex.in_shape(name)).copy())


@NIR_EXPORT.register(ops.LIF)
def _lif(ex: _Exporter, name: str, op: ops.LIF) -> nir.NIRNode:
    """LI/I when the membrane is read, Threshold when the neuron is exactly a step
    function, else IF, LIF or CubaLIF."""
    if op.charge != "current":
        raise ex.err(name, f"charge '{op.charge}' (an alpha neuron, snntorch Alpha) has no NIR node: NIR's CubaLIF "
                           "charges with the step's own current and never clears it")
    shape = tuple(ex.g[name].shape)
    full = lambda x: np.broadcast_to(np.asarray(x, dtype=np.float64), shape).copy()  # noqa: E731
    alpha, gain, bias, thr = full(op.alpha), full(op.gain), full(op.bias), full(op.threshold)
    if ex.readout.get(name, "spikes") == "v":
        return _integrator(ex, name, op, alpha, gain, bias)
    same_or_none = op.reset == "none" or op.reset_timing == "same"
    if (not op.cuba and np.all(alpha == 0) and np.all(gain == 1) and np.all(bias == 0) and same_or_none
            and op.spike == "binary" and op.compare == "gt"):
        return nir.Threshold(threshold=thr)  # exactly H(x - thr): v is multiplied by 0
    _lost(ex, name, op, spiking=True)
    kw = _reset_fields(op, shape)
    dt = ex.dt
    if np.all(alpha == 1) and not op.cuba:
        if np.any(bias != 0):
            raise ex.err(name, "an integrate-and-fire neuron with a bias has no NIR form (IF has no v_leak)")
        return nir.IF(r=gain / dt, v_threshold=thr, **kw)
    if np.any(alpha == 1):
        raise ex.err(name, "alpha = 1 (no leak) on some neurons only, or in a CUBA neuron: no NIR form")
    k = 1.0 - alpha
    if not op.cuba:
        return nir.LIF(tau=dt / k, r=gain / k, v_leak=bias / k, v_threshold=thr, **kw)
    ai = full(op.alpha_i)
    if np.any(ai == 1):
        raise ex.err(name, "alpha_i = 1 (a non-decaying current) has no NIR CubaLIF form")
    ki = 1.0 - ai
    return nir.CubaLIF(tau_syn=dt / ki, tau_mem=dt / k, r=gain / k, v_leak=bias / k,
                       v_threshold=thr, w_in=1.0 / ki, **kw)


def _integrator(ex: _Exporter, name: str, op: ops.LIF, alpha: np.ndarray, gain: np.ndarray,
                bias: np.ndarray) -> nir.NIRNode:
    """A neuron whose membrane is read: NIR's LI or I (no reset, no spikes)."""
    if op.reset != "none":
        raise ex.err(name, f"its membrane is read after a {op.reset} reset; NIR's LI/I have no reset")
    if op.cuba:
        raise ex.err(name, "a current-based leaky integrator (CubaLI) is not exported (nir < 1.0.8 has none)")
    _lost(ex, name, op, spiking=False)
    if np.all(alpha == 1) and np.all(bias == 0):
        return nir.I(r=gain / ex.dt)
    if np.any(alpha == 1):
        raise ex.err(name, "alpha = 1 (no leak) with a bias has no NIR form")
    k = 1.0 - alpha
    return nir.LI(tau=ex.dt / k, r=gain / k, v_leak=bias / k)


def _reset_fields(op: ops.LIF, shape: tuple[int, ...]) -> dict[str, Any]:
    """``v_reset`` (nir >= 1.0.6 only) and the metadata npuc's importer reads back."""
    md: dict[str, Any] = {"npuc.reset": op.reset}
    if op.reset == "value":
        md["npuc.v_reset"] = float(op.reset_value)
    kw: dict[str, Any] = {"metadata": md}
    if HAS_V_RESET:  # required in nir 1.0.6; 0 for subtract/none, which NIR >= 1.0.6 cannot say
        kw["v_reset"] = np.full(shape, op.reset_value if op.reset == "value" else 0.0)
    return kw


def _lost(ex: _Exporter, name: str, op: ops.LIF, spiking: bool) -> None:
    """One warning for every semantic of ``op`` the NIR node does not hold."""
    if spiking:
        _lost_reset(ex, name, op)
        if op.reset != "none" and op.reset_timing != "same":
            ex.warn(name, f"reset timing '{op.reset_timing}' (reset applied one step late) is lost: NIR resets in the same step")
        if op.compare != "gt":
            ex.warn(name, "spike comparison v >= threshold is lost: NIR fires on v > threshold")
        if op.spike != "binary":
            ex.warn(name, f"{op.spike} spikes are lost: NIR neurons emit binary spikes")
    if op.v_min is not None:
        ex.warn(name, "the lower membrane bound v_min is lost")
    if op.v_init != 0:
        ex.warn(name, f"the initial membrane v_init={op.v_init} is lost (NIR has no initial state)")
    if op.form != "npuc":
        ex.warn(name, f"the float arithmetic order of form '{op.form}' is lost; NIR holds the canonical dynamics only")


def _lost_reset(ex: _Exporter, name: str, op: ops.LIF) -> None:
    """The reset NIR holds depends on the installed nir (see the module docstring)."""
    keep = "npuc keeps it in metadata['npuc.reset']"
    if op.reset == "none":
        ex.warn(name, f"a spiking neuron without reset has no NIR form; {keep}")
    elif op.reset == "subtract" and HAS_V_RESET:
        ex.warn(name, f"subtract reset has no field in nir {NIR_VERSION} (nir >= {V_RESET_SINCE} resets to "
                      f"v_reset): written as v_reset=0, {keep}")
    elif op.reset == "subtract":
        ex.warn(name, f"subtract reset is nir {NIR_VERSION}'s documented reset, but nir >= {V_RESET_SINCE} and "
                      f"the snnTorch/Norse importers reset to v_reset (0 when absent); {keep}")
    elif not HAS_V_RESET:
        ex.warn(name, f"reset to {op.reset_value} has no field in nir {NIR_VERSION}, which resets by subtraction "
                      f"(v_reset arrived in nir {V_RESET_SINCE}); npuc keeps it in metadata['npuc.reset'/'npuc.v_reset']")

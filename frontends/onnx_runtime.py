"""The runnable ONNX form of an npuc graph: standard operators only, neuron state as graph I/O.

`export_onnx(graph, path, runtime=True)` writes it. The npuc form (the default)
keeps each neuron as one ``ai.npuc::LIF`` node whose state lives inside the node,
which no ONNX runtime can execute, and it round-trips exactly through
`import_onnx`. The runtime form trades that for portability: every `LIF` is
expanded into opset-17 operators (``Mul``, ``Add``, ``Greater``, ``Where``...) in
the float engine's operation order for the canonical ``npuc`` form, and its state
(``v``, ``i`` and, for delayed resets, the previous spikes) becomes a pair of
graph input ``<node>/<state>@prev`` and output ``<node>/<state>@next``, exactly
like a delayed edge. ``SumPool2d`` becomes a depthwise ``Conv`` with a ones kernel.

One call of the model is one time step. `run_steps` runs it over ``[T, B, ...]``
inputs in onnxruntime, carrying every ``@next`` output into the matching
``@prev`` input (zeros, or ``v_init``, at step 0). The mapping is in the metadata
prop ``npuc.recurrent``; ``npuc.form`` is ``"runtime"`` (`import_onnx` refuses the
form: import the npuc form instead).

Not expressible: Bernoulli spikes (npuc's LFSR stream). A library float form
(``LIF.form`` other than ``npuc``) is exported with the canonical arithmetic, which
describes the same dynamics but may round differently in the last float bit (a warning says so).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from onnx import helper

from ..ir import LIF, SumPool2d

_mk = helper.make_node


def lif_runtime(ex: Any, node: Any, xs: list[str]) -> None:
    """Append the standard-operator form of LIF ``node`` (input tensor ``xs[0]``) to exporter ``ex``."""
    name, op = node.name, node.op
    assert isinstance(op, LIF)
    if op.spike == "bernoulli":
        raise ex.err(name, "Bernoulli spikes draw from npuc's LFSR stream and have no runtime ONNX form")
    if op.charge != "current":
        raise ex.err(name, f"charge '{op.charge}' (an alpha neuron) has no runtime ONNX form; export the "
                           "ai.npuc::LIF form instead")
    if op.form != "npuc":
        ex.warnings.append(f"ONNX runtime export, node '{name}': exported with the canonical LIF arithmetic, "
                           f"not the '{op.form}' form's operation order (same dynamics; floats may differ in the last bit)")
    if op.q is not None:
        ex.warnings.append(f"ONNX runtime export, node '{name}': integer parameters (q) are not exported")
    b = _Builder(ex, name, node.shapes["spikes"])
    p = {k: b.const(k, v) for k, v in op.per_neuron().items()}
    theta, theta_lo = p["threshold"], p.get("threshold_lo")
    delayed = op.reset_timing != "same" and op.reset != "none"
    v = b.state("v", op.v_init)
    s_prev = b.state("s", 0.0) if delayed else None
    if op.cuba:
        i = b.op("Add", b.op("Mul", p["alpha_i"], b.state("i", 0.0)), xs[0], out=f"{name}/i")
    else:
        i = b.op("Identity", xs[0], out=f"{name}/i")
    fired_prev = b.op("Not", b.op("Equal", s_prev, b.const("zero", 0.0))) if delayed else None
    if op.reset_timing == "delayed" and op.reset == "value":
        v = b.op("Where", fired_prev, b.const("reset_value", op.reset_value), v)
    h = b.op("Add", b.op("Add", b.op("Mul", p["alpha"], v), b.op("Mul", p["gain"], i)), p["bias"])
    if op.reset_timing != "same" and op.reset == "subtract":
        h = b.op("Sub", h, _reset_amount(b, op, s_prev, theta, theta_lo))
    if op.reset_timing == "delayed_charge" and op.reset == "value":
        h = b.op("Where", fired_prev, b.const("reset_value", op.reset_value), h)
    s = _fire(b, op, h, theta, theta_lo)
    if op.reset_timing == "same" and op.reset == "subtract":
        v = b.op("Sub", h, _reset_amount(b, op, s, theta, theta_lo))
    elif op.reset_timing == "same" and op.reset == "value":
        v = b.op("Where", b.op("Not", b.op("Equal", s, b.const("zero", 0.0))), b.const("reset_value", op.reset_value), h)
    else:
        v = h
    if op.v_min is not None:
        v = b.op("Max", v, p["v_min"])
    b.op("Identity", s, out=name)
    b.op("Identity", v, out=f"{name}/v")
    b.next("v", v)
    if op.cuba:
        b.next("i", i)
    if delayed:
        b.next("s", s)


def _fire(b: _Builder, op: LIF, h: str, theta: str, theta_lo: str | None) -> str:
    cmp = "Greater" if op.compare == "gt" else "GreaterOrEqual"
    if op.spike == "binary":
        return b.cast(b.op(cmp, h, theta))
    if op.spike == "ternary":
        lo = "Less" if op.compare == "gt" else "LessOrEqual"
        return b.op("Sub", b.cast(b.op(cmp, h, theta)), b.cast(b.op(lo, h, theta_lo)))
    s = b.op("Max", b.op("Floor", b.op("Div", h, theta)), b.const("zero", 0.0))  # multilevel
    return s if op.levels is None else b.op("Min", s, b.const("top", float(op.levels - 1)))


def _reset_amount(b: _Builder, op: LIF, s: str, theta: str, theta_lo: str | None) -> str:
    if op.spike != "ternary":
        return b.op("Mul", s, theta)
    zero = b.const("zero", 0.0)
    pick = b.op("Where", b.op("Greater", s, zero), theta, b.op("Where", b.op("Less", s, zero), theta_lo, zero))
    return b.op("Mul", pick, b.cast(b.op("Not", b.op("Equal", s, zero))))


class _Builder:
    """Names and appends the nodes of one expanded neuron (``<node>/rt<k>`` temporaries)."""

    def __init__(self, ex: Any, name: str, shape: tuple[int, ...]) -> None:
        self.ex, self.name, self.shape, self.k = ex, name, tuple(shape), 0
        self.consts: dict[str, str] = {}

    def op(self, kind: str, *ins: str | None, out: str | None = None) -> str:
        """Append ``kind(*ins)``; its output is tensor ``out`` or a fresh temporary."""
        self.k += 1
        t = out or f"{self.name}/rt{self.k}"
        self.ex.nodes.append(_mk(kind, [i for i in ins if i is not None], [t], name=f"{self.name}/rt{self.k}:{kind}"))
        return t

    def cast(self, x: str) -> str:
        self.k += 1
        t = f"{self.name}/rt{self.k}"
        self.ex.nodes.append(_mk("Cast", [x], [t], name=t, to=1))  # 1: FLOAT
        return t

    def const(self, key: str, value: Any) -> str:
        if key not in self.consts:
            self.consts[key] = self.ex.init(f"{self.name}/{key}", np.asarray(value, dtype=np.float32))
        return self.consts[key]

    def state(self, key: str, init: float) -> str:
        prev = f"{self.name}/{key}@prev"
        self.ex.inputs.append(self.ex.vi(prev, self.shape))
        self.ex.state_init[prev] = float(init)
        return prev

    def next(self, key: str, value: str) -> None:
        nxt = f"{self.name}/{key}@next"
        self.ex.nodes.append(_mk("Identity", [value], [nxt], name=nxt))
        self.ex.outputs.append(self.ex.vi(nxt, self.shape))
        self.ex.states[f"{self.name}/{key}@prev"] = nxt


def sumpool_runtime(ex: Any, node: Any, xs: list[str]) -> None:
    """SumPool2d as a depthwise Conv with a ones kernel (one input channel per group)."""
    op: SumPool2d = node.op
    src = ex.g[node.inputs[0].node]
    channels = src.shapes[src.port(node.inputs[0])][0]
    w = ex.init(f"{node.name}/ones", np.ones((channels, 1, *op.kernel), np.float32))
    ex.nodes.append(_mk("Conv", [xs[0], w], [node.name], name=node.name, kernel_shape=list(op.kernel),
                        strides=list(op.stride), pads=list(op.padding) * 2, group=channels))


def run_steps(path: Any, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Run a runtime-form ONNX model in onnxruntime over time-major inputs ``[T, B, ...]``
    (one array, or one per graph input by name); returns each output as ``[T, B, ...]``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # no operator fusion: a fused multiply-add rounds once where npuc (and PyTorch) round twice
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    if props.get("npuc.form") != "runtime":
        raise ValueError(f"{path}: not an npuc runtime-form ONNX model (export it with runtime=True)")
    states: dict[str, str] = json.loads(props.get("npuc.recurrent", "{}"))
    init: dict[str, float] = json.loads(props.get("npuc.state_init", "{}"))
    data = [i.name for i in sess.get_inputs() if i.name not in states]
    if not isinstance(inputs, dict):
        inputs = {data[0]: inputs}
    xs = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    steps, batch = next(iter(xs.values())).shape[:2]
    shapes = {i.name: i.shape[1:] for i in sess.get_inputs()}
    carry = {k: np.full((batch, *shapes[k]), init.get(k, 0.0), np.float32) for k in states}
    names = [o.name for o in sess.get_outputs() if o.name not in states.values()]
    outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for t in range(steps):
        res = sess.run(None, {**{k: v[t] for k, v in xs.items()}, **carry})
        got = dict(zip([o.name for o in sess.get_outputs()], res))
        carry = {prev: got[nxt] for prev, nxt in states.items()}
        for n in names:
            outs[n].append(got[n])
    return {n: np.stack(v) for n, v in outs.items()}

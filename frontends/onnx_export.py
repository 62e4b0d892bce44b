"""ONNX export: an npuc graph as a one-time-step ONNX model (opset 17 plus the
``ai.npuc`` domain, see `onnx_common`) that `onnx_import` reads back exactly.

Each IR op exports through one function registered in `ONNX_EXPORT` (op class ->
function appending its ONNX node(s)); an op without one is refused with a clear
error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir import Encoding, Graph, GraphError, Ref, ops
from ..ir.optable import OpTable
from ..ir.serialize import _encode
from .errors import FrontendError
from .onnx_common import DOMAIN, FLOAT_FIELDS, LIF_FIELDS, OPSET
from .onnx_runtime import lif_runtime, sumpool_runtime

__all__ = ["DOMAIN", "ONNX_EXPORT", "FrontendError", "export_onnx"]

ONNX_EXPORT = OpTable("ONNX export")
"""IR op class -> ``fn(exporter, node, xs)``: appends the ONNX node(s) computing
IR node ``node`` from the input tensor names ``xs``; the output tensor is named
after the node."""


def export_onnx(graph: Graph, path: str | os.PathLike, runtime: bool = False) -> Path:
    """Write ``graph`` as a one-time-step ONNX model (opset 17 + ``ai.npuc``).

    ``runtime=True`` writes the runnable form instead (standard operators only, neuron
    state as graph inputs/outputs; onnxruntime executes it, `import_onnx` does not read
    it back): see `npuc.frontends.onnx_runtime`.

    Every IR op maps to one ONNX node named after the IR node (Dense on a
    multi-axis input: MatMul + Add), LIF/IF to ``ai.npuc::LIF``/``IF`` with the
    canonical fields as attributes (scalars as FLOAT, per-neuron arrays as
    float32 TENSOR attributes; outputs ``spikes``, ``v``, ``i``), SumPool2d to
    ``ai.npuc::SumPool2d``. A delayed edge ``src -> dst`` becomes a state pair:
    graph input ``<tensor>@prev`` read by ``dst`` and graph output
    ``<tensor>@next`` (``npuc.recurrent``). `import_onnx` rebuilds an identical
    graph (same names, parameters, meta). The model passes ``onnx.checker``;
    the file is written atomically and deterministically.

    Raises:
        FrontendError: an op with no ONNX form (naming the node).
    """
    try:
        graph.verify()
    except GraphError as e:
        raise FrontendError(f"cannot export graph '{graph.name}': {e}") from None
    ex = _Exporter(graph, runtime)
    model = ex.run()
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:  # a bug in the exporter, not the user's graph
        raise FrontendError(f"internal error: the exported ONNX model fails onnx.checker: {e}") from None
    for msg in ex.warnings:
        warnings.warn(msg, UserWarning, stacklevel=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".npuc-", suffix=".onnx", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString(deterministic=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _tensor(node: str, port: str | None, default: str) -> str:
    return node if port is None or port == default else f"{node}/{port}"


class _Exporter:
    def __init__(self, graph: Graph, runtime: bool = False):
        self.g = graph
        self.runtime = runtime
        self.state_init: dict[str, float] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.states: dict[str, str] = {}
        self.exact: dict[str, dict[str, float]] = {}
        self.warnings: list[str] = []

    def err(self, name: str, msg: str) -> FrontendError:
        return FrontendError(f"cannot export node '{name}' ({type(self.g[name].op).__name__}) to ONNX: {msg}")

    def vi(self, name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", *shape])

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def src(self, r: Ref) -> str:
        """The tensor a consumer reads for ``r`` (a state input for delayed refs)."""
        node = self.g[r.node]
        t = _tensor(r.node, node.port(r), node.op.ports[0])
        if not r.delay:
            return t
        prev, nxt = f"{t}@prev", f"{t}@next"
        if prev not in self.states:
            self.states[prev] = nxt
            self.inputs.append(self.vi(prev, node.shapes[node.port(r)]))
            self.nodes.append(helper.make_node("Identity", [t], [nxt], name=nxt))
            self.outputs.append(self.vi(nxt, node.shapes[node.port(r)]))
        return prev

    def run(self) -> onnx.ModelProto:
        g = self.g
        if g.profile is not None:
            self.warnings.append(f"ONNX export of graph '{g.name}': integer parameters (profile "
                                 f"{g.profile.name}) are not exported; the model holds the float graph")
        ins = g.inputs()
        for node in ins:
            self.inputs.append(self.vi(node.name, node.op.shape))
        for name in g.topo_order():
            node = g[name]
            if not isinstance(node.op, ops.Input):
                self._node(node)
        # state pairs whose producer comes later were emitted in src(); Identity nodes must follow it
        self.nodes.sort(key=lambda n: 1 if n.name.endswith("@next") else 0)
        outs = [o for o in g.outputs()]
        out_vis = [self.vi(o.name, o.shape) for o in outs]
        props = self._props(ins, outs)
        graph = helper.make_graph(self.nodes, g.name, self.inputs, out_vis + self.outputs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
            producer_name="npuc", ir_version=8,
        )
        for k, v in props.items():
            model.metadata_props.add(key=k, value=v)
        return model

    def _props(self, ins: list, outs: list) -> dict[str, str]:
        g = self.g
        layouts = {n.name: n.op.layout for n in ins}
        props = {"npuc.graph_name": g.name}
        props["npuc.layout"] = (next(iter(layouts.values())) if len(set(layouts.values())) == 1
                                else json.dumps(layouts, sort_keys=True))
        if g.num_steps is not None:
            props["npuc.num_steps"] = str(g.num_steps)
        enc = {n.name: dataclasses.asdict(n.op.encoding) for n in ins if n.op.encoding != Encoding()}
        if enc:
            props["npuc.encoding"] = json.dumps(enc, sort_keys=True)
        props["npuc.outputs"] = json.dumps(
            {o.name: {"decoding": o.op.decoding, "layout": o.op.layout} for o in outs}, sort_keys=True)
        if self.states:
            props["npuc.recurrent"] = json.dumps(self.states, sort_keys=True)
        if self.runtime:
            props["npuc.form"] = "runtime"
            props["npuc.state_init"] = json.dumps(self.state_init, sort_keys=True)
        meta = {}
        for n in g:
            if n.meta:
                meta[n.name] = self._json(n.meta, f"node '{n.name}' meta")
        if meta:
            props["npuc.node_meta"] = json.dumps(meta, sort_keys=True)
        if g.meta:
            props["npuc.graph_meta"] = json.dumps(self._json(g.meta, "graph meta"), sort_keys=True)
        if self.exact:
            props["npuc.exact"] = json.dumps(self.exact, sort_keys=True)
        return props

    def _json(self, value: Any, where: str) -> Any:
        out = {}
        for k, v in value.items():
            arrays: dict[str, np.ndarray] = {}
            try:
                enc = _encode(v, k, arrays)
            except TypeError as e:
                self.warnings.append(f"ONNX export: {where} entry '{k}' is not saved ({e})")
                continue
            if arrays:
                self.warnings.append(f"ONNX export: {where} entry '{k}' holds arrays; it is not saved")
                continue
            out[k] = enc
        return out

    def float_attr(self, name: str, fname: str, value: float) -> float:
        if float(np.float32(value)) != value:
            self.exact.setdefault(name, {})[fname] = value
        return value

    def _node(self, node: Any) -> None:
        fn = RUNTIME_EXPORT.lookup(node.op) if self.runtime else None
        fn = fn or ONNX_EXPORT.lookup(node.op)
        if fn is None:
            raise self.err(node.name, "no ONNX form for this op")
        fn(self, node, [self.src(r) for r in node.inputs])


_mk = helper.make_node

RUNTIME_EXPORT = OpTable("ONNX runtime export")
"""Ops whose runnable form (``runtime=True``) differs from the npuc form."""
RUNTIME_EXPORT.register(ops.LIF)(lif_runtime)
RUNTIME_EXPORT.register(ops.SumPool2d)(sumpool_runtime)


@ONNX_EXPORT.register(ops.Output)
def _output(ex: _Exporter, node: Any, xs: list[str]) -> None:
    ex.nodes.append(_mk("Identity", xs, [node.name], name=node.name))


@ONNX_EXPORT.register(ops.Dense)
def _dense(ex: _Exporter, node: Any, xs: list[str]) -> None:
    """Gemm on a vector; MatMul (+ Add of the bias) on a multi-axis input."""
    name, op = node.name, node.op
    src = ex.g[node.inputs[0].node]
    if len(src.shapes[src.port(node.inputs[0])]) == 1:
        args = [xs[0], ex.init(f"{name}/weight", op.weight)]
        if op.bias is not None:
            args.append(ex.init(f"{name}/bias", op.bias))
        ex.nodes.append(_mk("Gemm", args, [name], name=name, transB=1))
    elif op.bias is None:
        ex.nodes.append(_mk("MatMul", [xs[0], ex.init(f"{name}/weight", op.weight.T)], [name], name=name))
    else:
        mm = f"{name}/matmul"
        ex.nodes.append(_mk("MatMul", [xs[0], ex.init(f"{name}/weight", op.weight.T)], [mm], name=name))
        ex.nodes.append(_mk("Add", [mm, ex.init(f"{name}/bias", op.bias)], [name], name=f"{name}/bias_add"))


@ONNX_EXPORT.register(ops.Conv1d, ops.Conv2d)
def _conv(ex: _Exporter, node: Any, xs: list[str]) -> None:
    name, op = node.name, node.op
    args = [xs[0], ex.init(f"{name}/weight", op.weight)]
    if op.bias is not None:
        args.append(ex.init(f"{name}/bias", op.bias))
    ex.nodes.append(_mk("Conv", args, [name], name=name, kernel_shape=list(op.kernel), strides=list(op.stride),
                        pads=list(op.padding) * 2, dilations=list(op.dilation), group=op.groups))


def _pool_attrs(op: ops.SumPool2d | ops.AvgPool2d | ops.MaxPool2d) -> dict[str, Any]:
    return dict(kernel_shape=list(op.kernel), strides=list(op.stride), pads=list(op.padding) * 2)


@ONNX_EXPORT.register(ops.SumPool2d)
def _sumpool(ex: _Exporter, node: Any, xs: list[str]) -> None:
    ex.nodes.append(_mk("SumPool2d", xs, [node.name], name=node.name, domain=DOMAIN, **_pool_attrs(node.op)))


@ONNX_EXPORT.register(ops.AvgPool2d)
def _avgpool(ex: _Exporter, node: Any, xs: list[str]) -> None:
    ex.nodes.append(_mk("AveragePool", xs, [node.name], name=node.name, count_include_pad=1,
                        **_pool_attrs(node.op)))


@ONNX_EXPORT.register(ops.MaxPool2d)
def _maxpool(ex: _Exporter, node: Any, xs: list[str]) -> None:
    ex.nodes.append(_mk("MaxPool", xs, [node.name], name=node.name, **_pool_attrs(node.op)))


@ONNX_EXPORT.register(ops.Add)
def _add(ex: _Exporter, node: Any, xs: list[str]) -> None:
    ex.nodes.append(_mk("Add" if len(xs) == 2 else "Sum", xs, [node.name], name=node.name))


@ONNX_EXPORT.register(ops.Scale)
def _scale(ex: _Exporter, node: Any, xs: list[str]) -> None:
    name = node.name
    ex.nodes.append(_mk("Mul", [xs[0], ex.init(f"{name}/factor", node.op.factor)], [name], name=name))


@ONNX_EXPORT.register(ops.BatchNorm)
def _batchnorm(ex: _Exporter, node: Any, xs: list[str]) -> None:
    name, op = node.name, node.op
    eps = ex.float_attr(name, "eps", op.eps)
    args = [xs[0]] + [ex.init(f"{name}/{k}", getattr(op, k)) for k in ("weight", "bias", "mean", "var")]
    ex.nodes.append(_mk("BatchNormalization", args, [name], name=name, epsilon=eps))


@ONNX_EXPORT.register(ops.Reshape)
def _reshape(ex: _Exporter, node: Any, xs: list[str]) -> None:
    shape = ex.init(f"{node.name}/shape", np.array([0, *node.op.shape], dtype=np.int64))
    ex.nodes.append(_mk("Reshape", [xs[0], shape], [node.name], name=node.name))


@ONNX_EXPORT.register(ops.Permute)
def _permute(ex: _Exporter, node: Any, xs: list[str]) -> None:
    ex.nodes.append(_mk("Transpose", xs, [node.name], name=node.name, perm=[0, *(d + 1 for d in node.op.dims)]))


@ONNX_EXPORT.register(ops.LIF)
def _lif(ex: _Exporter, node: Any, xs: list[str]) -> None:
    """``ai.npuc::LIF``/``IF`` with the canonical fields as attributes (per-neuron arrays as tensors)."""
    name, op = node.name, node.op
    if op.q is not None:
        ex.warnings.append(f"ONNX export, node '{name}': integer parameters (q) are not exported")
    attrs: dict[str, Any] = {}
    for f in LIF_FIELDS:
        v = getattr(op, f)
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            attrs[f] = float(v) if v.ndim == 0 else numpy_helper.from_array(np.asarray(v, np.float32), f)
        elif f in FLOAT_FIELDS:
            attrs[f] = ex.float_attr(name, f, float(v))
        elif f == "form" and v == "npuc":
            continue
        else:
            attrs[f] = v
    for k, v in op.form_args.items():
        attrs[f"form_args.{k}"] = numpy_helper.from_array(np.asarray(v), f"form_args.{k}")
    outs = [_tensor(name, p, op.ports[0]) for p in op.ports]
    ex.nodes.append(_mk("IF" if type(op) is ops.IF else "LIF", [xs[0]], outs, name=name, domain=DOMAIN, **attrs))

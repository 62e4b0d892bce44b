"""ONNX import: a one-time-step ONNX model (standard operators plus the
``ai.npuc`` neuron ops, see `onnx_common`) as an npuc graph. Each ONNX op type
converts through one handler registered with ``@_handles``."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

from ..ir import Encoding, Graph, GraphError, Ref, ops
from ..ir.ops import LAYOUTS
from ..ir.serialize import _decode
from .errors import FrontendError
from .onnx_common import DOMAIN, FLOAT_FIELDS, LIF_FIELDS, OPSET

__all__ = ["DOMAIN", "FrontendError", "import_onnx"]

_IR_NAME = re.compile(r"[^A-Za-z0-9_.:\-]")
_ALIASES = {("", "Identity"), ("", "Dropout")}


def _ir_name(s: str) -> str:
    s = _IR_NAME.sub("_", s).strip("_") or "n"
    return s if s[0] not in ".:-" else "n" + s


def import_onnx(src: str | os.PathLike | onnx.ModelProto, steps: int | None = None, *, name: str | None = None) -> Graph:
    """Import a one-time-step ONNX model as an npuc graph.

    Supported: Gemm, MatMul (+ Add of a constant bias), Conv (1-d/2-d, groups,
    strides, symmetric pads, dilations), BatchNormalization (inference),
    AveragePool / MaxPool (2-d), GlobalAveragePool, Flatten (axis 1), Reshape
    (constant shape), Transpose (batch axis kept), Add / Sum, Mul / Div by a
    constant, Identity, Dropout, Constant, and ``ai.npuc`` LIF, IF, SumPool2d.

    Args:
        src: a ``.onnx`` path or a loaded `onnx.ModelProto`.
        steps: time steps for static inputs (overrides ``npuc.num_steps``);
            required when an input has layout ``B``.
        name: graph name (default: the ONNX graph name).

    Raises:
        FrontendError: unreadable file, unsupported op (naming the node and its
            op_type), non-constant weights or shapes, or invalid LIF attributes.
    """
    if isinstance(src, onnx.ModelProto):
        model, where = src, "ONNX model"
    elif isinstance(src, (str, os.PathLike)):
        where = str(src)
        if not Path(src).is_file():
            raise FrontendError(f"{where}: no such ONNX file")
        try:
            model = onnx.load(str(src))
        except (DecodeError, ValueError, OSError) as e:
            raise FrontendError(f"{where}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    else:
        raise FrontendError(f"cannot import a {type(src).__name__} as ONNX: pass a path or an onnx.ModelProto")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise FrontendError(f"steps must be a positive integer, got {steps!r}")
    imp = _Importer(model, where, steps, name)
    graph = imp.run()
    for msg in imp.warnings:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return graph


def _json_prop(props: dict[str, str], key: str, where: str) -> Any:
    if key not in props:
        return None
    try:
        return json.loads(props[key])
    except json.JSONDecodeError as e:
        raise FrontendError(f"{where}: metadata prop '{key}' is not valid JSON ({e})") from None


class _Importer:
    def __init__(self, model: onnx.ModelProto, where: str, steps: int | None, name: str | None):
        self.m, self.where = model, where
        self.props = {p.key: p.value for p in model.metadata_props}
        if self.props.get("npuc.form") == "runtime":
            raise FrontendError(f"{where}: this is npuc's runnable ONNX form (standard operators, state as graph "
                                "I/O) for onnxruntime; import the npuc form (export_onnx without runtime=True)")
        self.onnx_graph = model.graph
        gname = name or self.props.get("npuc.graph_name") or model.graph.name or "onnx"
        if steps is None and "npuc.num_steps" in self.props:
            try:
                steps = int(self.props["npuc.num_steps"])
            except ValueError:
                raise FrontendError(f"{where}: metadata prop 'npuc.num_steps' is not an integer") from None
        self.g = Graph(_ir_name(gname), steps)
        self.steps = steps
        self.consts: dict[str, np.ndarray] = {}
        self.refs: dict[str, Ref] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}  # per-sample shape of every dynamic tensor
        self.consumers: dict[str, int] = {}
        self.warnings: list[str] = []
        self.exact = _json_prop(self.props, "npuc.exact", where) or {}
        self.fused: set[str] = set()  # output tensors of Add nodes folded into a bias
        self.pending: list[tuple[str, Any, list[Ref], dict, str]] = []  # name, op, refs, meta, onnx label

    def err(self, node: onnx.NodeProto | None, msg: str) -> FrontendError:
        if node is None:
            return FrontendError(f"{self.where}: {msg}")
        d = f"{node.domain}::" if node.domain else ""
        return FrontendError(f"{self.where}: node '{node.name or node.output[0]}' ({d}{node.op_type}): {msg}")

    # -- driver -------------------------------------------------------------
    def run(self) -> Graph:
        og = self.onnx_graph
        for t in og.initializer:
            self.consts[t.name] = numpy_helper.to_array(t)
        for n in og.node:
            for x in n.input:
                if x:
                    self.consumers[x] = self.consumers.get(x, 0) + 1
        for o in og.output:
            self.consumers[o.name] = self.consumers.get(o.name, 0) + 1
        self.names = self._assign_names()
        self.node_meta = _json_prop(self.props, "npuc.node_meta", self.where) or {}
        recurrent = _json_prop(self.props, "npuc.recurrent", self.where) or {}
        self._inputs(recurrent)
        for k, n in enumerate(og.node):
            self._node(k, n)
        self._outputs(set(recurrent.values()))
        self._build(self._states(recurrent))
        gm = _json_prop(self.props, "npuc.graph_meta", self.where)
        if gm is not None:
            self.g.meta = _decode(gm, "npuc.graph_meta", {})
        else:
            self.g.meta["source"] = {"format": "onnx", "file": self.where, "opset": self._opset()}
        return self.g

    def _build(self, states: dict[str, Ref]) -> None:
        """Add the converted nodes to the graph, binding state inputs to their producers."""
        for name, op, refs, meta, label in self.pending:
            refs = [states[r.node] if r.node in states else r for r in refs]
            try:
                self.g.add(name, op, refs, meta=meta)
            except GraphError as e:
                raise FrontendError(f"{self.where}: {label}: {e}") from None
        try:
            self.g.verify()
        except GraphError as e:
            raise FrontendError(f"{self.where}: {e}") from None

    def _opset(self) -> int:
        for o in self.m.opset_import:
            if o.domain in ("", "ai.onnx"):
                return int(o.version)
        return OPSET

    def _assign_names(self) -> dict[int, str]:
        used = set()
        names = {}
        for o in self.onnx_graph.output:
            used.add(_ir_name(o.name))
        for i in self.onnx_graph.input:
            used.add(_ir_name(i.name))
        for k, n in enumerate(self.onnx_graph.node):
            if (n.domain, n.op_type) in _ALIASES or n.op_type == "Constant":
                continue
            base = _ir_name(n.name or (n.output[0] if n.output else f"{n.op_type}_{k}"))
            nm, j = base, 1
            while nm in used:
                nm, j = f"{base}_{j}", j + 1
            used.add(nm)
            names[k] = nm
        return names

    def _per_sample(self, vi: onnx.ValueInfoProto, what: str) -> tuple[int, ...]:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise FrontendError(f"{self.where}: {what} '{vi.name}' has no tensor shape")
        if tt.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            raise FrontendError(f"{self.where}: {what} '{vi.name}' has element type "
                                f"{TensorProto.DataType.Name(tt.elem_type)}; npuc takes float tensors")
        dims = list(tt.shape.dim)
        if not dims:
            raise FrontendError(f"{self.where}: {what} '{vi.name}' is a scalar; expected [batch, ...]")
        out = []
        for d in dims[1:]:
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise FrontendError(f"{self.where}: {what} '{vi.name}' has a non-constant dimension "
                                    f"{d.dim_param or '?'}; only the leading batch axis may be symbolic")
            out.append(int(d.dim_value))
        return tuple(out)

    def _inputs(self, recurrent: dict) -> None:
        layouts = self.props.get("npuc.layout", "B")
        try:
            layouts = json.loads(layouts) if layouts.strip().startswith("{") else layouts
        except json.JSONDecodeError as e:
            raise FrontendError(f"{self.where}: metadata prop 'npuc.layout' is not valid JSON ({e})") from None
        encodings = _json_prop(self.props, "npuc.encoding", self.where) or {}
        index = 0
        for vi in self.onnx_graph.input:
            if vi.name in self.consts:
                continue  # old exporters list initializers as inputs
            shape = self._per_sample(vi, "input")
            self.shapes[vi.name] = shape
            if vi.name in recurrent:
                self.refs[vi.name] = Ref(f"@state:{vi.name}", None, 1)  # bound in _bind_states
                continue
            layout = layouts.get(vi.name, "B") if isinstance(layouts, dict) else layouts
            if layout not in LAYOUTS:
                raise FrontendError(f"{self.where}: input '{vi.name}': layout {layout!r} is not one of {list(LAYOUTS)}")
            try:
                enc = Encoding(**encodings[vi.name]) if vi.name in encodings else Encoding()
                op = ops.Input(shape, enc, layout=layout, index=index)
            except (TypeError, ValueError) as e:
                raise FrontendError(f"{self.where}: input '{vi.name}': {e}") from None
            if layout == "B" and self.steps is None:
                raise FrontendError(
                    f"{self.where}: input '{vi.name}' is a static [B, ...] value repeated over time: "
                    "pass steps=... (or set metadata prop npuc.layout to 'TB' for [T, B, ...] sequences)"
                )
            nm = _ir_name(vi.name)
            self.pending.append((nm, op, [], self._meta(nm), f"input '{vi.name}'"))
            self.refs[vi.name] = Ref(nm)
            index += 1

    def _outputs(self, state_out: set) -> None:
        decs = _json_prop(self.props, "npuc.outputs", self.where) or {}
        index = 0
        for vi in self.onnx_graph.output:
            if vi.name in state_out:
                continue
            if vi.name not in self.refs:
                raise FrontendError(f"{self.where}: output '{vi.name}' is not computed from the inputs")
            d = decs.get(vi.name, {})
            try:
                op = ops.Output(d.get("decoding", "sequence"), d.get("layout", "TB"), index=index)
            except (TypeError, ValueError) as e:
                raise FrontendError(f"{self.where}: output '{vi.name}': {e}") from None
            nm = _ir_name(vi.name)
            self.pending.append((nm, op, [self.refs[vi.name]], self._meta(nm), f"output '{vi.name}'"))
            index += 1

    def _states(self, recurrent: dict) -> dict[str, Ref]:
        """State input placeholder -> the producer of its paired output, delayed by one step."""
        out = {}
        for s_in, s_out in recurrent.items():
            if s_out not in self.refs:
                raise FrontendError(f"{self.where}: npuc.recurrent pairs '{s_in}' with '{s_out}', which no node computes")
            src = self.refs[s_out]
            if src.delay:
                raise FrontendError(f"{self.where}: state '{s_out}' is itself delayed")
            if self.shapes.get(s_out) != self.shapes.get(s_in):
                raise FrontendError(f"{self.where}: state input '{s_in}' has shape {self.shapes.get(s_in)} but "
                                    f"'{s_out}' has {self.shapes.get(s_out)}")
            out[f"@state:{s_in}"] = Ref(src.node, src.port, 1)
        return out

    def _exact(self, name: str, fname: str, value: float) -> float:
        """The float64 value `export_onnx` recorded (``npuc.exact``) for a float32 attribute, if consistent."""
        rec = self.exact.get(name, {}).get(fname)
        if rec is not None and np.float32(rec) == np.float32(value):
            return float(rec)
        return value

    def _meta(self, name: str) -> dict:
        m = self.node_meta.get(name)
        return _decode(m, f"npuc.node_meta.{name}", {}) if m is not None else {}

    # -- nodes ---------------------------------------------------------------
    def _node(self, k: int, n: onnx.NodeProto) -> None:
        key = (n.domain if n.domain != "ai.onnx" else "", n.op_type)
        if n.op_type == "Constant" and key[0] == "":
            self.consts[n.output[0]] = self._constant(n)
            return
        if key in _ALIASES:
            self._alias(n)
            return
        handler = _HANDLERS.get(key)
        if handler is None:
            supported = sorted(f"{d}::{o}" if d else o for d, o in _HANDLERS) + ["Constant", "Identity", "Dropout"]
            hint = "; a ReLU network converts with --ann-to-snn --steps T" if n.op_type == "Relu" else ""
            raise self.err(n, f"unsupported op type '{n.op_type}'{' in domain ' + repr(n.domain) if n.domain else ''}"
                              f" (supported: {', '.join(sorted(supported))}){hint}")
        self.k = k
        try:
            handler(self, n, self.names[k])
        except FrontendError:
            raise
        except (GraphError, ValueError, TypeError) as e:
            raise self.err(n, str(e)) from None

    def _constant(self, n: onnx.NodeProto) -> np.ndarray:
        for a in n.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                return np.array(helper.get_attribute_value(a))
        raise self.err(n, "Constant without a numeric value")

    def _alias(self, n: onnx.NodeProto) -> None:
        if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]:
            mode = self.consts.get(n.input[2])
            if mode is None or bool(np.asarray(mode)):
                raise self.err(n, "training-mode dropout is not an inference op")
        if len(n.output) > 1 and n.output[1] and self.consumers.get(n.output[1]):
            raise self.err(n, "the dropout mask output is used")
        x = n.input[0]
        if x in self.consts:
            self.consts[n.output[0]] = self.consts[x]
        else:
            self.refs[n.output[0]] = self._ref(n, 0)
            self.shapes[n.output[0]] = self.shapes[x]

    def _ref(self, n: onnx.NodeProto, i: int) -> Ref:
        x = n.input[i] if i < len(n.input) else ""
        if x not in self.refs:
            if x in self.consts:
                raise self.err(n, f"input {i} ('{x}') is a constant where npuc needs a per-step tensor")
            raise self.err(n, f"input {i} ('{x}') is not computed before this node")
        return self.refs[x]

    def _const(self, n: onnx.NodeProto, i: int, what: str, optional: bool = False) -> np.ndarray | None:
        x = n.input[i] if i < len(n.input) else ""
        if not x:
            if optional:
                return None
            raise self.err(n, f"missing input {i} ({what})")
        if x not in self.consts:
            raise self.err(n, f"{what} ('{x}') must be a constant (initializer or Constant node)")
        return self.consts[x]

    def _attrs(self, n: onnx.NodeProto) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in n.attribute}

    def _add(self, n: onnx.NodeProto, name: str, op: Any, ins: list[int], ports: tuple | None = None) -> None:
        """Queue IR node ``name`` reading ONNX inputs ``ins`` and bind ``n``'s outputs to its ports."""
        refs = [self._ref(n, i) for i in ins]
        try:
            shapes = op.infer([self._in_shape(n, i) for i in ins])
        except ValueError as e:
            raise self.err(n, str(e)) from None
        d = f"{n.domain}::" if n.domain else ""
        self.pending.append((name, op, refs, self._meta(name), f"node '{n.name or n.output[0]}' ({d}{n.op_type})"))
        for k, port in enumerate(ports or (None,)):
            if k < len(n.output) and n.output[k]:
                self.refs[n.output[k]] = Ref(name, port if k else None)  # None = the default port
                self.shapes[n.output[k]] = tuple(shapes[port or op.ports[0]])

    def _in_shape(self, n: onnx.NodeProto, i: int = 0) -> tuple[int, ...]:
        s = self.shapes.get(n.input[i])
        if s is None:
            raise self.err(n, f"the shape of input '{n.input[i]}' is unknown")
        return s

    def _param_shape(self, c: np.ndarray, n: onnx.NodeProto, i: int, what: str) -> np.ndarray:
        """A constant broadcast against input ``i`` ``[B, ...]`` as a per-sample array (drop a leading 1)."""
        rank = len(self._in_shape(n, i)) + 1
        if c.ndim == rank:
            if c.shape[0] != 1:
                raise self.err(n, f"{what} of shape {list(c.shape)} varies over the batch axis")
            c = c[0]
        elif c.ndim > rank:
            raise self.err(n, f"{what} of shape {list(c.shape)} has more axes than the input")
        return c

    def _fuse_bias(self, op: Any, produced: str) -> Any:
        """Fold a following ``Add(produced, const)`` into ``op``'s bias (MatMul + Add, Conv + Add)."""
        if self.consumers.get(produced, 0) != 1:
            return op
        nodes = self.onnx_graph.node
        for m in nodes[self.k + 1:]:
            if m.op_type == "Add" and m.domain in ("", "ai.onnx") and produced in m.input and len(m.input) == 2:
                other = m.input[1] if m.input[0] == produced else m.input[0]
                if other not in self.consts:
                    return op
                c = np.asarray(self.consts[other], dtype=np.float64)
                out = op.weight.shape[0]
                if isinstance(op, ops.Dense):
                    c = c.reshape(c.shape[-1:]) if c.ndim and all(d == 1 for d in c.shape[:-1]) else c
                    ok = c.shape in ((), (out,))
                else:
                    nd = op.weight.ndim - 2
                    tail = c.shape[-(nd + 1):] if c.ndim >= nd + 1 else ()
                    ok = c.ndim >= nd + 1 and tail == (out,) + (1,) * nd and all(d == 1 for d in c.shape[:-(nd + 1)])
                    c = c.reshape(-1) if ok else c
                if not ok:
                    return op
                self.fused.add(m.output[0])
                return op.replace(bias=np.broadcast_to(c.astype(np.float32), (out,)))
        return op

    def _pads(self, n: onnx.NodeProto, a: dict, nd: int, kernel: tuple, stride: tuple, dil: tuple) -> tuple[int, ...]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            pads = list(a.get("pads", [0] * 2 * nd))
            if len(pads) != 2 * nd:
                raise self.err(n, f"pads {pads} do not have {2 * nd} values")
            if pads[:nd] != pads[nd:]:
                raise self.err(n, f"asymmetric pads {pads} (begin != end); npuc pads symmetrically")
            return tuple(int(p) for p in pads[:nd])
        if auto == "VALID":
            return (0,) * nd
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            size = self._in_shape(n)[1:]
            out = []
            for s, k, st, d in zip(size, kernel, stride, dil):
                total = max((-(-s // st) - 1) * st + (k - 1) * d + 1 - s, 0)
                if total % 2:
                    raise self.err(n, f"auto_pad {auto} needs asymmetric padding here; npuc pads symmetrically")
                out.append(total // 2)
            return tuple(out)
        raise self.err(n, f"auto_pad {auto!r} is not supported")


# -- handlers (table-driven, by (domain, op_type)) ------------------------------

_HANDLERS: dict[tuple[str, str], Callable[[_Importer, onnx.NodeProto, str], None]] = {}


def _handles(*keys: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        for k in keys:
            d, _, o = k.rpartition("::")
            _HANDLERS[(d, o)] = fn
        return fn

    return deco


@_handles("Gemm")
def _gemm(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    a = self._attrs(n)
    if a.get("transA", 0):
        raise self.err(n, "transA=1: the input must be [batch, features]")
    if len(self._in_shape(n)) != 1:
        raise self.err(n, f"input per-sample shape {list(self._in_shape(n))}: Gemm takes [batch, features]")
    w = np.asarray(self._const(n, 1, "weight B"), dtype=np.float32)
    w = np.ascontiguousarray(w if a.get("transB", 0) else w.T)  # C order: float results depend on layout
    if a.get("alpha", 1.0) != 1.0:
        w = w * np.float32(a["alpha"])
    c = self._const(n, 2, "bias C", optional=True)
    bias = None
    if c is not None:
        c = np.asarray(c, dtype=np.float32)
        if c.size not in (1, w.shape[0]):
            raise self.err(n, f"bias C of shape {list(c.shape)} is not per output ({w.shape[0]})")
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * np.float32(a.get("beta", 1.0))
    op = ops.Dense(w, bias)
    if bias is None:
        op = self._fuse_bias(op, n.output[0])
    self._add(n, name, op, [0])


@_handles("MatMul")
def _matmul(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    w = self._const(n, 1, "weight (second operand)")
    if w.ndim != 2:
        raise self.err(n, f"weight of shape {list(w.shape)}: npuc supports a 2-d [in, out] MatMul weight")
    op = self._fuse_bias(ops.Dense(np.ascontiguousarray(np.asarray(w, dtype=np.float32).T)), n.output[0])
    self._add(n, name, op, [0])


@_handles("Conv")
def _conv(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    a = self._attrs(n)
    w = np.asarray(self._const(n, 1, "weight W"), dtype=np.float32)
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise self.err(n, f"{nd}-d convolution; npuc supports 1-d and 2-d")
    kernel = tuple(w.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise self.err(n, f"kernel_shape {a['kernel_shape']} differs from the weight's {list(kernel)}")
    stride = tuple(a.get("strides", [1] * nd))
    dil = tuple(a.get("dilations", [1] * nd))
    pads = self._pads(n, a, nd, kernel, stride, dil)
    b = self._const(n, 2, "bias B", optional=True)
    cls = ops.Conv1d if nd == 1 else ops.Conv2d
    op = cls(w, None if b is None else np.asarray(b, np.float32), stride, pads, dil, int(a.get("group", 1)))
    if b is None:
        op = self._fuse_bias(op, n.output[0])
    self._add(n, name, op, [0])


@_handles("BatchNormalization")
def _bn(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    a = self._attrs(n)
    if a.get("training_mode", 0):
        raise self.err(n, "training_mode=1; export the model in eval mode")
    for k in range(1, len(n.output)):
        if n.output[k] and self.consumers.get(n.output[k]):
            raise self.err(n, "running mean/var outputs are used (training mode)")
    scale, bias, mean, var = (np.asarray(self._const(n, i, w), np.float32)
                              for i, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
    eps = float(np.float32(a.get("epsilon", 1e-5)))
    eps = self._exact(name, "eps", eps)
    self._add(n, name, ops.BatchNorm(mean, var, scale, bias, eps=eps), [0])


def _pool_args(self: _Importer, n: onnx.NodeProto) -> tuple[tuple, tuple, tuple]:
    a = self._attrs(n)
    if "kernel_shape" not in a:
        raise self.err(n, "kernel_shape is missing")
    k = tuple(a["kernel_shape"])
    if len(k) != 2 or len(self._in_shape(n)) != 3:
        raise self.err(n, f"{len(k)}-d pooling; npuc pools 2-d (C, H, W) inputs")
    if a.get("ceil_mode", 0):
        raise self.err(n, "ceil_mode=1 is not supported (output size rounds down)")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise self.err(n, "dilated pooling is not supported")
    s = tuple(a.get("strides", [1, 1]))
    return k, s, self._pads(n, a, 2, k, s, (1, 1))


@_handles("AveragePool")
def _avgpool(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    k, s, p = _pool_args(self, n)
    if any(p) and not self._attrs(n).get("count_include_pad", 0):
        raise self.err(n, "count_include_pad=0 with padding; npuc's AvgPool2d divides by the full kernel size")
    self._add(n, name, ops.AvgPool2d(k, s, p), [0])


@_handles("MaxPool")
def _maxpool(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    k, s, p = _pool_args(self, n)
    if len(n.output) > 1 and n.output[1] and self.consumers.get(n.output[1]):
        raise self.err(n, "the Indices output is used")
    if self._attrs(n).get("storage_order", 0):
        raise self.err(n, "storage_order=1 is not supported")
    self._add(n, name, ops.MaxPool2d(k, s, p), [0])


@_handles("ai.npuc::SumPool2d")
def _sumpool(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    k, s, p = _pool_args(self, n)
    self._add(n, name, ops.SumPool2d(k, s, p), [0])


@_handles("GlobalAveragePool")
def _gap(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    s = self._in_shape(n)
    if len(s) != 3:
        raise self.err(n, f"input {list(s)}: npuc pools 2-d (C, H, W) inputs")
    self._add(n, name, ops.AvgPool2d(s[1:], s[1:], 0), [0])


@_handles("Flatten")
def _flatten(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    rank = len(self._in_shape(n)) + 1
    axis = int(self._attrs(n).get("axis", 1))
    if axis < 0:
        axis += rank
    if axis != 1:
        raise self.err(n, f"axis={axis} merges the batch axis; npuc flattens per sample (axis=1)")
    self._add(n, name, ops.Reshape((-1,)), [0])


@_handles("Reshape")
def _reshape(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    s = self._in_shape(n)
    shape = [int(v) for v in np.asarray(self._const(n, 1, "shape")).reshape(-1)]
    allowzero = int(self._attrs(n).get("allowzero", 0))
    if not shape:
        raise self.err(n, "empty target shape")
    if allowzero and 0 in shape:
        raise self.err(n, "allowzero=1 with a zero in the shape")
    full = (0, *s)
    rest = [full[i + 1] if (d == 0 and i + 1 < len(full)) else d for i, d in enumerate(shape[1:])]
    count = int(np.prod(s))
    lead = shape[0]
    if lead == -1 or lead > 0:
        if -1 in rest or int(np.prod(rest)) != count:
            raise self.err(n, f"target shape {shape} does not keep the batch axis (use 0 or -1 for it and "
                              "fixed per-sample sizes)")
    elif lead != 0:
        raise self.err(n, f"target shape {shape}: invalid leading size")
    self._add(n, name, ops.Reshape(tuple(rest)), [0])


@_handles("Transpose")
def _transpose(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    rank = len(self._in_shape(n)) + 1
    perm = list(self._attrs(n).get("perm", list(range(rank))[::-1]))
    if perm[0] != 0:
        raise self.err(n, f"perm {perm} moves the batch axis")
    self._add(n, name, ops.Permute(tuple(p - 1 for p in perm[1:])), [0])


@_handles("Add", "Sum")
def _add(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    if n.output[0] in self.fused:  # the bias of the MatMul/Gemm/Conv that produced its input
        x = n.input[0] if n.input[0] in self.refs else n.input[1]
        self.refs[n.output[0]], self.shapes[n.output[0]] = self.refs[x], self.shapes[x]
        return
    ins = [x for x in n.input if x]
    consts = [x for x in ins if x in self.consts]
    if consts:
        raise self.err(n, f"adds the constant '{consts[0]}'; npuc adds constants only as the bias of a "
                          "preceding MatMul/Gemm/Conv whose output has no other use")
    if len(ins) == 1:
        self.refs[n.output[0]], self.shapes[n.output[0]] = self._ref(n, 0), self._in_shape(n)
        return
    self._add(n, name, ops.Add(), [i for i in range(len(n.input)) if n.input[i]])


@_handles("Mul", "Div")
def _mul(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    a, b = n.input[0], n.input[1]
    if a in self.consts and b in self.consts:
        raise self.err(n, "both operands are constant")
    if n.op_type == "Div":
        if a in self.consts:
            raise self.err(n, "divides a constant by a tensor; npuc scales tensors by constants only")
        c = np.asarray(self.consts[b], dtype=np.float64) if b in self.consts else None
        x = 0
    else:
        c = np.asarray(self.consts[b] if b in self.consts else self.consts.get(a), dtype=np.float64) \
            if (a in self.consts or b in self.consts) else None
        x = 0 if b in self.consts else 1
    if c is None:
        raise self.err(n, "multiplies two tensors; npuc scales tensors by constants only (Scale)")
    c = self._param_shape(c, n, x, "constant")
    factor = (1.0 / c) if n.op_type == "Div" else c
    self._add(n, name, ops.Scale(factor.astype(np.float32)), [x])


@_handles("ai.npuc::LIF", "ai.npuc::IF")
def _lif(self: _Importer, n: onnx.NodeProto, name: str) -> None:
    kwargs: dict[str, Any] = {}
    form_args: dict[str, np.ndarray] = {}
    for at in n.attribute:
        v = helper.get_attribute_value(at)
        if isinstance(v, bytes):
            v = v.decode()
        if at.type == onnx.AttributeProto.TENSOR:
            v = numpy_helper.to_array(at.t)
        elif at.type in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS):
            v = np.array(v)
        if at.name.startswith("form_args."):
            form_args[at.name[len("form_args."):]] = np.asarray(v)
            continue
        if at.name not in LIF_FIELDS:
            raise self.err(n, f"unknown attribute '{at.name}' (LIF fields: {', '.join(LIF_FIELDS)})")
        numeric = at.name not in ("reset", "reset_timing", "compare", "spike", "charge", "form")
        if numeric and isinstance(v, str):  # names an initializer holding per-neuron values
            if v not in self.consts:
                raise self.err(n, f"attribute '{at.name}' names '{v}', which is not an initializer")
            v = self.consts[v]
        if at.name in FLOAT_FIELDS:
            v = self._exact(name, at.name, float(np.asarray(v)))
        kwargs[at.name] = v
    if form_args:
        kwargs["form_args"] = form_args
    try:
        op = (ops.IF if n.op_type == "IF" else ops.LIF)(**kwargs)
    except (TypeError, ValueError) as e:
        raise self.err(n, str(e)) from None
    self._add(n, name, op, [0], ports=op.ports)

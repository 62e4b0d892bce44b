"""Convert a traced model (fx graph + concrete values) into a float IR graph.

The walker visits fx nodes in order and gives each an abstract value
(`npuc.frontends.values`): module calls go to the converter table
(`npuc.frontends.converters`), functions and tensor methods to the tables
below. The `Builder` folds unrolled time loops into one step.

How the user's input tensors are laid out (one step ``[B, ...]`` repeated,
``[T, B, ...]`` or ``[B, T, ...]``) is not visible in the trace; `convert`
tries the layouts in that order and keeps the first one every operation
accepts (e.g. a SpikingJelly multi-step node only accepts ``[T, B, ...]``,
``x[t]`` only indexes a time axis).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..ir.graph import Graph, GraphError, Ref
from ..ir.ops import LIF, Add, Input, Output, Permute, Scale
from ..ir.values import Encoding
from . import reductions as red
from .builder import Builder, Call, f32, sanitize
from .converters import REGISTRY
from .converters import attention as attn
from .converters import torch_nn as tnn
from .errors import FrontendError, LayoutError, UnsupportedModuleError
from .values import LEADS, Const, Seq, Struct, Sym, Value

CANDIDATE_LEADS = (("B",), ("T", "B"), ("B", "T"))
INPUT_LAYOUT = {("B",): "B", ("T", "B"): "TB", ("B", "T"): "BT"}
MAX_READINGS = 64  # conversions tried per input layout when reshapes are ambiguous (batch 1)

FUNCTIONS: dict[Any, Callable] = {}
METHODS: dict[str, Callable] = {}


def _registers_in(table: dict) -> Callable[..., Callable]:
    """``@register(k1, k2, ...)`` stores the decorated function in ``table`` under each key."""

    def register(*keys: Any) -> Callable:
        def deco(f: Callable) -> Callable:
            for k in keys:
                table[k] = f
            return f

        return deco

    return register


_fn = _registers_in(FUNCTIONS)  # torch functions and operators called in a forward
_method = _registers_in(METHODS)  # tensor method names


# -- the walker -----------------------------------------------------------------------------


class _Walker:
    def __init__(self, root: nn.Module, graph: fx.Graph, values: dict[fx.Node, Any],
                 leads: dict[str, tuple[str, ...]], b: Builder) -> None:
        self.root = root
        self.fx = graph
        self.values = values
        self.leads = leads
        self.b = b
        self.env: dict[fx.Node, Value] = {}
        self.inputs: list[tuple[str, Sym, fx.Node]] = []
        self.progress = 0
        self.result: Value | None = None

    def run(self) -> None:
        for node in self.fx.nodes:
            self.b.fx_node = node
            self.env[node] = getattr(self, node.op)(node)
            self.progress += 1
        self.b.fx_node = None

    def value(self, a: Any) -> Any:
        """Abstract value of an fx argument (nested lists/tuples/dicts kept)."""
        if isinstance(a, fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return Seq(tuple(self.value(x) for x in a), type(a))
        if isinstance(a, dict):
            return {k: self.value(v) for k, v in a.items()}
        return Const(a)

    # -- fx opcodes -----------------------------------------------------------------
    def placeholder(self, node: fx.Node) -> Value:
        name = node.target
        if name not in self.leads:
            return Const(self.values.get(node))
        x = self.values[node]
        if not isinstance(x, torch.Tensor):
            raise FrontendError(f"forward() argument '{name}' is a {type(x).__name__}, not a tensor")
        if x.dtype != torch.float32:
            raise FrontendError(f"forward() argument '{name}' is {x.dtype}; npuc compiles float32 models")
        lead = self.leads[name]
        shape = tuple(int(s) for s in x.shape[len(lead):])
        if len(x.shape) < len(lead) or not shape:
            raise LayoutError(f"input '{name}' of shape {list(x.shape)} cannot be {LEADS[lead]} with a feature axis")
        try:
            node_name = self.b.graph.add(sanitize(name), Input(shape, layout=INPUT_LAYOUT[lead], index=len(self.inputs)))
        except GraphError as e:
            raise FrontendError(f"input '{name}': {e}") from None
        sym = Sym(Ref(node_name), shape, lead, None)
        self.inputs.append((node_name, sym, node))
        return sym

    def get_attr(self, node: fx.Node) -> Value:
        if node in self.values:
            return Const(self.values[node])
        obj: Any = self.root
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return Const(obj)

    def call_module(self, node: fx.Node) -> Value:
        module = self.root.get_submodule(node.target)
        args = [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
        entry = REGISTRY.lookup(module)
        if entry is None:
            role = REGISTRY.role_guess(module)
            supported = REGISTRY.supported(role)
            base = next((c for c in type(module).__mro__[1:] if REGISTRY.lookup_type(c)), None)
            note = (f" (a subclass of {base.__module__}.{base.__qualname__}: npuc converts the library's own "
                    "types, whose forward it knows)") if base is not None else ""
            raise UnsupportedModuleError(
                f"{self.b.where()}module '{node.target}' ({type(module).__module__}.{type(module).__qualname__}) "
                f"is not supported{note}; supported {role} types: {', '.join(supported) or 'none'}"
            )
        if not _has_sym(args) and not _has_sym(kwargs):
            return Const(self.values[node])
        _reject_products(self, f"passed to module '{node.target}' ({type(module).__name__})", args, kwargs)
        return entry.fn(Call(self.b, module, node.target, args, kwargs, self.values[node], node))

    def _evaluate(self, node: fx.Node, args: list, kwargs: dict) -> Any:
        """A constant call the tracer recorded no value for (e.g. a state NamedTuple built from
        zeros): evaluate it on its arguments' compile-time values."""

        def concrete(v: Any) -> Any:
            if isinstance(v, Const):
                return v.value
            if isinstance(v, Seq):
                return v.kind(concrete(i) for i in v.items)
            if isinstance(v, Struct):
                return v.type(**{k: concrete(f) for k, f in v.fields.items()})
            return v

        try:
            value = node.target(*[concrete(a) for a in args], **{k: concrete(v) for k, v in kwargs.items()})
        except Exception as e:
            raise UnsupportedModuleError(f"{self.b.where()}cannot evaluate {_fname(node.target)} at compile time "
                                         f"({type(e).__name__}: {e})") from None
        self.values[node] = value
        return value

    def call_function(self, node: fx.Node) -> Value:
        target = node.target
        if getattr(target, "__name__", "") in ("_assert", "_assert_is_none"):  # guards of specialized args
            return Const(None)
        args = [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
        if target is not operator.getitem:
            _reject_opaque(self, args, kwargs)
        if not _has_sym(args) and not _has_sym(kwargs):
            return Const(self.values[node] if node in self.values else self._evaluate(node, args, kwargs))
        if target not in PRODUCT_FUNCTIONS:
            what = "indexed" if target is operator.getitem else f"passed to function {_fname(target)}"
            _reject_products(self, what, args, kwargs)
        fn = FUNCTIONS.get(target)
        if fn is None:
            raise UnsupportedModuleError(f"{self.b.where()}function {_fname(target)} is not supported on spiking "
                                         f"tensors; supported: {', '.join(sorted({_fname(t) for t in FUNCTIONS}))}")
        return fn(self, node, args, kwargs)

    def call_method(self, node: fx.Node) -> Value:
        args = [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
        _reject_opaque(self, args, kwargs)
        if not _has_sym(args) and not _has_sym(kwargs):
            return Const(self.values[node])
        if node.target not in PRODUCT_METHODS:
            _reject_products(self, f"passed to tensor method .{node.target}()", args, kwargs)
        fn = METHODS.get(node.target)
        if fn is None:
            raise UnsupportedModuleError(
                f"{self.b.where()}tensor method .{node.target}() is not supported on spiking tensors; "
                f"supported: {', '.join('.' + m + '()' for m in sorted(METHODS))}"
            )
        return fn(self, node, args, kwargs)

    def output(self, node: fx.Node) -> Value:
        self.result = self.value(node.args[0])
        _reject_products(self, "returned by the model", [self.result], {})
        return self.result

    # -- helpers for the tables ---------------------------------------------------------
    def concrete(self, node: fx.Node) -> Any:
        return self.values[node]



def _reject_opaque(w: _Walker, args: list, kwargs: dict) -> None:
    """A neuron state npuc does not compute (its `Struct` type sets ``opaque``, e.g. snntorch Alpha's
    ``syn_inh``) may only be passed back to its neuron: computing with it raises that type's message."""
    def walk(v: Any) -> None:
        if isinstance(v, Struct) and getattr(v.type, "opaque", ""):
            raise w.b.error(v.type.opaque)
        if isinstance(v, (list, tuple, Seq)):
            for i in v.items if isinstance(v, Seq) else v:
                walk(i)
        if isinstance(v, dict):
            for i in v.values():
                walk(i)

    walk(args)
    walk(kwargs)


def _has_sym(v: Any) -> bool:
    if isinstance(v, (Sym, attn.ScoreProduct)):
        return True
    if isinstance(v, (Seq,)):
        return any(_has_sym(i) for i in v.items)
    if isinstance(v, Struct):
        return any(_has_sym(i) for i in v.fields.values())
    if isinstance(v, dict):
        return any(_has_sym(i) for i in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has_sym(i) for i in v)
    return False


def _products(v: Any) -> list[attn.ScoreProduct]:
    """Pending attention products (`ScoreProduct`) inside an abstract value."""
    if isinstance(v, attn.ScoreProduct):
        return [v]
    if isinstance(v, Seq):
        return [p for i in v.items for p in _products(i)]
    if isinstance(v, Struct):
        return [p for i in v.fields.values() for p in _products(i)]
    if isinstance(v, dict):
        return [p for i in v.values() for p in _products(i)]
    if isinstance(v, (list, tuple)):
        return [p for i in v for p in _products(i)]
    return []


def _reject_products(w: _Walker, what: str, args: Any, kwargs: Any) -> None:
    """A product of spike tensors may only be scaled and closed into an attention."""
    found = _products(args) + _products(kwargs)
    if found:
        raise w.b.error(
            f"{attn.describe_product(found[0])} is {what}; npuc compiles products of spike tensors only "
            "as spiking self-attention without softmax: q @ k.transpose(-2, -1) @ v, q @ (k.transpose(-2, -1) @ v) "
            "or (q @ k.transpose(-2, -1)) * s @ v, each optionally followed by '* s' (see docs/attention.md)"
        )


def _fname(t: Any) -> str:
    mod = getattr(t, "__module__", "") or ""
    name = getattr(t, "__name__", str(t))
    if mod.startswith("torch.nn.functional"):
        return f"F.{name}"
    if mod == "_operator":
        return {"add": "+", "mul": "*", "sub": "-", "neg": "unary -", "getitem": "[]", "truediv": "/",
                "matmul": "@"}.get(name, name)
    if mod.startswith("torch"):
        return f"torch.{name}"
    return f"{mod}.{name}"


def _const(v: Value, what: str, w: _Walker) -> Any:
    if isinstance(v, Seq) and not _has_sym(v):  # e.g. the index tuple of x[:, t]
        return v.kind(_const(i, what, w) for i in v.items)
    if not isinstance(v, Const):
        raise w.b.error(f"{what} must be a constant, not a tensor computed from the input")
    return v.value


def _sym(v: Value, what: str, w: _Walker) -> Sym:
    if not isinstance(v, Sym):
        raise w.b.error(f"{what} must be a tensor computed from the input")
    return v


# -- indexing, stacking, reductions -------------------------------------------------------


@_fn(operator.getitem)
def _getitem(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    obj, idx = args
    if isinstance(obj, Seq):
        i = _const(idx, "an index into a tuple", w)
        items = obj.items[i]
        return Seq(items, obj.kind) if isinstance(i, slice) else items
    if isinstance(obj, Struct):
        i = _const(idx, "an index into a state", w)
        return list(obj.fields.values())[i]
    x = _sym(obj, "the indexed value", w)
    i = _const(idx, "a tensor index", w)
    t_axis = {("T", "B"): 0, ("B", "T"): 1}.get(x.lead)
    if t_axis is None:
        raise w.b.error(f"indexing a {LEADS[x.lead]} tensor with {i!r}: only a time step x[t] of [T, B, ...] "
                        "or x[:, t] of [B, T, ...] can be indexed", LayoutError)
    if t_axis == 0 and isinstance(i, int):
        t = i
    elif t_axis == 1 and isinstance(i, tuple) and len(i) == 2 and i[0] == slice(None) and isinstance(i[1], int):
        t = i[1]
    else:
        raise w.b.error(f"indexing a {LEADS[x.lead]} tensor with {i!r}: only one time step "
                        f"({'x[t]' if t_axis == 0 else 'x[:, t]'}) can be taken", LayoutError)
    n = w.b.seq_len
    if t < 0:
        t += n
    if not 0 <= t < n:
        raise w.b.error(f"time index {i} is outside the {n} steps")
    if x.decode:
        raise w.b.error("indexing a reduction over time is not supported")
    return x.with_(lead=("B",), step=t)


@_fn(getattr)
def _getattr(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    obj, attr = args[0], _const(args[1], "an attribute name", w)
    if isinstance(obj, Struct):
        if attr not in obj.fields:
            raise w.b.error(f"{obj.type.__name__} has no field {attr!r} that npuc tracks ({', '.join(obj.fields)})")
        return obj.fields[attr]
    raise w.b.error(f"reading attribute {attr!r} of a spiking tensor is not supported")


@_fn(torch.stack)
def _stack(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    seq = args[0] if args else kwargs.get("tensors")
    dim = _const(args[1] if len(args) > 1 else kwargs.get("dim", Const(0)), "stack dim", w)
    if not isinstance(seq, Seq) or not seq.items:
        raise w.b.error("torch.stack needs a list of tensors")
    items = [_sym(i, "each stacked tensor", w) for i in seq.items]
    if dim not in (0, 1):
        raise w.b.error(f"torch.stack(dim={dim}): only stacking time steps on dim 0 ([T, B, ...]) or 1 ([B, T, ...]) is supported")
    refs = {i.ref for i in items}
    steps = [i.step for i in items]
    if len(refs) != 1 or any(i.lead != ("B",) for i in items):
        raise w.b.error("torch.stack of tensors that are not the same value at successive time steps")
    if not (all(s is None for s in steps) or steps == list(range(len(items)))):
        raise w.b.error(f"torch.stack of time steps {steps}; expected steps 0..{len(items) - 1} in order")
    if w.b.seq_len is not None and w.b.seq_len != len(items):
        raise w.b.error(f"torch.stack of {len(items)} steps in a model with {w.b.seq_len} time steps")
    w.b.seq_len = len(items)
    return items[0].with_(lead=("T", "B") if dim == 0 else ("B", "T"), step=None)


def _reduce(kind: str) -> Callable:
    def reduce(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
        x = _sym(args[0], f"the input of {kind}", w)
        dim = args[1] if len(args) > 1 else kwargs.get("dim", Const(None))
        dim = _const(dim, f"{kind} dim", w)
        keep = _const(args[2] if len(args) > 2 else kwargs.get("keepdim", Const(False)), "keepdim", w)
        t_axis = {("T", "B"): 0, ("B", "T"): 1}.get(x.lead)
        if kind == "mean" and len(x.lead) == 1 and len(x.shape) == 3 and "dtype" not in kwargs \
                and _dims(dim, 4) == {2, 3}:
            return _spatial_mean(w, node, x, keep)
        axis = _sample_axis(x, dim)
        if kind == "mean" and axis is not None and "dtype" not in kwargs:
            return red.axis_mean(w.b, sanitize(node.name), x, axis, tuple(w.concrete(node).shape))
        if t_axis is None or dim not in (t_axis, (t_axis,)) or keep or "dtype" in kwargs:
            raise w.b.error(f"{kind} over {dim!r} of a {LEADS[x.lead]} tensor: only a {kind} over the time "
                            "axis of the model's output is supported (it becomes the output decoding)")
        return x.with_(lead=("B",), step=None, decode=kind)

    return reduce


def _sample_axis(x: Sym, dim: Any) -> int | None:
    """The per-sample axis a reduction over one axis ``dim`` of ``x`` reduces, if it is one."""
    if x.lead not in (("T", "B"), ("B", "T"), ("B",), ("TxB",), ("BxT",)) or x.decode:
        return None
    dims = _dims(dim, len(x.lead) + len(x.shape))
    if dims is None or len(dims) != 1:
        return None
    (d,) = dims
    return d - len(x.lead) if d >= len(x.lead) else None


def _dims(dim: Any, ndim: int) -> set[int] | None:
    if dim is None:
        return None
    return {int(d) % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}


def _spatial_mean(w: _Walker, node: fx.Node, x: Sym, keep: bool) -> Sym:
    """``x.mean((-2, -1))`` of ``[N, C, H, W]`` spikes (global average pooling before a
    classifier): an `AvgPool2d` over the whole map, which later folds into the next weighted
    layer. Exact for spikes: their sums are integers, so float32 summation order does not
    matter; the mean of currents would round differently from a pool, and is refused."""
    src = w.b.graph[x.ref.node]
    if not (isinstance(src.op, LIF) and src.port(x.ref) == "spikes"):
        raise w.b.error("mean over the spatial axes (-2, -1) is supported of neuron spikes (global average "
                        "pooling before the classifier); of other values, use nn.AdaptiveAvgPool2d(1) on spikes")
    h, wd = x.shape[1:]
    y = tnn.pool(w.b, node.name + ".pool", x, nn.AvgPool2d((h, wd)), ("mean_hw", h, wd))
    return y if keep else w.b.reshape(node.name, y, w.concrete(node).shape)


_fn(torch.sum)(_reduce("sum"))
_fn(torch.mean)(_reduce("mean"))
_method("sum")(_reduce("sum"))
_method("mean")(_reduce("mean"))


# -- arithmetic ------------------------------------------------------------------------------


def _scale(w: _Walker, node: fx.Node, x: Sym, factor: Any) -> Sym:
    if isinstance(factor, torch.Tensor):
        factor = f32(factor, "scale factor")
    arr = np.asarray(factor, dtype=np.float32)
    key = ("scale", arr.shape, arr.tobytes())
    return w.b.apply(node.name, lambda: Scale(arr), x, key)


@_fn(operator.add, torch.add, operator.iadd)
def _add(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    a, b = args[0], args[1]
    if "alpha" in kwargs:
        raise w.b.error("torch.add(alpha=...) is not supported")
    if isinstance(a, Sym) and isinstance(b, Sym):
        if a.shape != b.shape:
            raise w.b.error(f"adding tensors of per-sample shapes {a.shape} and {b.shape} (broadcasting is not supported)")
        return w.b.combine(node.name, lambda: Add(), [a, b], ("add",))
    x, c = (a, b) if isinstance(a, Sym) else (b, a)
    if isinstance(c, Const) and _is_zero(c.value):
        return x
    raise w.b.error("adding a constant to a spiking tensor is not supported (fold it into a layer's bias)")


@dataclass(frozen=True)
class _Complement:
    """``1 - s`` of binary spikes ``s``: only meaningful as the NOT of a SEW ``IAND`` (``x * (1 - s)``)."""

    spikes: Sym


def _binary_spikes(w: _Walker, x: Value) -> bool:
    if not isinstance(x, Sym) or x.decode:
        return False
    src = w.b.graph[x.ref.node]
    return isinstance(src.op, LIF) and src.port(x.ref) == "spikes" and src.op.spike == "binary"


def _spike_logic(w: _Walker, node: fx.Node, a: Sym, b: Sym, kind: str) -> Sym:
    """SEW-ResNet's spike logic on binary spikes as a memoryless neuron (no leak, reset to 0 every
    spike): ``a AND b`` fires when ``a + b > 1.5``, ``a AND NOT b`` (IAND) when ``a - b > 0.5``.
    Exact: the library multiplies 0/1 floats; the neuron compares small integer sums."""
    if a.shape != b.shape:
        raise w.b.error(f"spike {kind} of per-sample shapes {a.shape} and {b.shape} (broadcasting is not supported)")
    name = sanitize(node.name)
    if kind == "iand":
        b = _scale(w, node, b, -1.0)
    total = w.b.combine(name + ".sum", lambda: Add(), [a, b], ("add",))
    threshold = 1.5 if kind == "and" else 0.5
    return w.b.apply(name, lambda: LIF(alpha=0.0, threshold=threshold, reset="value"), total,
                     ("spike_logic", kind), meta={"source": f"spike {kind.upper()}"})


@_fn(operator.sub, torch.sub)
def _sub(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    a, b = args[0], args[1]
    if isinstance(a, Const) and _is_one(a.value) and _binary_spikes(w, b):
        return _Complement(b)
    if isinstance(a, Sym) and isinstance(b, Sym):
        nb = _scale(w, node, b, -1.0)
        return w.b.combine(node.name, lambda: Add(), [a, nb], ("add",))
    if isinstance(a, Sym) and isinstance(b, Const) and _is_zero(b.value):
        return a
    raise w.b.error("subtracting a constant is not supported")


@_fn(operator.neg, torch.neg)
def _neg(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    return _scale(w, node, _sym(args[0], "the operand", w), -1.0)


@_fn(operator.mul, torch.mul, operator.imul)
def _mul(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    a, b = args[0], args[1]
    if isinstance(a, attn.ScoreProduct) or isinstance(b, attn.ScoreProduct):
        p, c = (a, b) if isinstance(a, attn.ScoreProduct) else (b, a)
        if not isinstance(c, Const):
            raise w.b.error(f"{attn.describe_product(p)} is multiplied by a tensor computed from the input; only a "
                            "constant scalar can become the attention's scale")
        return attn.scale_product(w.b, p, c.value)
    if isinstance(a, _Complement) or isinstance(b, _Complement):
        x, nb = (b, a) if isinstance(a, _Complement) else (a, b)
        if not _binary_spikes(w, x):
            raise w.b.error("x * (1 - s) is supported for binary spikes x and s (SEW-ResNet's IAND)")
        return _spike_logic(w, node, x, nb.spikes, "iand")
    if isinstance(a, Sym) and isinstance(b, Sym):
        if _binary_spikes(w, a) and _binary_spikes(w, b):
            return _spike_logic(w, node, a, b, "and")
        raise w.b.error("multiplying two spiking tensors is supported for binary spikes (a logical AND); "
                        "these are currents or graded values")
    x, c = (a, b) if isinstance(a, Sym) else (b, a)
    factor = _const(c, "the factor", w)
    if isinstance(factor, torch.Tensor) and factor.dim() > len(x.shape):
        raise w.b.error(f"a factor of shape {list(factor.shape)} would mix batch/time axes")
    if isinstance(factor, bool) or not isinstance(factor, (int, float, torch.Tensor)):
        raise w.b.error(f"multiplying by {type(factor).__name__} is not supported")
    return _scale(w, node, x, factor)


@_fn(operator.truediv, torch.div)
def _div(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    raise w.b.error("dividing a spiking tensor by a constant is not supported: x / c and x * (1/c) "
                    "differ in float32; multiply by a factor instead")


@_fn(operator.matmul, torch.matmul)
def _matmul(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    """Matrix products of spike tensors: the Spikformer attention pattern (`npuc.frontends.converters.attention`)."""
    if len(args) != 2 or kwargs:
        raise w.b.error("torch.matmul with out= or extra arguments is not supported")
    a, b = args
    name = sanitize(node.name)
    if isinstance(a, Const) or isinstance(b, Const):
        raise w.b.error("a matrix product of a spiking tensor with a constant is not supported: use nn.Linear "
                        "(npuc reproduces its float32 arithmetic)")
    if isinstance(a, attn.ScoreProduct) and isinstance(b, attn.ScoreProduct):
        raise w.b.error(f"a product of {attn.describe_product(a)} and {attn.describe_product(b)} is not an attention "
                        "pattern npuc compiles")
    if isinstance(a, attn.ScoreProduct):
        return attn.complete(w.b, name, a, _sym(b, "the values of the attention", w), "qk_v")
    if isinstance(b, attn.ScoreProduct):
        return attn.complete(w.b, name, b, _sym(a, "the queries of the attention", w), "q_kv")
    left, right = _sym(a, "the left operand of @", w), _sym(b, "the right operand of @", w)
    if left.decode or right.decode:
        raise w.b.error("@ is applied to a reduction over time; reductions must be the model's output")
    left, right = w.b.resolve(name + ".unsqueeze", left), w.b.resolve(name + ".unsqueeze", right)
    return attn.product(w.b, left, right)


METHODS["matmul"] = _matmul
PRODUCT_FUNCTIONS = frozenset({operator.matmul, torch.matmul, operator.mul, torch.mul, operator.imul})
"""Functions that accept a pending attention product (`attn.ScoreProduct`)."""
PRODUCT_METHODS = frozenset({"matmul"})


def _is_one(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return v.numel() == 1 and bool(v == 1)
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == 1


def _is_zero(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return bool(torch.all(v == 0))
    return isinstance(v, (int, float)) and v == 0


# -- identity-like ------------------------------------------------------------------------


def _identity(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the operand", w)
    value = w.concrete(node)
    if isinstance(value, torch.Tensor) and value.dtype != torch.float32:
        raise w.b.error(f"converting a spiking tensor to {value.dtype} is not supported")
    return x


for _m in ("float", "contiguous", "clone", "detach", "to", "type_as", "requires_grad_"):
    METHODS[_m] = _identity
_fn(torch.clone)(_identity)


@_fn(F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout)
def _dropout(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    training = kwargs.get("training", args[2] if len(args) > 2 else Const(True))
    if _const(training, "training", w):
        raise w.b.error("F.dropout(training=True) is active: pass training=self.training and compile in eval mode")
    return _sym(args[0], "the input", w)


# -- shapes -----------------------------------------------------------------------------------


@_method("view", "reshape")
def _view(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    return w.b.reshape(node.name, _sym(args[0], "the reshaped tensor", w), w.concrete(node).shape)


@_fn(torch.reshape)
def _reshape_fn(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    return w.b.reshape(node.name, _sym(args[0], "the reshaped tensor", w), w.concrete(node).shape)


@_method("unsqueeze")
@_fn(torch.unsqueeze)
def _unsqueeze(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the unsqueezed tensor", w)
    dim = _const(args[1] if len(args) > 1 else kwargs["dim"], "unsqueeze dim", w)
    return w.b.unsqueeze(node.name, x, dim)


@_method("flatten", "unflatten", "squeeze", "view_as", "reshape_as")
@_fn(torch.flatten, torch.unflatten, torch.squeeze)
def _flatten(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    return w.b.reshape(node.name, _sym(args[0], "the reshaped tensor", w), w.concrete(node).shape)


@_method("repeat")
def _repeat(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    """``x.unsqueeze(0).repeat(T, 1, ...)``: a static input presented at every step."""
    x = _sym(args[0], "the repeated tensor", w)
    reps = [_const(a, "repeat sizes", w) for a in args[1:]]
    reps = list(reps[0]) if len(reps) == 1 and isinstance(reps[0], (tuple, list)) else reps
    axis = {("U", "B"): 0, ("B", "U"): 1}.get(x.lead)
    ndim = len(x.lead) + len(x.shape)
    if axis is None or len(reps) != ndim or any(r != 1 for i, r in enumerate(reps) if i != axis):
        raise w.b.error("only repeating a static input over a new time axis (x.unsqueeze(0).repeat(T, 1, ...)) "
                        "is supported", LayoutError)
    t = int(reps[axis])
    if w.b.seq_len is not None and w.b.seq_len != t:
        raise w.b.error(f"repeats the input {t} times in a model with {w.b.seq_len} time steps")
    w.b.seq_len = t
    return x.origin.with_(lead=("T", "B") if axis == 0 else ("B", "T"))


@_method("expand", "expand_as")
def _expand(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    raise w.b.error(".expand() makes a non-contiguous view whose matmuls round differently; use .repeat() "
                    "to present a static input at every step")


@_method("permute")
@_fn(torch.permute)
def _permute(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the permuted tensor", w)
    rest = [_const(a, "permute dims", w) for a in args[1:]]
    dims = tuple(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else tuple(rest)
    if not dims:
        dims = tuple(_const(kwargs["dims"], "permute dims", w))
    return _permute_dims(w, node, x, [d % (len(x.lead) + len(x.shape)) for d in dims])


@_method("transpose")
@_fn(torch.transpose)
def _transpose(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the transposed tensor", w)
    n = len(x.lead) + len(x.shape)
    d0, d1 = (_const(a, "transpose dims", w) % n for a in args[1:3])
    dims = list(range(n))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return _permute_dims(w, node, x, dims)


def _permute_dims(w: _Walker, node: fx.Node, x: Sym, dims: list[int]) -> Sym:
    k = len(x.lead)
    lead_part, sample_part = dims[:k], dims[k:]
    if sorted(lead_part) != list(range(k)):
        raise w.b.error(f"permuting {dims} moves the batch/time axes of a {LEADS[x.lead]} tensor into its features",
                        LayoutError)
    lead = tuple(x.lead[d] for d in lead_part)
    y = x.with_(lead=lead)
    sample = tuple(d - k for d in sample_part)
    if sample == tuple(range(len(sample))):
        return y
    return w.b.apply(node.name, lambda: Permute(sample), x, ("permute", sample)).with_(lead=lead)


# -- functional synapses --------------------------------------------------------------------


def _content(t: Any) -> Any:
    """A key for a constant tensor by value, so that every loop step finds the same node."""
    if t is None:
        return None
    a = f32(t, "parameter")
    return (a.shape, a.tobytes())



@_fn(F.linear)
def _f_linear(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the input of F.linear", w)
    weight = _const(args[1] if len(args) > 1 else kwargs["weight"], "F.linear weight", w)
    bias = args[2] if len(args) > 2 else kwargs.get("bias", Const(None))
    bias = _const(bias, "F.linear bias", w)
    return tnn.dense(w.b, node.name, x, weight, bias, ("F.linear", _content(weight), _content(bias)))


@_fn(F.conv1d, F.conv2d)
def _f_conv(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the conv input", w)
    names = ("weight", "bias", "stride", "padding", "dilation", "groups")
    defaults = (None, None, 1, 0, 1, 1)
    vals = {}
    for i, (n, d) in enumerate(zip(names, defaults)):
        v = args[i + 1] if len(args) > i + 1 else kwargs.get(n, Const(d))
        vals[n] = _const(v, f"conv {n}", w)
    nd = 1 if node.target is F.conv1d else 2
    key = ("F.conv", nd, _content(vals["weight"]), _content(vals["bias"]),
           *(repr(vals[k]) for k in ("stride", "padding", "dilation", "groups")))
    return tnn.conv(w.b, node.name, x, nd, vals["weight"], vals["bias"], vals["stride"], vals["padding"],
                    vals["dilation"], vals["groups"], key)


@_fn(F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d)
def _f_pool(w: _Walker, node: fx.Node, args: list, kwargs: dict) -> Value:
    x = _sym(args[0], "the pool input", w)
    consts = [_const(a, "pool argument", w) for a in args[1:]]
    kw = {k: _const(v, "pool argument", w) for k, v in kwargs.items()}
    fn = {F.max_pool2d: nn.MaxPool2d, F.avg_pool2d: nn.AvgPool2d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d}[node.target]
    try:
        module = fn(*consts, **kw)
    except TypeError as e:
        raise w.b.error(f"{_fname(node.target)}: {e}") from None
    return tnn.pool(w.b, node.name, x, module, (node.target.__name__, tuple(map(str, consts)), str(kw)))


# -- the conversion entry point -------------------------------------------------------------------


def convert(root: nn.Module, graph: fx.Graph, values: dict[fx.Node, Any], name: str,
            steps: int | None = None, input_names: list[str] | None = None) -> Graph:
    """Build the float IR graph of a traced model.

    Args:
        root: the model (eval mode, weights loaded).
        graph: its fx graph from `npuc.frontends.tracing.trace_model`.
        values: every fx node's concrete value on the example input.
        name: graph name.
        steps: ``T`` for a model whose forward takes no time axis.
        input_names: the forward arguments given example inputs (default: every
            tensor placeholder that is used).

    Raises:
        FrontendError: naming the module, function or source line that cannot be converted.
    """
    tensor_inputs = [n for n in graph.nodes if n.op == "placeholder" and isinstance(values.get(n), torch.Tensor)
                     and (n.target in input_names if input_names is not None else not _specialized(n))]
    if not tensor_inputs:
        raise FrontendError("the model takes no tensor input")
    options = [[lead for lead in CANDIDATE_LEADS if len(lead) < values[n].dim()] for n in tensor_inputs]
    best: tuple[int, BaseException] | None = None
    for combo in itertools.product(*options):
        leads = {n.target: lead for n, lead in zip(tensor_inputs, combo)}
        # ambiguous reshapes (a batch of 1): breadth-first over their readings, defaults first
        pending: list[list[int]] = [[]]
        for _ in range(MAX_READINGS):
            if not pending:
                break
            forced = pending.pop(0)
            try:
                return _convert_once(root, graph, values, name, leads, steps, forced)
            except UnsupportedModuleError:
                raise
            except FrontendError as e:
                rank = getattr(e, "_npuc_progress", 0) + (0 if isinstance(e, LayoutError) else 10**6)
                if best is None or rank > best[0]:
                    best = (rank, e)
                points = getattr(e, "_npuc_choices", [])
                for i in range(len(forced), len(points)):
                    pending += [forced + [0] * (i - len(forced)) + [alt] for alt in range(1, points[i])]
    if best is None:
        raise FrontendError("no input layout fits the model")
    raise best[1]


def _specialized(node: fx.Node) -> bool:
    """A placeholder created for a specialized (concrete) forward argument."""
    return not node.users or all(getattr(u.target, "__name__", "") in ("_assert", "_assert_is_none", "eq") for u in node.users)


def _convert_once(root, graph, values, name, leads, steps, choices=()):
    first = next(values[n] for n in graph.nodes if n.op == "placeholder" and n.target in leads)
    lead0 = leads[next(iter(leads))]
    batch = int(first.shape[lead0.index("B")])
    seq = None
    for n in graph.nodes:
        if n.op == "placeholder" and n.target in leads and "T" in leads[n.target]:
            t = int(values[n].shape[leads[n.target].index("T")])
            if seq is not None and seq != t:
                raise LayoutError(f"inputs disagree on the number of time steps ({seq} vs {t})")
            seq = t
        if n.op == "placeholder" and n.target in leads:
            bsz = int(values[n].shape[leads[n.target].index("B")])
            if bsz != batch:
                raise LayoutError(f"inputs disagree on the batch size ({batch} vs {bsz})")
    b = Builder(name, batch, seq, choices=choices)
    walker = _Walker(root, graph, values, leads, b)
    try:
        walker.run()
        return _finish(walker, steps)
    except FrontendError as e:
        e._npuc_progress = walker.progress  # type: ignore[attr-defined]
        e._npuc_choices = b.choice_points  # type: ignore[attr-defined]
        raise


def _finish(w: _Walker, steps: int | None) -> Graph:
    b = w.b
    g = b.graph
    red.check_time_reductions(g)  # before the time-loop checks: a neuron after a time mean is the reason
    calls = b.neuron_calls()
    if not calls:
        raise FrontendError("the model has no spiking neuron layer that npuc recognises; supported neuron types: "
                            + ", ".join(REGISTRY.supported("neuron")))
    per_step = {n: c for n, c in calls.items() if c != [None]}
    loop_t = None
    if per_step:
        loop_t = max(max(s for s in c) for c in per_step.values()) + 1
        for n, c in per_step.items():
            if sorted(c) != list(range(loop_t)):
                raise FrontendError(f"neuron '{n}' runs at time steps {c[:10]}{'...' if len(c) > 10 else ''}, "
                                    f"not once per step 0..{loop_t - 1}")
    has_seq = any(s.sequence for _, s, _ in w.inputs) or len(per_step) < len(calls) or b.seq_len is not None
    step_function = loop_t == 1 and not has_seq and b.encoder_steps is None

    if type(w.root).__name__ == "SequentialState" and type(w.root).__module__.startswith("norse."):
        raise FrontendError("the model is a norse SequentialState, whose forward returns (output, states); compile "
                            "a module that returns the output: out, _ = self.net(x); return out")
    outputs = [(b.resolve(f"output{label}", sym), label) for sym, label in _flatten_outputs(w, w.result)]
    if step_function:
        # forward() is one time step: the graph runs it T times, on a [T, B, ...] input
        # (or on the same static input every step when steps is given).
        for node_name, _sym, _ in w.inputs:
            op = g[node_name].op
            layout = "B" if steps is not None else "TB"
            g.replace_op(node_name, op.replace(layout=layout))
        g.num_steps = steps
        _encode_spike_inputs(w, g)
        for i, (sym, label) in enumerate(outputs):
            if sym.step not in (0, None) or sym.sequence or sym.decode:
                raise FrontendError(f"output {label} is not a value of the single step forward() computes")
            g.add(g.unique_name(_out_name(i, len(outputs))), Output("sequence", "TB", index=i), [sym.ref])
    else:
        num_steps = b.encoder_steps or loop_t
        if num_steps is None and any(g[n].op.layout == "B" for n, _, _ in w.inputs):
            num_steps = b.seq_len  # a static input repeated over time in forward()
        if loop_t is not None and b.seq_len is not None and loop_t != b.seq_len and b.encoder_steps is None:
            raise FrontendError(f"the time loop runs {loop_t} steps but the sequences have {b.seq_len}")
        if steps is not None and num_steps is not None and steps != num_steps:
            raise FrontendError(f"--steps {steps} contradicts the model, which runs {num_steps} time steps")
        if num_steps is None:
            num_steps = steps
        if any(g[n].op.layout == "B" for n, _, _ in w.inputs) and num_steps is None:
            raise FrontendError("the model's input has no time axis and its forward() runs no time loop: "
                                "give the number of time steps (--steps / steps=)")
        g.num_steps = num_steps
        _encode_spike_inputs(w, g)
        # a sequence model runs as many steps as its input has; x[-1] or a sequence module's final
        # state is then the example's last step
        last = (num_steps or b.seq_len or 0) - 1
        for i, (sym, label) in enumerate(outputs):
            if sym.decode:
                dec, layout = sym.decode, "B"
            elif sym.lead == ("T", "B"):
                dec, layout = "sequence", "TB"
            elif sym.lead == ("B", "T"):
                dec, layout = "sequence", "BT"
            elif sym.lead in (("TxB",), ("BxT",)):
                raise FrontendError(
                    f"output {label} is a {LEADS[sym.lead]} tensor; npuc outputs are [T, B, ...], [B, T, ...] or "
                    "[B, ...]: unflatten it in forward() (e.g. x.unflatten(0, (B, T)))"
                )
            elif sym.step is None or sym.step == last:
                dec, layout = "last", "B"
            else:
                raise FrontendError(f"output {label} is the value of time step {sym.step}, not of the last step {last}")
            g.add(g.unique_name(_out_name(i, len(outputs))), Output(dec, layout, index=i), [sym.ref])
    attn.prune_shape_ops(g)
    attn.check_inputs(g)
    red.check_time_reductions(g)
    try:
        g.verify()
    except GraphError as e:
        raise FrontendError(f"the converted graph is invalid: {e}") from None
    return g


def _out_name(i: int, n: int) -> str:
    return "out" if n == 1 else f"out{i}"


def _flatten_outputs(w: _Walker, v: Value, label: str = "") -> list[tuple[Sym, str]]:
    if isinstance(v, Sym):
        return [(v, label or "0")]
    if isinstance(v, Seq):
        out = []
        for i, item in enumerate(v.items):
            out += _flatten_outputs(w, item, f"{label}[{i}]" if label else str(i))
        return out
    if isinstance(v, dict):
        raise FrontendError("the model returns a dict; return a tensor or a tuple of tensors")
    if isinstance(v, Struct):
        if getattr(v.type, "opaque", ""):
            raise FrontendError(v.type.opaque)
        raise FrontendError(f"the model returns a {v.type.__name__} state object; return tensors (e.g. state.v)")
    raise FrontendError(f"output {label or 0} of the model is a constant, not computed from the input")


def _encode_spike_inputs(w: _Walker, g: Graph) -> None:
    """A per-step input whose example values are all 0/1 is a spike train (encoding 'spikes')."""
    for node_name, _, fx_node in w.inputs:
        op = g[node_name].op
        if op.encoding.kind != "current" or op.layout == "B":
            continue
        x = w.values[fx_node]
        if bool(torch.all((x == 0) | (x == 1))):
            g.replace_op(node_name, op.replace(encoding=Encoding("spikes")))


__all__ = ["convert"]

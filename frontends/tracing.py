"""torch.fx tracing with library neurons as leaves and concrete shapes.

`ConcreteTracer` is a `torch.fx.Tracer` that also *runs* the model on the
example input while it records it: every graph node gets its concrete value
(``tracer.values[node]``). This lets user code do what it does in eager mode
with shapes (``x.shape[0]``, ``x.size(1)``, ``len(x)``, ``for x_t in x``,
``range(x.shape[0])``): those evaluate to Python ints, so loops over time are
unrolled with the example's length. Control flow on tensor *data* still fails,
with a `FrontendError` naming the source line.

Leaves (modules recorded as one ``call_module`` node instead of being traced
through) are the types with a converter (`npuc.frontends.converters`), every
module of the SNN libraries and every subclass of one (so an unsupported one
fails with a clear message instead of deep inside library code) and PyTorch's
own ``torch.nn`` layers. Containers (``nn.Sequential`` and subclasses such as
norse's ``SequentialState``, ``nn.ModuleList``) are traced through unless a
converter handles them (SpikingJelly ``SeqToANNContainer``).
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.fx._symbolic_trace as _st
import torch.nn as nn
from torch.fx.node import map_aggregate

from .converters import REGISTRY
from .errors import FrontendError

LIBRARY_PREFIXES = ("snntorch.", "spikingjelly.", "norse.", "sinabs.", "npuc.frontends.nn")
_META_ATTRS = frozenset({"shape", "ndim", "dtype", "device", "is_sparse", "is_cuda", "layout", "requires_grad"})
_CONCRETE_METHODS = frozenset({"size", "dim", "numel", "nelement", "ndimension", "__len__"})
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class _ConcreteProxy(fx.Proxy):
    """A proxy whose shape-like attributes are the example's concrete values."""

    def __getattr__(self, k: str):
        if k in _META_ATTRS:
            return getattr(self.tracer.value_of(self), k)
        return super().__getattr__(k)

    def __len__(self) -> int:
        return len(self.tracer.value_of(self))

    def __iter__(self):
        n = len(self.tracer.value_of(self))
        return (self[i] for i in range(n))

    def __index__(self) -> int:  # pragma: no cover - only reached by misuse
        raise FrontendError(f"{_where()}: a tensor value is used as a Python index")


def _is_surrogate(m: nn.Module) -> bool:
    """A surrogate-gradient module (SpikingJelly neurons hold one as a child): it only shapes the
    backward pass, so a neuron whose only children are these is still one primitive module."""
    return ".surrogate" in type(m).__module__


class ConcreteTracer(fx.Tracer):
    """Symbolic tracing with concrete example values (see module docstring)."""

    def __init__(self, inputs: dict[str, Any]) -> None:
        super().__init__(param_shapes_constant=True)
        self.record_stack_traces = True  # node.stack_trace -> source lines in error messages
        self.inputs = dict(inputs)
        self.values: dict[fx.Node, Any] = {}
        self._running = 0  # > 0 while a node's concrete value is being computed

    # -- leaves -------------------------------------------------------------------
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if REGISTRY.is_leaf(m):
            return True
        if isinstance(m, _CONTAINERS):
            return False
        # primitive library modules (and user subclasses of them) are leaves, so an unsupported
        # one fails with a clear message instead of deep inside library code; a library block
        # built of other modules (SpikingJelly's SEW-ResNet BasicBlock, ...) is traced through
        if any((c.__module__ + ".").startswith(LIBRARY_PREFIXES) for c in type(m).__mro__):
            return all(_is_surrogate(c) for c in m.children())
        return super().is_leaf_module(m, qualname)

    # fx patches nn.Module.__call__/__getattr__ while tracing; while a concrete value is
    # computed, module calls and attribute reads inside it must behave as in eager mode.
    def call_module(self, m, forward, args, kwargs):
        if self._running:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._running:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    # -- concrete values ----------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def value_of(self, a: Any) -> Any:
        if isinstance(a, fx.proxy.Attribute):
            return getattr(self.value_of(a.root), a.attr)
        if isinstance(a, fx.Proxy):
            return self.values[a.node]
        return a

    def _concrete(self, args: Any) -> Any:
        return map_aggregate(args, self.value_of) if not isinstance(args, fx.Proxy) else self.value_of(args)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        if kind == "call_method" and target in _CONCRETE_METHODS:
            obj, *rest = self._concrete(tuple(args))
            return getattr(obj, target)(*rest, **self._concrete(kwargs))
        if kind == "call_function" and target is getattr and args[1] in _META_ATTRS:
            return getattr(self.value_of(args[0]), args[1])
        if kind == "placeholder":
            value = self._placeholder_value(target, args)
        elif kind == "get_attr":
            value = self._fetch_attr(target)
        elif kind == "output":
            value = None
        else:
            cargs = self._concrete(tuple(args))
            ckwargs = self._concrete(dict(kwargs))
            self._running += 1
            try:
                with torch.no_grad():
                    if kind == "call_module":
                        value = _st._orig_module_call(self.root.get_submodule(target), *cargs, **ckwargs)
                    elif kind == "call_method":
                        value = getattr(cargs[0], target)(*cargs[1:], **ckwargs)
                    else:
                        value = target(*cargs, **ckwargs)
            except FrontendError:
                raise
            except Exception as e:  # noqa: BLE001 - the user's model failed on the example input
                what = target if isinstance(target, str) else getattr(target, "__name__", str(target))
                raise FrontendError(
                    f"{_where()}: running '{what}' on the example input failed: {type(e).__name__}: {_line(e)}"
                ) from None
            finally:
                self._running -= 1
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self.values[proxy.node] = value
        return proxy

    def _placeholder_value(self, target: str, args: tuple) -> Any:
        if target in self.inputs:
            return self.inputs[target]
        if args:  # a specialized argument (concrete_args): its default
            return args[0]
        raise FrontendError(
            f"forward() argument '{target.lstrip('*')}' has no example input and no default "
            f"(the example gave {len(self.inputs)} input(s))"
        )

    def _fetch_attr(self, target: str) -> Any:
        obj: Any = self.root
        self._running += 1
        try:
            for part in target.split("."):
                obj = getattr(obj, part)
        finally:
            self._running -= 1
        return obj

    def to_bool(self, obj: fx.Proxy) -> bool:
        raise FrontendError(
            f"{_where()}: Python control flow depends on tensor values; npuc compiles a fixed "
            "dataflow (shapes may be used, data may not)"
        )

    def iter(self, obj: fx.Proxy):
        n = len(self.value_of(obj))
        return (obj[i] for i in range(n))


def _line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


def _where() -> str:
    """The user's source line currently being traced."""
    frame = inspect.currentframe()
    skip = ("torch/fx/", "torch/nn/modules/module.py", "npuc/frontends/tracing.py", "frontends/tracing.py")
    while frame is not None:
        fname = frame.f_code.co_filename.replace("\\", "/")
        if not any(s in fname for s in skip) and "torch/" not in fname:
            return f"{fname}:{frame.f_lineno}"
        frame = frame.f_back
    return "model code"


def trace_model(model: nn.Module, inputs: Sequence[Any]) -> tuple[fx.GraphModule, dict[fx.Node, Any], list[str]]:
    """Trace ``model(*inputs)``; return the graph module, every node's concrete value and
    the names of the forward arguments the inputs were given for.

    Forward arguments after the example inputs are fixed to their defaults
    (e.g. ``mem=None`` state arguments).
    """
    sig = inspect.signature(model.forward)
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()) and len(params) < len(inputs):
        raise FrontendError(f"{type(model).__name__}.forward takes *args: give it named arguments for npuc")
    if len(inputs) > len(params):
        raise FrontendError(
            f"{type(model).__name__}.forward takes {len(params)} argument(s), the example gave {len(inputs)}"
        )
    concrete = {}
    for p in params[len(inputs):]:
        if p.default is inspect.Parameter.empty:
            raise FrontendError(
                f"{type(model).__name__}.forward argument '{p.name}' has no example input and no default"
            )
        concrete[p.name] = p.default
    given = {p.name: x for p, x in zip(params, inputs)}
    tracer = ConcreteTracer(given)
    # import the converters of the libraries in use before fx patches torch: SpikingJelly's modules
    # run torch.jit.script at import, which fails inside a trace (e.g. after a user imported only
    # spikingjelly.activation_based.base, the registry would import the rest mid-trace)
    REGISTRY.load()
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except FrontendError:
        raise
    except fx.proxy.TraceError as e:
        raise FrontendError(f"{_where()}: cannot trace the model: {_line(e)}") from None
    try:
        gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    except SyntaxError:
        # torch.fx writes `self.<name>(...)`: a submodule named like a Python keyword breaks it
        bad = sorted({n for n, _ in model.named_modules() for n in n.split(".") if keyword.iskeyword(n)})
        raise FrontendError(
            f"{type(model).__name__}: torch.fx cannot trace submodules named like Python keywords "
            f"({', '.join(repr(b) for b in bad) or 'see the model'}); rename them"
        ) from None
    return gm, {n: v for n, v in tracer.values.items() if n.graph is graph}, list(given)


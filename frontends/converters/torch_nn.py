"""Converters for ``torch.nn`` layers: synapses, batch norm, pooling, shape and
identity layers. The helpers (`dense`, `conv`, `pool`, `batchnorm`) are shared
with the library wrappers (SpikingJelly ``layer.*``, sinabs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn as nn

from ...ir.ops import AvgPool2d, BatchNorm, Conv1d, Conv2d, Dense, MaxPool2d, Scale
from ..builder import Builder, Call, f32
from ..errors import UnsupportedModuleError
from ..values import Sym
from . import converter


def dense(b: Builder, name: str, x: Sym, weight: Any, bias: Any, key: Any) -> Sym:
    """``F.linear(x, weight, bias)`` on the last axis."""
    w = f32(weight, f"{name}.weight")
    bb = None if bias is None else f32(bias, f"{name}.bias")
    if w.ndim != 2:
        raise b.error(f"'{name}': linear weight must be 2-d, got shape {list(w.shape)}")
    return b.apply(name, lambda: Dense(w, bb), x, key)


def conv(b: Builder, name: str, x: Sym, nd: int, weight: Any, bias: Any, stride: Any, padding: Any,
         dilation: Any, groups: int, key: Any) -> Sym:
    """A 1-d or 2-d convolution with zero padding."""
    w = f32(weight, f"{name}.weight")
    bb = None if bias is None else f32(bias, f"{name}.bias")
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            dil = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
            ks = w.shape[2:]
            total = [d * (k - 1) for d, k in zip(dil, ks)]
            if any(t % 2 for t in total):
                raise b.error(f"'{name}': padding='same' with an even kernel pads asymmetrically; not supported")
            padding = tuple(t // 2 for t in total)
        else:
            raise b.error(f"'{name}': padding={padding!r} is not supported")
    cls = Conv1d if nd == 1 else Conv2d
    if len(x.lead) != 1:
        raise b.error(f"'{name}': a {nd}-d convolution needs a [N, C, ...] input; fold the time axis first")
    return b.apply(name, lambda: cls(w, bb, stride, padding, dilation, groups), x, key)


def pool(b: Builder, name: str, x: Sym, m: nn.Module, key: Any) -> Sym:
    """MaxPool2d, AvgPool2d or an AdaptiveAvgPool2d that reduces to a fixed pool."""
    if len(x.lead) != 1 or len(x.shape) != 3:
        raise b.error(f"'{name}': 2-d pooling needs a [N, C, H, W] input, got per-sample shape {x.shape}")
    if isinstance(m, nn.MaxPool2d):
        if m.ceil_mode or m.return_indices or _pair(m.dilation) != (1, 1):
            raise b.error(f"'{name}': MaxPool2d with ceil_mode, return_indices or dilation is not supported")
        k, s, p = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding)
        return b.apply(name, lambda: MaxPool2d(k, s, p), x, key)
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
            raise b.error(f"'{name}': AvgPool2d needs ceil_mode=False, count_include_pad=True, no divisor_override")
        k, s, p = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding)
        return b.apply(name, lambda: AvgPool2d(k, s, p), x, key)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        k = adaptive_kernel(m, *x.shape[1:])
        if k is None:
            raise b.error(f"'{name}': AdaptiveAvgPool2d({m.output_size}) on {x.shape[1]}x{x.shape[2]} is not a "
                          "fixed pool (the input size must be a multiple of the output size)")
        return b.apply(name, lambda: AvgPool2d(k, k, 0), x, key, meta={"source": "AdaptiveAvgPool2d"})
    raise b.error(f"'{name}': unsupported pooling {type(m).__name__}")


def adaptive_kernel(m: nn.AdaptiveAvgPool2d, h: int, w: int) -> tuple[int, int] | None:
    """The fixed kernel (= stride) an ``AdaptiveAvgPool2d`` uses on an ``h x w`` map, or None
    when the input size is not a multiple of the output size."""
    out = _pair(m.output_size)
    out = (h if out[0] is None else out[0], w if out[1] is None else out[1])
    if h % out[0] or w % out[1]:
        return None
    return h // out[0], w // out[1]


def sum_pool_lp(b: Builder, name: str, x: Sym, kernel: Any, stride: Any, key: Any) -> Sym:
    """``LPPool2d(1, k)`` (sinabs ``SumPool2d``): PyTorch computes it as
    ``avg_pool2d(x) * (kh * kw)``, so it is converted to exactly that (an
    `AvgPool2d` and a `Scale`), which a later pass may rewrite to `SumPool2d`."""
    if len(x.lead) != 1 or len(x.shape) != 3:
        raise b.error(f"'{name}': 2-d pooling needs a [N, C, H, W] input, got per-sample shape {x.shape}")
    k = _pair(kernel)
    s = _pair(stride if stride is not None else kernel)
    y = b.apply(name + ".avg", lambda: AvgPool2d(k, s, 0), x, (key, "avg"), meta={"source": "LPPool2d(p=1)"})
    return b.apply(name, lambda: Scale(np.float32(k[0] * k[1])), y, (key, "scale"), meta={"source": "LPPool2d(p=1)"})


def batchnorm(b: Builder, name: str, x: Sym, m: nn.modules.batchnorm._BatchNorm, key: Any) -> Sym:
    """Eval-mode batch norm over the channel axis (kept as a `BatchNorm` node)."""
    if len(x.lead) != 1:
        raise b.error(f"'{name}': batch norm needs an [N, C, ...] input; fold the time axis first")
    if m.running_mean is None or m.running_var is None:
        raise b.error(f"'{name}': batch norm without running statistics (track_running_stats=False) "
                      "normalises with batch statistics, which a compiled network cannot")
    c = m.num_features
    wt = f32(m.weight, f"{name}.weight") if m.weight is not None else np.ones(c, np.float32)
    bs = f32(m.bias, f"{name}.bias") if m.bias is not None else np.zeros(c, np.float32)
    mean, var = f32(m.running_mean, f"{name}.running_mean"), f32(m.running_var, f"{name}.running_var")
    return b.apply(name, lambda: BatchNorm(mean, var, wt, bs, float(m.eps)), x, key)


def _pair(v: Any) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(v) if len(v) == 2 else (v[0], v[0])
    return (v, v)


def _check_eval(call: Call) -> None:
    if call.module.training:
        raise call.error("is in training mode")


@converter(nn.Linear, role="synapse")
def linear(call: Call) -> Sym:
    m = call.module
    return dense(call.b, call.name, call.tensor(), m.weight, m.bias, call.qualname)


@converter(nn.Conv1d, nn.Conv2d, role="synapse")
def convnd(call: Call) -> Sym:
    m = call.module
    if m.padding_mode != "zeros":
        raise call.error(f"padding_mode={m.padding_mode!r} is not supported (only zero padding)")
    nd = 1 if isinstance(m, nn.Conv1d) else 2
    return conv(call.b, call.name, call.tensor(), nd, m.weight, m.bias, m.stride, m.padding, m.dilation,
                m.groups, call.qualname)


@converter(nn.BatchNorm1d, nn.BatchNorm2d, role="normalization")
def batchnormnd(call: Call) -> Sym:
    return batchnorm(call.b, call.name, call.tensor(), call.module, call.qualname)


@converter(nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, role="pooling")
def pool2d(call: Call) -> Sym:
    return pool(call.b, call.name, call.tensor(), call.module, call.qualname)


@converter(nn.LPPool2d, role="pooling")
def lppool2d(call: Call) -> Sym:
    m = call.module
    if float(m.norm_type) != 1.0 or m.ceil_mode:
        raise call.error("only LPPool2d with norm_type=1 (sum pooling) and ceil_mode=False is supported")
    return sum_pool_lp(call.b, call.name, call.tensor(), m.kernel_size, m.stride, call.qualname)


def flatten_shape(b: Builder, x: Sym, m: nn.Module) -> tuple[int, ...]:
    """The full output shape of ``nn.Flatten``/``nn.Unflatten`` on ``x`` (leading axes included)."""
    full = [int(s) for s in b.lead_sizes(x.lead)] + list(x.shape)
    if isinstance(m, nn.Unflatten):
        d = m.dim % len(full)
        sizes = list(m.unflattened_size)
        if -1 in sizes:
            known = int(np.prod([s for s in sizes if s != -1]))
            sizes[sizes.index(-1)] = full[d] // known
        return tuple(full[:d] + sizes + full[d + 1:])
    start, end = m.start_dim % len(full), m.end_dim % len(full)
    return tuple(full[:start] + [int(np.prod(full[start:end + 1]))] + full[end + 1:])


@converter(nn.Flatten, nn.Unflatten, role="shape")
def flatten(call: Call) -> Sym:
    x = call.tensor()
    return call.b.reshape(call.name, x, flatten_shape(call.b, x, call.module))


def apply_modules(call: Call, x: Sym, children: list[tuple[str, nn.Module]]) -> Sym:
    """Convert stateless modules applied one after another inside a container
    (SpikingJelly ``SeqToANNContainer``, sinabs ``Repeat``)."""
    from . import REGISTRY

    b = call.b
    for name, sub in children:
        entry = REGISTRY.lookup(sub)
        qual = f"{call.qualname}.{name}"
        if entry is None or entry.role in ("neuron", "container", "encoder"):
            roles = ("synapse", "normalization", "pooling", "shape", "identity")
            supported = sorted(t for r in roles for t in REGISTRY.supported(r))
            raise UnsupportedModuleError(
                f"{b.where()}module '{qual}' ({type(sub).__module__}.{type(sub).__qualname__}) inside "
                f"{type(call.module).__name__} is not supported there; supported: {', '.join(supported)}"
            )
        x = entry.fn(Call(b, sub, qual, [x], {}, None, call.node))
    return x


@converter(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity, role="identity")
def identity(call: Call) -> Sym:
    if not isinstance(call.module, nn.Identity):
        _check_eval(call)
    return call.tensor()

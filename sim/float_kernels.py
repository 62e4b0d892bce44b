"""Float semantics: float32 kernels that reproduce PyTorch's own arithmetic.

Synapse ops call the same ``torch.nn.functional`` routines a model calls, with
the same call shapes (see `npuc.sim.engine`), so results are bitwise equal. The
LIF kernel evaluates the neuron equations in the operation order of the
library the model came from (`LIF.form`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..ir import ops
from . import lfsr
from .engine import Context, KernelTable, StatefulKernel, window_max

FLOAT = KernelTable("float")
FUSED = True
"""Run SpikingJelly IF layers outside recurrent loops in `float_fused`'s compiled loop (False: the
torch form, which the tests compare with it)."""


def _t(ctx: Context, key: Any, arr: np.ndarray | None) -> torch.Tensor | None:
    """A cached float32 tensor of a parameter array."""
    if arr is None:
        return None
    k = (id(arr), "f32")
    if k not in ctx.cache:
        ctx.cache[k] = (arr, torch.from_numpy(np.array(arr, dtype=np.float32, copy=True)))
    return ctx.cache[k][1]


@FLOAT.stateless(ops.Dense)
def dense(op: ops.Dense, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return F.linear(xs[0], _t(ctx, "w", op.weight), _t(ctx, "b", op.bias))


@FLOAT.stateless(ops.Conv2d)
def conv2d(op: ops.Conv2d, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return F.conv2d(xs[0], _t(ctx, "w", op.weight), _t(ctx, "b", op.bias), op.stride, op.padding, op.dilation, op.groups)


@FLOAT.stateless(ops.Conv1d)
def conv1d(op: ops.Conv1d, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return F.conv1d(xs[0], _t(ctx, "w", op.weight), _t(ctx, "b", op.bias), op.stride, op.padding, op.dilation, op.groups)


@FLOAT.stateless(ops.SumPool2d)
def sumpool(op: ops.SumPool2d, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return F.avg_pool2d(xs[0], op.kernel, op.stride, op.padding, count_include_pad=True, divisor_override=1)


@FLOAT.stateless(ops.AvgPool2d)
def avgpool(op: ops.AvgPool2d, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return F.avg_pool2d(xs[0], op.kernel, op.stride, op.padding, count_include_pad=True)


@FLOAT.stateless(ops.MaxPool2d)
def maxpool(op: ops.MaxPool2d, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    x = xs[0]
    if op.padding == (0, 0) and x.numel() >= WINDOW_MAX_MIN and x.dtype == torch.float32 and x.dim() == 4:
        # the maximum of strided views: 3-4x faster than CPU max_pool2d, which also writes indices.
        # The same bits unless a window holds NaN (max_pool2d keeps the NaN it meets, maximum makes
        # its own) or the input holds -0.0 (of a tie of zeros max_pool2d keeps the first, maximum
        # either): checked by one sum of the result (NaN propagates) and one minimum of the input's
        # bits (-0.0 is the smallest int32 pattern), else max_pool2d
        y = window_max(x, op.kernel, op.stride)
        if not math.isnan(float(y.sum())) and int(x.view(torch.int32).min()) != -(2**31):
            return y.contiguous()
    return F.max_pool2d(x, op.kernel, op.stride, op.padding)


WINDOW_MAX_MIN = 1 << 16
"""Inputs of fewer values take max_pool2d: one call instead of several (batch 1)."""


@FLOAT.stateless(ops.Add)
def add(op: ops.Add, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y


@FLOAT.stateless(ops.Scale)
def scale(op: ops.Scale, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return xs[0] * _t(ctx, "f", op.factor)


@FLOAT.stateless(ops.BatchNorm)
def batchnorm(op: ops.BatchNorm, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return F.batch_norm(
        xs[0], _t(ctx, "m", op.mean), _t(ctx, "v", op.var), _t(ctx, "w", op.weight), _t(ctx, "b", op.bias),
        training=False, eps=op.eps,
    )


@FLOAT.stateless(ops.Reshape)
def reshape(op: ops.Reshape, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return xs[0].reshape((xs[0].shape[0], *op.shape))


@FLOAT.stateless(ops.Permute)
def permute(op: ops.Permute, xs: list[torch.Tensor], ctx: Context) -> torch.Tensor:
    return xs[0].permute(0, *(d + 1 for d in op.dims))


# -- neurons --------------------------------------------------------------------


def fire(op: ops.LIF, h: torch.Tensor, theta: torch.Tensor, theta_lo: torch.Tensor | None, st: dict, t: int) -> torch.Tensor:
    """Spike function of a LIF on the pre-reset membrane ``h`` (float32)."""
    if op.spike == "binary":
        return (h > theta if op.compare == "gt" else h >= theta).to(h.dtype)
    if op.spike == "ternary":
        if op.compare == "gt":
            return (h > theta).to(h.dtype) - (h < theta_lo).to(h.dtype)
        return (h >= theta).to(h.dtype) - (h <= theta_lo).to(h.dtype)
    if op.spike == "multilevel":
        s = torch.clamp(torch.floor(h / theta), min=0)
        return s if op.levels is None else torch.clamp(s, max=op.levels - 1)
    # bernoulli: s = 1[r <= round(sigmoid(h - theta) * M)] with the node's LFSR stream
    m = float((1 << op.bits) - 1)
    p = torch.sigmoid(h - theta).to(torch.float64)
    pq = torch.floor(p * m + 0.5)
    r = st["r"][t].reshape(h.shape[1:]).to(torch.float64)
    return (r <= pq).to(h.dtype)


def reset_amount(op: ops.LIF, s: torch.Tensor, theta: torch.Tensor, theta_lo: torch.Tensor | None) -> torch.Tensor:
    """What a subtractive reset removes for spikes ``s``."""
    if op.spike == "ternary":
        return torch.where(s > 0, theta, torch.where(s < 0, theta_lo, torch.zeros_like(theta))) * (s != 0)
    return s * theta


class FormArgs(dict):
    """A LIF's ``form_args`` as float32 tensors, with ``flags``: the same values as Python floats
    (forms branch on integer codes every step; reading them from tensors costs a call each)."""

    def __init__(self, args: dict[str, torch.Tensor]) -> None:
        super().__init__(args)
        self.flags = {k: float(v) for k, v in args.items() if v.numel() == 1}


def _params(op: ops.LIF, ctx: Context) -> tuple[dict[str, torch.Tensor], FormArgs]:
    """A LIF's per-neuron parameters and form arguments as tensors (cached with the graph: forms
    read them and never write them)."""
    key = (id(op), "lif_params")
    if key not in ctx.cache:
        p = {k: _t(ctx, k, v) for k, v in op.per_neuron().items()}
        ctx.cache[key] = (op, p, FormArgs({k: _t(ctx, k, v) for k, v in op.form_args.items()}))
    return ctx.cache[key][1], ctx.cache[key][2]


@FLOAT.stateful(ops.LIF)
class LIFFloat(StatefulKernel):
    """Float LIF. The ``npuc`` form follows the `LIF` docstring literally; other
    forms are library step functions registered in `FORMS`."""

    def init(self, op: ops.LIF, shape: tuple[int, ...], ctx: Context) -> dict:
        p, a = _params(op, ctx)
        z = torch.zeros((ctx.batch, *shape), dtype=torch.float32)
        # every step replaces the state's tensors (no kernel writes them in place): one zero tensor
        # serves as the first current, spikes and (v_init +0.0) membrane
        v = z if op.v_init == 0 and math.copysign(1.0, op.v_init) > 0 else torch.full_like(z, op.v_init)
        st = {"v": v, "i": z, "s": z, "p": p, "a": a}
        if op.spike == "bernoulli":
            n = int(np.prod(shape))
            st["r"] = torch.from_numpy(lfsr.uniform_block(op.bits, op.seed, ctx.steps, n).astype(np.int64))
        return st

    def prepare(self, op: ops.LIF, st: dict, xs: list[torch.Tensor], ctx: Context) -> None:
        if self._fused(op, st, xs, ctx):
            return
        # outside loops a library form writes each step's spikes into the buffer the engine returns
        # ([T, B, ...], or [B, T, ...] where batch-major folded ops read them), not a stack of the steps
        if op.form == "npuc" or (ctx.node, "spikes") not in ctx.needed or len(xs) != 1:
            return
        shape = tuple(xs[0].shape[1:])
        if (ctx.node, "spikes") in ctx.cache.get("_batch_major", ()):
            buf = torch.empty((shape[0], ctx.steps, *shape[1:]), dtype=xs[0].dtype)
            st["rows"] = [buf[:, t] for t in range(ctx.steps)]
        else:
            buf = torch.empty((ctx.steps, *shape), dtype=xs[0].dtype)
            st["rows"] = [buf[t] for t in range(ctx.steps)]

    def _fused(self, op: ops.LIF, st: dict, xs: list[torch.Tensor], ctx: Context) -> bool:
        """Every step of a SpikingJelly IF layer at once in `float_fused`'s compiled loop (same
        float32 operations), where it applies: charge code 0 (IF), a finite scalar threshold,
        float32 inputs, spikes stacked time-major."""
        a = st["a"]
        if not (FUSED and op.form == "spikingjelly" and len(xs) == 1 and xs[0].dtype == torch.float32
                and all(k in a.flags for k in ("charge", "v_threshold", "v_reset", "v0", "hard"))
                and a.flags["charge"] == 0 and math.isfinite(a.flags["v_threshold"])
                and (ctx.node, "spikes") not in ctx.cache.get("_batch_major", ())):
            return False
        from . import float_fused  # numba's import (~0.3 s) only where such a layer runs

        key = (id(op), "if_consts")
        if key not in ctx.cache:
            ctx.cache[key] = (op, np.array([a.flags[k] for k in ("v0", "v_threshold", "v_reset")], dtype=np.float32))
        st["all"] = float_fused.if_layer(xs[0], ctx.cache[key][1], bool(a.flags["hard"]), (ctx.node, "v") in ctx.needed)
        return True

    def all_steps(self, op: ops.LIF, st: dict) -> dict | None:
        return st.get("all")

    def step(self, op: ops.LIF, st: dict, xs: list[torch.Tensor], t: int, ctx: Context) -> dict:
        if "all" in st:  # computed by `prepare`
            return {p: y[t] for p, y in st["all"].items()}
        if "rows" in st:
            st["row"] = st["rows"][t]
        if op.form != "npuc":
            # a form that sums its input terms itself gets them as a tuple (see engine._term_refs)
            s, v, i = FORMS[op.form](op, st, xs[0] if len(xs) == 1 else tuple(xs), t)
            st["v"], st["i"], st["s"] = v, i, s
            return {"spikes": s, "v": v, "i": i}
        p = st["p"]
        theta, theta_lo = p["threshold"], p.get("threshold_lo")
        x = xs[0]
        v, s_prev = st["v"], st["s"]
        i = p["alpha_i"] * st["i"] + x if op.cuba else x
        if op.reset_timing == "delayed" and op.reset == "value":
            v = torch.where(s_prev != 0, torch.full_like(v, op.reset_value), v)
        h = p["alpha"] * v + p["gain"] * (st["i"] if op.charge == "previous" else i) + p["bias"]
        if op.reset_timing != "same" and op.reset == "subtract":
            h = h - reset_amount(op, s_prev, theta, theta_lo)
        if op.reset_timing == "delayed_charge" and op.reset == "value":
            h = torch.where(s_prev != 0, torch.full_like(h, op.reset_value), h)
            if op.charge == "previous":  # the alpha neuron's reset also clears its current
                i = torch.where(s_prev != 0, torch.zeros_like(i), i)
        s = fire(op, h, theta, theta_lo, st, t)
        if op.reset_timing == "same" and op.reset == "subtract":
            v = h - reset_amount(op, s, theta, theta_lo)
        elif op.reset_timing == "same" and op.reset == "value":
            v = torch.where(s != 0, torch.full_like(h, op.reset_value), h)
        else:
            v = h
        if op.v_min is not None:
            v = torch.maximum(v, p["v_min"])
        st["v"], st["i"], st["s"] = v, i, s
        return {"spikes": s, "v": v, "i": i}


FORMS: dict = {}
"""Library step functions by `LIF.form`: ``fn(op, state, x, t) -> (s, v, i)``.
``state`` holds ``v``, ``i``, ``s`` (previous step), ``p`` (canonical
parameters as tensors), ``a`` (``form_args`` as tensors) and ``r`` (LFSR)."""

from . import float_forms  # noqa: E402,F401

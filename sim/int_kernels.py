"""Integer semantics: what the hardware computes, driven by a `NumericProfile`.

Node values are int64 tensors (spike inputs read only by weighted ops may stay
float or uint8: exact integers). Weighted sums, exponent and bias are evaluated in float32
or float64, exact while every partial sum stays below 2^24 / 2^53 (checked per
call from the weights' absolute row sums; otherwise the int64 path is used);
large float32-exact ones on 7-bit inputs with int8 weights as uint8 x int8
products (`_int8_product`).
Neuron states are int64, or int32 where `LIFInt._narrow` proves no intermediate
value can leave int32. Each overflow check is skipped only where the layer's
bounds prove it idle; every overflow the profile resolves (wrap or saturation) is
counted per node in the result's ``stats`` so that quantization reports can name
the layers that overflowed.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F

from ..ir import ops
from ..ir.values import NumericProfile
from . import lfsr
from .engine import Context, KernelTable, StatefulKernel, window_max

INT = KernelTable("int")
_EXACT = 2**53
FAST_PATHS = True
"""Use the in-place neuron step (`LIFInt._step_fast`); False selects the plain step everywhere
(the tests compare both, counters included)."""
FUSED = True
"""Run covered neurons' steps in `int_fused`'s compiled kernel (with `FAST_PATHS`; False: the torch
steps, which the tests compare with it)."""
NARROW = True
"""Let the in-place step run on int32 state where `LIFInt._narrow` proves it exact (False: int64)."""
_NARROW_MIN = 4096  # smaller states (batch x neurons): the conversions cost more than int32 saves
_TORCH_MIN = 1 << 14  # fused layers this large take the torch int32 step where proven (`LIFInt._adopt_torch`;
# measured: sinabs's 4,096-neuron layer at batch 1 was 9 % slower on it, norse's 250 x 128 loop 5 % faster)


def _q(op, ctx: Context):
    if op.q is None:
        raise ValueError(f"node '{ctx.node}' ({type(op).__name__}) has no integer parameters: run the quantize pass")
    return op.q


def _cached(ctx: Context, arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    k = (id(arr), dtype)
    if k not in ctx.cache:
        ctx.cache[k] = (arr, torch.from_numpy(np.array(arr, copy=True)).to(dtype))
    return ctx.cache[k][1]


def _scaled(ctx: Context, arr: np.ndarray, dtype: torch.dtype, e: int) -> torch.Tensor:
    """`_cached` times ``2^e`` (exact: a power of two within the float types' exponent range)."""
    k = (id(arr), dtype, "scaled", e)
    if k not in ctx.cache:
        ctx.cache[k] = (arr, _cached(ctx, arr, dtype) * 2.0**e)
    return ctx.cache[k][1]


def overflow(x: torch.Tensor, bits: int, mode: str, ctx: Context | None = None, what: str = "") -> torch.Tensor:
    """Resolve values outside a ``bits``-wide register as the profile says.

    ``wrap``: two's complement; ``wrap_sym``: one correction by ``2^bits`` into
    ``(-2^(bits-1), 2^(bits-1)]`` (Lava's u); ``saturate``: clamp to
    ``[-2^(bits-1), 2^(bits-1)-1]``; ``saturate_sym``: clamp to
    ``[-(2^(bits-1)-1), 2^(bits-1)-1]`` (Lava's v); ``none``: unchanged.
    """
    if mode == "none" or bits == 0 or x.numel() == 0:
        return x
    half = 1 << (bits - 1)
    lo, hi = torch.aminmax(x)
    floor_ = -(half - 1) if mode in ("saturate_sym", "wrap_sym") else -half
    ceil_ = half if mode == "wrap_sym" else half - 1
    if lo >= floor_ and hi <= ceil_:  # the common case: nothing to resolve
        return x
    narrow = x.dtype if x.dtype != torch.int64 else None
    x = x.long() if narrow else x  # resolve in int64 (an int32 state's sums fit by its bound proof)
    if mode == "wrap":
        y = ((x + half) & ((1 << bits) - 1)) - half  # two's complement, bitwise on int64
    elif mode == "wrap_sym":
        y = torch.where(x > half, x - 2 * half, x)
        y = torch.where(y <= -half, x + 2 * half, y)
    elif mode == "saturate":
        y = torch.clamp(x, -half, half - 1)
    elif mode == "saturate_sym":
        y = torch.clamp(x, -(half - 1), half - 1)
    else:
        raise ValueError(mode)
    if ctx is not None:
        ctx.count(what, (y != x).sum())
    return y.to(narrow) if narrow else y


def overflow_chain(x: torch.Tensor, rules, ctx: Context) -> torch.Tensor:
    """`overflow` of each ``(bits, mode, counter)`` rule in turn, with one ``aminmax`` deciding the
    common case: values inside every rule's range are left unchanged by all of them."""
    if x.numel() == 0:
        return x
    lo, hi = (float(v) for v in torch.aminmax(x))
    if all(rlo <= lo and hi <= rhi for rlo, rhi in (_range_of(bits, mode) for bits, mode, _ in rules)):
        return x
    for bits, mode, what in rules:
        x = overflow(x, bits, mode, ctx, what)
    return x


def shift(x: torch.Tensor, e: int) -> torch.Tensor:
    """``x << e`` for ``e >= 0``, else arithmetic ``x >> -e`` (floor)."""
    return x << e if e >= 0 else x >> (-e)


def decay(x: torch.Tensor, mult: int, profile: NumericProfile) -> torch.Tensor:
    """``R(x * mult / 2^decay_bits)`` with the profile's rounding."""
    if isinstance(mult, int) and mult == 0:  # full decay (no current state): exactly 0
        return torch.zeros_like(x)
    if isinstance(mult, int) and mult == 1 << profile.decay_bits:  # x * 2^b / 2^b is exact
        return x
    p = x * mult
    b = profile.decay_bits
    if profile.decay_rounding == "trunc0":
        # division by 2^b toward zero: add 2^b - 1 to negative values, then shift (exact, no
        # divide); in place on the fresh product because this is the engine's hottest loop
        neg = p >> 63
        neg &= (1 << b) - 1
        p += neg
        return p.__irshift__(b)
    if profile.decay_rounding == "floor":
        return p.__irshift__(b)
    p += 1 << (b - 1)
    return p.__irshift__(b)


def _decay_(x: torch.Tensor, mult: int, profile: NumericProfile, tmp: torch.Tensor,
            ftmp: torch.Tensor | None = None) -> torch.Tensor:
    """`decay` in place on ``x`` (``tmp``: a scratch tensor of ``x``'s shape; ``ftmp``: a float64
    one, given when ``|x| * 2^decay_bits < 2^53``)."""
    if _is(mult, 0):
        return x.zero_()
    if _is(mult, 1 << profile.decay_bits):
        return x
    b = profile.decay_bits
    if ftmp is not None:
        # |x| * mult < 2^53: x * mult / 2^b is an exact float64 (a power-of-two scaling of an exact
        # product), so trunc / floor / floor(+1/2) of it is `decay`'s integer result; the factor is
        # exact (a Python float, or a float64 tensor of per-neuron multipliers) and ftmp float64, so
        # the product is a float64 one (converting into ftmp first: no temporary, 15-30 % faster than
        # a mixed-type multiply)
        f = mult.to(torch.float64) / (1 << b) if isinstance(mult, torch.Tensor) else mult / (1 << b)
        ftmp.copy_(x).mul_(f)
        if profile.decay_rounding == "floor":
            ftmp.floor_()
        elif profile.decay_rounding != "trunc0":
            ftmp.add_(0.5).floor_()
        return x.copy_(ftmp)  # float -> int conversion truncates toward zero
    x.mul_(mult)
    if profile.decay_rounding == "trunc0":
        torch.bitwise_right_shift(x, 63, out=tmp)
        tmp &= (1 << b) - 1
        x += tmp
    elif profile.decay_rounding != "floor":
        x += 1 << (b - 1)
    return x.__irshift__(b)


def _multiplier(d, offset: int, profile: NumericProfile):
    """The decay multiplier ``2^decay_bits - (d + offset)``: an int, or an int64 tensor of a QLIF's
    per-neuron decays (broadcasting over the batch axis)."""
    if isinstance(d, np.ndarray):
        return torch.from_numpy(profile.decay_unity - (d.astype(np.int64) + offset))
    return profile.decay_unity - (d + offset)


def _is(mult, value: int) -> bool:
    """Whether a decay multiplier is the integer ``value`` (per-neuron tensors never are: their values differ)."""
    return isinstance(mult, int) and mult == value


def _largest(mult) -> float:
    """The largest magnitude of a decay multiplier (for bounds)."""
    return float(mult.abs().max()) if isinstance(mult, torch.Tensor) else float(abs(mult))


def _range_of(bits: int, mode: str) -> tuple[float, float]:
    """The values a register of ``bits`` leaves unchanged under ``mode`` (see `overflow`)."""
    if mode == "none" or bits == 0:
        return float("-inf"), float("inf")
    half = 1 << (bits - 1)
    lo = -(half - 1) if mode in ("saturate_sym", "wrap_sym") else -half
    return float(lo), float(half if mode == "wrap_sym" else half - 1)


# -- weighted sums -------------------------------------------------------------


def _weighted(op, xs, ctx: Context, fn) -> torch.Tensor:
    """Exact integer ``fn(x, W)`` (linear or convolution), then exponent and bias."""
    return _weighted_bound(op, xs, ctx, fn)[0]


def _weighted_bound(op, xs, ctx: Context, fn) -> tuple[torch.Tensor, float]:
    """`_weighted` and a bound on the magnitude of its result (from the weights' absolute row
    sums, the input's largest magnitude, the exponent and the bias)."""
    q = _q(op, ctx)
    x = xs[0]
    bound_key = (id(q.weight), "rowsum")
    if bound_key not in ctx.cache:
        w = np.abs(q.weight.astype(np.float64)).reshape(q.weight.shape[0], -1).sum(1).max()
        ctx.cache[bound_key] = (q.weight, float(w))
    bias_key = (id(q), "bias_max")  # (per op: ops may share a weight array and differ in bias)
    if bias_key not in ctx.cache:
        ctx.cache[bias_key] = (q, float(np.abs(q.bias).max()) if q.bias is not None and q.bias.size else 0.0)
    given = ctx.in_ranges[0] if ctx.in_ranges else None  # spikes: no pass over the values
    known = given if given is not None else _extremes(x)
    acc_bound = ctx.cache[bound_key][1] * max(-known[0], known[1], 0.0)
    if given is not None and acc_bound >= 2**24:  # a loose bound (another sum's): the values may prove float32
        known = _extremes(x)
        acc_bound = ctx.cache[bound_key][1] * max(-known[0], known[1], 0.0)
    e = q.weight_exp
    # floor shifts keep |floor(s / 2^k)| <= ceil(|s| / 2^k) <= bound / 2^k + 1
    bound = acc_bound * 2.0**e + (0.0 if e >= 0 else 1.0)
    bound += ctx.cache[bias_key][1]
    ctx.out_range = (-bound, bound)
    bias = None if q.bias is None else _cached(ctx, q.bias, torch.int64)
    if bias is not None and fn is not _linear:
        bias = bias.reshape((-1,) + (1,) * (x.dim() - 2))
    # every partial sum of integers below 2^24 (2^53) is an exact float32 (float64) integer, so
    # the float result is the integer result; scaling by 2^e is exact in float too, floor() gives
    # the shift's floor, and the bias sum is exact while the whole bound stays below 2^24 (2^53):
    # then one conversion to int64 at the end
    for limit, ft in ((2**24, torch.float32), (_EXACT, torch.float64)):
        if acc_bound < limit and bound < limit:
            int8 = _int8_product(op, x, known, ctx, fn) if ft == torch.float32 else None
            # the int8 product's sums are those of the weights divided by 2^k: scaled back with 2^e
            # the float product on weights times 2^e: every partial sum is the exact one times 2^e
            # (a power of two well inside float32's exponents), so no pass scales the result
            scaled = int8 is None and e and -64 <= e <= 64
            if int8 is not None:
                acc, k = int8
            else:
                acc, k = fn(x.to(ft), _scaled(ctx, q.weight, ft, e) if scaled else _cached(ctx, q.weight, ft)), 0
            if e + k and not scaled:
                acc.mul_(2.0 ** (e + k))
            if e < 0 and (e + k or scaled):
                acc.floor_()
            if bias is not None:
                acc += _cached(ctx, q.bias, ft) if fn is _linear else _cached(ctx, q.bias, ft).reshape(bias.shape)
            # exact integers: neurons that read only this convert them themselves (engine._float_outputs);
            # oneDNN's convolutions write channels-last, most kernels read [N, C, H, W] rows: one
            # copy does both, except for binary neurons (and their max pools), whose fused kernel
            # takes the neurons channels-last (`ctx.channels_last`: a third of the snntorch CSNN's run)
            out = ft if ctx.float_out else torch.int64
            if acc.dtype != out or not (acc.is_contiguous() or (NHWC and ctx.channels_last)):
                acc = acc.to(out, memory_format=torch.contiguous_format)  # (a call less per step in loops)
            return acc, bound
    if acc_bound < 2**24:
        acc = fn(x.to(torch.float32), _cached(ctx, q.weight, torch.float32)).to(torch.int64)
    elif acc_bound < _EXACT:
        acc = fn(x.to(torch.float64), _cached(ctx, q.weight, torch.float64)).to(torch.int64)
    else:  # exact but slower
        acc = fn(x.to(torch.int64), _cached(ctx, q.weight, torch.int64))
    acc = acc.__ilshift__(e) if e >= 0 else acc.__irshift__(-e)  # acc is fresh
    if bias is not None:
        acc += bias
    return acc, bound


def _int8_product(op, x: torch.Tensor, known: tuple[float, float], ctx: Context, fn) -> tuple[torch.Tensor, int] | None:
    """``fn(x, W / 2^k)`` of a `Dense` or `Conv2d` and ``k`` (`_int8_weights`), the product a float32
    tensor (channels-last for a convolution) from oneDNN's uint8 x int8 kernels
    (int32 sums, AMX / VNNI on x86: 2-10x faster than the float32 product), or None where they do
    not apply: weights outside int8, inputs outside ``[0, 127]`` (7-bit inputs: a pair of products
    then fits the int16 sums of CPUs without VNNI), products too small to pay for the call, or
    kernels missing or failing `int8_selftest` on this machine. Exact: the caller has proven every
    sum below 2^24, so the int32 sums and their float32 conversion are the integers."""
    conv = fn is not _linear
    if not INT8 or known[0] < 0 or known[1] > 127 or (conv and (x.dim() != 4 or not isinstance(op, ops.Conv2d))):
        return None
    rows = x.numel() // x.shape[-1] if not conv else x.shape[0]
    if rows * op.q.weight.size * (_conv_positions(op, x, ctx) if conv else 1) < _INT8_MIN_MACS:
        return None  # checked first: small products (batch 1) pay for none of the rest
    if not _int8_works() or (conv and _window_sum(op, ctx) is not None):
        return None
    packed = _int8_weights(op, ctx)
    if packed is None:
        return None
    xu = x.to(torch.uint8)
    w, scale, zero, k = packed
    if not conv:
        y = torch.ops.onednn.qlinear_pointwise(xu.reshape(-1, x.shape[-1]), 1.0, 0, w, scale, zero, None, 1.0, 0,
                                               torch.float32, "none", [], "")
        y = y.reshape(*x.shape[:-1], y.shape[-1])
    else:
        y = torch.ops.onednn.qconv2d_pointwise(xu, 1.0, 0, w, scale, zero, None, list(op.stride), list(op.padding),
                                               list(op.dilation), op.groups, 1.0, 0, torch.float32, "none", [], "")
    return y, k


INT8 = True
"""Let weighted sums run on oneDNN's uint8 x int8 kernels where `_int8_product` applies (False: float32)."""
NHWC = True
"""Let a convolution's float sums stay channels-last where `engine._channels_last_outputs` allows
(False: always the plain order)."""
_INT8_MIN_MACS = 1 << 23  # smaller products: the call and the conversions cost what int8 saves (measured:
# norse's 250 x 128 x 128 recurrent product per step was slower in int8, its 12,500 x 700 x 128 input product ~10x faster)
_INT8_STATE: dict[str, bool] = {}
INT.small_spikes = lambda: INT8 and _int8_works()
INT.pairs = lambda graph, ctx: pool_pairs(graph, ctx)
INT.run_pair = lambda first, second, rule, x, ctx: pool_or(first.op, second.op, rule, x, ctx)


def _conv_positions(op, x: torch.Tensor, ctx: Context) -> int:
    """Output positions of a convolution of ``x`` ([N, C, H, W]) (cached per op and size)."""
    key = (id(op), "positions", tuple(x.shape[2:]))
    if key not in ctx.cache:
        n = 1
        for size, k, s, p, d in zip(x.shape[2:], op.kernel, op.stride, op.padding, op.dilation):
            n *= max(0, (size + 2 * p - d * (k - 1) - 1) // s + 1)
        ctx.cache[key] = (op, n)
    return ctx.cache[key][1]


def _int8_weights(op, ctx: Context):
    """oneDNN's packed int8 weights of ``op`` with unit scales and zero points, and the power of two
    they were divided by (cached), or None when they do not fit int8 after that division (Loihi 2
    weights are even 9-bit values: 8-bit mantissas times 2)."""
    q = op.q
    key = (id(q.weight), "int8")
    if key not in ctx.cache:
        wt = q.weight.astype(np.int64)
        nz = np.abs(wt[wt != 0])
        k = int((nz & -nz).min()).bit_length() - 1 if nz.size else 0  # the weights' common factor 2^k
        wt = wt >> k
        packed = None
        if wt.size and int(wt.min()) >= -128 and int(wt.max()) <= 127:
            w8 = torch.from_numpy(np.ascontiguousarray(wt, dtype=np.int8))
            n = wt.shape[0]
            scale, zero = torch.ones(n, dtype=torch.float32), torch.zeros(n, dtype=torch.int64)
            if isinstance(op, ops.Conv2d):
                w = torch.ops.onednn.qconv_prepack(w8, scale, 1.0, 0, list(op.stride), list(op.padding),
                                                   list(op.dilation), op.groups, None)
            else:
                w = torch.ops.onednn.qlinear_prepack(w8, None)
            packed = (w, scale, zero, k)
        ctx.cache[key] = (q.weight, packed)
    return ctx.cache[key][1]


def _int8_works() -> bool:
    """Whether oneDNN's int8 kernels exist here and give the exact integers (checked once per process)."""
    if "ok" not in _INT8_STATE:
        try:
            _INT8_STATE["ok"] = int8_selftest()
        except (RuntimeError, AttributeError, NotImplementedError):
            _INT8_STATE["ok"] = False
    return _INT8_STATE["ok"]


def int8_selftest() -> bool:
    """oneDNN's linear and convolution on extreme operands (inputs 0 and 127, weights -128 and 127,
    sums of 36-72 products of 127 x 127) against int64 sums: a CPU or library whose int8 kernels
    saturate or round fails it, and the engine then keeps its float32 products."""
    g = torch.Generator().manual_seed(17)
    x = torch.randint(0, 2, (33, 4, 9, 9), generator=g, dtype=torch.uint8) * 127
    w = torch.where(torch.rand((16, 4, 3, 3), generator=g) < 0.5, -128, 127).to(torch.int8)
    w[:, :, 0] = 127  # one row of one sign: long runs of equal-signed products
    scale, zero = torch.ones(16), torch.zeros(16, dtype=torch.int64)
    ref = F.conv2d(x.to(torch.int64), w.to(torch.int64), None, 1, 1)
    packed = torch.ops.onednn.qconv_prepack(w, scale, 1.0, 0, [1, 1], [1, 1], [1, 1], 1, None)
    y = torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, packed, scale, zero, None, [1, 1], [1, 1], [1, 1], 1,
                                           1.0, 0, torch.float32, "none", [], "")
    xl = x.reshape(33 * 4, 81)[:, :72].contiguous()
    wl = w.reshape(16, 36).repeat(1, 2).contiguous()
    yl = torch.ops.onednn.qlinear_pointwise(xl, 1.0, 0, torch.ops.onednn.qlinear_prepack(wl, None), scale, zero,
                                            None, 1.0, 0, torch.float32, "none", [], "")
    return bool(torch.equal(y.to(torch.int64), ref)
                and torch.equal(yl.to(torch.int64), xl.to(torch.int64) @ wl.to(torch.int64).T))


def _ints(x: torch.Tensor) -> torch.Tensor:
    """A neuron's input as int64 (exact-integer floats, `engine._float_outputs`, converted)."""
    return x.to(torch.int64) if x.is_floating_point() else x


def _absmax(x: torch.Tensor) -> float:
    """``max |x|`` in one pass without allocating ``|x|``."""
    lo, hi = _extremes(x)
    return max(-lo, hi, 0.0)


def _extremes(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of ``x`` in one pass (``(0, 0)`` when empty)."""
    if x.numel() == 0:
        return 0.0, 0.0
    lo, hi = torch.aminmax(x)
    return float(lo), float(hi)


def _linear(x, w):
    if x.dim() == 3 and not x.is_contiguous():
        # a [T, B, n] batch chunk: one batched product over its contiguous steps (matmul would
        # copy the chunk first); integer sums are exact in any order
        return torch.bmm(x, w.T.expand(x.shape[0], *w.T.shape))
    return x @ w.T


@INT.stateless(ops.Dense, strided=True)
def dense(op: ops.Dense, xs, ctx: Context) -> torch.Tensor:
    return _weighted(op, xs, ctx, _linear)


def _check_conv_exp(op, ctx: Context) -> None:
    if op.q is not None and op.q.weight_exp != 0 and not ctx.profile.conv_weight_exp:
        raise ValueError(f"node '{ctx.node}': profile '{ctx.profile.name}' convolutions have no weight exponent "
                         f"(got weight_exp={op.q.weight_exp})")


@INT.stateless(ops.Conv2d)
def conv2d(op: ops.Conv2d, xs, ctx: Context) -> torch.Tensor:
    _check_conv_exp(op, ctx)
    w = _window_sum(op, ctx)

    def fn(x, weight):
        if w is not None and x.is_floating_point():
            # every channel's window sum times one weight: a sum pool, 1.5-3x faster than the
            # depthwise convolution on CPU (exact integer sums either way); the weight as given
            # (`_weighted_bound` may pass the weights times 2^e)
            return F.avg_pool2d(x, op.kernel, op.stride, 0, divisor_override=1).mul_(weight.view(-1)[0])
        return F.conv2d(x, weight, None, op.stride, op.padding, op.dilation, op.groups)

    y, bound = _weighted_bound(op, xs, ctx, fn)
    return _conv_overflow(y, bound, ctx)


def _window_sum(op: ops.Conv2d, ctx: Context) -> float | None:
    """The one weight of a depthwise convolution whose weights are all equal, without padding or
    dilation (the count a max pool of spikes is lowered to), else None."""
    q = _q(op, ctx)
    key = (id(q.weight), "window_sum")
    if key not in ctx.cache:
        wt = q.weight
        uniform = (wt.ndim == 4 and wt.shape[1] == 1 and op.groups == wt.shape[0] and wt.size
                   and tuple(op.padding) == (0, 0) and tuple(op.dilation) == (1, 1) and bool((wt == wt.flat[0]).all()))
        ctx.cache[key] = (wt, float(wt.flat[0]) if uniform else None)
    return ctx.cache[key][1]


@INT.stateless(ops.Conv1d)
def conv1d(op: ops.Conv1d, xs, ctx: Context) -> torch.Tensor:
    _check_conv_exp(op, ctx)
    y, bound = _weighted_bound(op, xs, ctx, lambda x, w: F.conv1d(x, w, None, op.stride, op.padding, op.dilation, op.groups))
    return _conv_overflow(y, bound, ctx)


def _conv_overflow(y: torch.Tensor, bound: float, ctx: Context) -> torch.Tensor:
    """The convolution accumulator's overflow rule, skipped when the bound proves it idle."""
    lo, hi = _range_of(ctx.profile.conv_acc_bits, ctx.profile.conv_acc_overflow)
    if lo <= -bound and bound <= hi:
        return y
    ctx.out_range = (lo, hi)  # the register's values
    return overflow(y.to(torch.int64), ctx.profile.conv_acc_bits, ctx.profile.conv_acc_overflow, ctx, "conv_overflow")


def _exact_float(x: torch.Tensor, terms: int) -> torch.dtype:
    """float32 when sums of ``terms`` values of ``x`` stay exact integers in it, else float64."""
    return torch.float32 if _absmax(x) * terms < 2**24 else torch.float64


@INT.stateless(ops.SumPool2d)
def sumpool(op: ops.SumPool2d, xs, ctx: Context) -> torch.Tensor:
    terms = op.kernel**2 if isinstance(op.kernel, int) else int(np.prod(op.kernel))
    x = xs[0]
    y = F.avg_pool2d(x.to(_exact_float(x, terms)), op.kernel, op.stride, op.padding, count_include_pad=True,
                     divisor_override=1)
    return y.to(torch.int64)  # exact sums of integers: no rounding needed


@INT.stateless(ops.AvgPool2d)
def avgpool(op: ops.AvgPool2d, xs, ctx: Context) -> torch.Tensor:
    q = _q(op, ctx)
    return (sumpool(op, xs, ctx) * _cached(ctx, q.mult, torch.int64)) >> q.shift


@INT.stateless(ops.MaxPool2d)
def maxpool(op: ops.MaxPool2d, xs, ctx: Context) -> torch.Tensor:
    x = xs[0]
    if op.padding == (0, 0):
        # the maximum of the k x k strided views, on the integers themselves: no conversions, and
        # 2-3x faster than CPU max_pool2d on one thread
        y = window_max(x, op.kernel, op.stride)
        # exact-integer floats (a weighted sum's, engine._float_outputs) stay floats for neurons only
        return y.to(torch.int64) if y.is_floating_point() and not ctx.float_out else y
    return F.max_pool2d(x.to(_exact_float(x, 1)), op.kernel, op.stride, op.padding).to(torch.int64)


@INT.stateless(ops.Add)
def add(op: ops.Add, xs, ctx: Context) -> torch.Tensor:
    known = bool(ctx.in_ranges) and all(r is not None for r in ctx.in_ranges)
    if known:
        ctx.out_range = (sum(r[0] for r in ctx.in_ranges), sum(r[1] for r in ctx.in_ranges))
    if any(x.is_floating_point() for x in xs):  # exact-integer floats (engine._float_outputs)
        ft = xs[0].dtype
        limit = 2**24 if ft == torch.float32 else _EXACT
        if not (ctx.float_out and known and all(x.dtype == ft for x in xs)
                and -limit < ctx.out_range[0] and ctx.out_range[1] < limit):
            xs = [x.to(torch.int64) for x in xs]  # a float sum could round: add the integers
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y


@INT.stateless(ops.Scale)
def scale(op: ops.Scale, xs, ctx: Context) -> torch.Tensor:
    q = _q(op, ctx)
    return (xs[0] * _cached(ctx, q.mult, torch.int64)) >> q.shift


@INT.stateless(ops.BatchNorm)
def batchnorm(op: ops.BatchNorm, xs, ctx: Context) -> torch.Tensor:
    raise ValueError(f"node '{ctx.node}': batch norm has no integer form; run the fold-batchnorm pass first")


@INT.stateless(ops.Reshape)
def reshape(op: ops.Reshape, xs, ctx: Context) -> torch.Tensor:
    return xs[0].reshape((xs[0].shape[0], *op.shape))


@INT.stateless(ops.Permute)
def permute(op: ops.Permute, xs, ctx: Context) -> torch.Tensor:
    return xs[0].permute(0, *(d + 1 for d in op.dims))


# -- neurons ----------------------------------------------------------------------


@INT.stateful(ops.LIF)
class LIFInt(StatefulKernel):
    """Integer LIF (see `npuc.ir.values.QLIF` for the equations)."""

    def init(self, op: ops.LIF, shape, ctx: Context) -> dict:
        q = _q(op, ctx)
        prof = ctx.profile
        if prof is None:
            raise ValueError("the integer engine needs a numeric profile")
        pop = self._population(op, q, prof, shape, ctx)
        if pop is not None:
            return {"pop": pop, "shape": shape}
        return self._torch_state(op, q, prof, shape, ctx)

    def _torch_state(self, op: ops.LIF, q, prof: NumericProfile, shape, ctx: Context) -> dict:
        """The torch steps' state and buffers."""
        z = torch.zeros((ctx.batch, *shape), dtype=torch.int64)
        key = (id(q.bias_mant), "bias", q.bias_exp)
        if key not in ctx.cache:  # the shifted bias and its range (None: no bias, skip one add per step)
            bias = shift(_cached(ctx, q.bias_mant, torch.int64), q.bias_exp)
            ctx.cache[key] = (q.bias_mant, bias if bool(bias.any()) else None,
                              _extremes(bias) if bool(bias.any()) else (0.0, 0.0))
        _, bias, st_brange = ctx.cache[key]
        st = {
            "prof": prof, "u": z, "v": torch.full_like(z, q.v_init), "s": torch.zeros_like(z), "bias": bias,
            "bias_range": st_brange,
            "v_min": None if q.v_min is None else _cached(ctx, q.v_min, torch.int64),
            "du": _multiplier(q.du, prof.du_offset, prof),
            "dv": _multiplier(q.dv, prof.dv_offset, prof),
            "vth": q.vth << prof.vth_shift,
            "vth_lo": None if q.vth_lo is None else q.vth_lo << prof.vth_shift,
        }
        if op.spike == "bernoulli":
            n = int(np.prod(shape))
            st["r"] = torch.from_numpy(lfsr.uniform_block(op.bits, op.seed, ctx.steps, n).astype(np.int64))
        # binary spikes: the in-place step, also inside recurrent groups (where `prepare` is not
        # called: inputs arrive step by step and every overflow check stays on)
        # multi-level spikes (sinabs) too when the reset is a same-step subtraction (or none)
        multi = op.spike == "multilevel" and op.reset_timing == "same" and op.reset != "value"
        st["fast"] = FAST_PATHS and (op.spike == "binary" or multi) and st["v_min"] is None and op.charge == "current"
        if st["fast"]:
            self._prepare_fast(op, st, ctx)
        return st

    @staticmethod
    def _population(op: ops.LIF, q, prof: NumericProfile, shape, ctx: Context):
        """The fused kernel's state for this run (`int_fused.Population`), or None where the torch steps run."""
        if not (FUSED and FAST_PATHS):
            return None
        # numba's import (~0.3 s) only where the integer engine runs neurons
        from . import int_fused

        key = (id(q), "fused", tuple(shape))
        if key not in ctx.cache:
            ctx.cache[key] = (q, int_fused.params(op, prof, tuple(shape)))
        consts = ctx.cache[key][1]
        if consts is None:
            return None
        if any((ctx.node, p) in ctx.leaving for p in op.ports):  # its rows leave the run: new ones
            return int_fused.Population(consts, q.v_init, ctx.batch, tuple(shape), ctx.steps)
        # else the last run's state and rows, reset, when that run had this batch and steps (one
        # kept per layer and thread: runs of one graph in several threads must not share them)
        reuse = (id(q), "population", tuple(shape), threading.get_ident())
        pop = ctx.cache[reuse][1] if reuse in ctx.cache else None
        if pop is None or pop.shape[0] != ctx.batch or pop.steps != ctx.steps:
            pop = int_fused.Population(consts, q.v_init, ctx.batch, tuple(shape), ctx.steps)
            ctx.cache[reuse] = (q, pop)
        else:
            pop.reset(q.v_init)
        return pop

    def _run_fused(self, op: ops.LIF, st: dict, x: torch.Tensor, t0: int, ctx: Context) -> dict:
        """Steps ``t0 ..`` of the fused kernel on ``x`` ([steps, B, ...]); its [T, B, ...] rows."""
        pop = st["pop"]
        ports = tuple(p for p in ("spikes", "v", "i") if p == "spikes" or (ctx.node, p) in ctx.needed)
        # binary spikes only weighted sums read (engine._float_outputs) as uint8: what their int8
        # products take, a quarter of int64's memory traffic, and one compiled variant for all
        dtype = torch.uint8 if ctx.float_out and op.spike == "binary" else torch.int64
        counts = pop.run(x, t0, ports, dtype)
        for what, n in zip(pop.COUNTERS, counts):
            if n:
                ctx.count(what, n)
        return pop.rows

    def all_steps(self, op: ops.LIF, st: dict):
        return st.get("all")

    def prepare(self, op: ops.LIF, st: dict, xs, ctx: Context) -> None:
        """Shift every step's input at once, and skip overflow handling the data cannot trigger.

        Worst-case magnitudes over the whole run: ``|u| <= A / (1 - f_u)`` (or ``T A``
        without decay) with ``A = max |a << act_shift|``; ``|h| <= (U + |bias| + R) / (1 - f_v)``
        (or ``T`` times) with ``R`` the largest reset subtraction; each check is skipped only
        when its bound fits the register."""
        if "pop" in st:
            if op.spike == "multilevel" and self._adopt_torch(op, st, ctx, lambda alt: self.prepare(op, alt, xs, ctx)):
                return
            st["all"] = self._run_fused(op, st, xs[0], 0, ctx)
            return
        prof: NumericProfile = ctx.profile  # type: ignore[assignment]
        x = xs[0]
        # binary spikes go straight into the rows of the [T, B, ...] result (no stack afterwards)
        if "spike_rows" not in st:
            st["spike_rows"] = torch.empty((ctx.steps, *st["v"].shape), dtype=torch.int64)
        alo, ahi = _range_of(prof.act_bits, prof.act_overflow)
        known = ctx.in_ranges[0] if ctx.in_ranges else None  # the weighted sum's bounds: no pass
        if known is not None and alo <= known[0] and known[1] <= ahi:
            self._prove(op, st, known[0], known[1], ctx)
            narrow = st["fast"] and NARROW and st["v"].numel() >= _NARROW_MIN
            if not (st["check_u"] or st["check_v"] or (narrow and "s32" not in st)):
                known = "proven"
        if known != "proven":  # the values' own extremes (tighter) for the proofs
            lo, hi = _extremes(x)
            if not (alo <= lo and hi <= ahi):  # the common case: one pass finds nothing to resolve
                x = overflow(x.to(torch.int64), prof.act_bits, prof.act_overflow, ctx, "input_overflow")
                lo, hi = _extremes(x)
            self._prove(op, st, lo, hi, ctx)
        # every step's input shifted at once, in the state's type (int32 inputs fit: amax < 2^30)
        a = x.to(torch.int32 if "s32" in st else torch.int64, memory_format=torch.contiguous_format)
        st["a_shifted"] = a.__ilshift__(prof.act_shift) if a is not x else a << prof.act_shift  # never x itself
        if (st["fast"] and _is(st["du"], 0) and not st["check_u"] and st["bias"] is not None
                and (ctx.node, "i") not in ctx.needed):
            # u is the input alone, unchecked and unread: h = decay(v) + (a + bias) adds the same
            # integers (int32 state: |a + bias| is within `_narrow`'s proof), one pass instead of T
            st["a_shifted"] += st["bias"].to(st["a_shifted"].dtype)
            st["bias"] = None
        if (st["fast"] and op.spike == "binary" and _is(st["du"], 0) and _is(st["dv"], 0)
                and op.reset_timing == "same"):
            st["all"] = self._all_steps(op, st, ctx)

    def _all_steps(self, op: ops.LIF, st: dict, ctx: Context) -> dict:
        """Every step's outputs of a neuron without state (u and v decay fully each step and a reset
        acts within its step, e.g. the OR neurons a max pool of spikes is lowered to): `_step_fast`'s
        arithmetic on all steps at once. Checks resolve each value on its own (and count changed
        values), so applying them to all steps together changes nothing."""
        prof: NumericProfile = ctx.profile  # type: ignore[assignment]
        u = st["a_shifted"]
        if st["check_u"]:
            u = overflow_chain(u, st["u_rules"], ctx)
        h = u + st["bias"] if st["bias"] is not None else u.clone()
        if st["check_v"] and not self._fits(op, st, h, False):
            h = overflow(overflow(h, prof.arith_bits, "wrap", ctx, "v_adder_wrap"), prof.v_bits, prof.v_overflow,
                         ctx, "v_overflow")
        spikes = (torch.gt if op.compare == "gt" else torch.ge)(h, st["vth"], out=st["spike_rows"])
        out = {"spikes": spikes}
        if (ctx.node, "v") in ctx.needed:
            if op.reset == "subtract":
                h = h - spikes.to(h.dtype) * st["vth"]
            elif op.reset == "value":
                h = torch.where(spikes != 0, op.q.reset_value, h)
            out["v"] = h.to(torch.int64)
        if (ctx.node, "i") in ctx.needed:
            out["i"] = u.to(torch.int64)
        return out

    def prepare_range(self, op: ops.LIF, st: dict, rng: tuple[float, float], ctx: Context) -> None:
        """Inside a recurrent group, with bounds of the input at every step (from the weighted sums
        feeding it): `prepare`'s proofs on those bounds, and the input's own register check skipped
        when they fit it (`_step_fast` then shifts the input into the state's type directly).

        A large fused layer takes the torch step instead where these bounds prove int32 state
        (`_adopt_torch`)."""
        if "pop" in st:
            self._adopt_torch(op, st, ctx, lambda alt: self.prepare_range(op, alt, rng, ctx))
            return
        if not st.get("fast"):
            return
        lo, hi = rng
        alo, ahi = _range_of(ctx.profile.act_bits, ctx.profile.act_overflow)
        if not (alo <= lo and hi <= ahi):
            return
        self._prove(op, st, lo, hi, ctx)
        st["a_known"] = torch.empty_like(st["v"])  # the shifted input's buffer

    def _adopt_torch(self, op: ops.LIF, st: dict, ctx: Context, prepare) -> bool:
        """Replace fused state ``st`` by the torch steps' when the layer holds `_TORCH_MIN` values or
        more and ``prepare`` (`prepare` or `prepare_range` of the torch state) proves int32 state
        (`_narrow`): the torch step on int32 is then faster than the fused kernel on int64 (one call
        per step inside a loop; multi-level spikes, which it divides in float64). Checks that are
        not proven idle stay on in the torch step, exact as in the fused one."""
        if not (NARROW and ctx.batch * math.prod(st["shape"]) >= _TORCH_MIN):
            return False
        alt = self._torch_state(op, op.q, ctx.profile, st["shape"], ctx)
        if not alt["fast"]:
            return False
        prepare(alt)
        if "s32" not in alt:
            return False
        st.clear()
        st.update(alt)
        return True

    def _prove(self, op: ops.LIF, st: dict, lo: float, hi: float, ctx: Context) -> None:
        """`prepare`'s bounds for inputs within ``[lo, hi]`` at every step: which checks can be
        skipped, and whether int32 state suffices (`_narrow`)."""
        prof: NumericProfile = ctx.profile  # type: ignore[assignment]
        lo, hi = min(lo, 0.0) * 2.0**prof.act_shift, max(hi, 0.0) * 2.0**prof.act_shift
        amax = max(-lo, hi)
        D, T = prof.decay_unity, ctx.steps
        # a decay that does not round toward zero can grow a magnitude by < 1 per step
        slack = 0.0 if prof.decay_rounding == "trunc0" else float(T)

        def geometric(per_step: float, mult) -> float:
            f = max(0.0, min(1.0, _largest(mult) / D))
            return slack + (per_step * T if f >= 1.0 else min(per_step * T, per_step / (1.0 - f)))

        u0 = 0.0  # u starts at zero (`init`)
        ubound = geometric(amax, st["du"]) + u0
        q = op.q
        reset = max(abs(st["vth"]), abs(st["vth_lo"] or 0), abs(q.reset_value), abs(q.v_init))
        if op.spike == "multilevel":
            reset *= op.levels or 2**20
        blo, bhi = st["bias_range"]
        bias = max(-blo, bhi)
        vbound = geometric(ubound + bias + reset, st["dv"]) + reset + abs(q.v_init)
        if op.spike == "binary" and op.reset == "value" and op.reset_timing == "same" and st["v_min"] is None:
            # v after a step is <= max(vth, reset_value) (below threshold, or reset): only the
            # negative side accumulates
            top = max(st["vth"], q.reset_value, q.v_init, 0) + geometric(hi, st["du"]) + u0 + max(bhi, 0.0)
            low = geometric(geometric(-lo, st["du"]) + u0 + max(-blo, 0.0), st["dv"]) + abs(q.reset_value) + abs(q.v_init)
            vbound = min(vbound, max(top, low))
        same_sub = op.reset == "subtract" and op.reset_timing == "same" and op.spike in ("binary", "multilevel")
        if ((same_sub or (op.spike == "binary" and op.reset == "subtract" and op.reset_timing == "delayed"))
                and st["vth"] >= 0 and st["v_min"] is None):
            # a subtraction of s * vth only follows v >= s * vth >= 0 (a delayed one: v > vth), so it
            # never grows |v| beyond vth
            vbound = min(vbound, geometric(ubound + bias, st["dv"]) + st["vth"] + abs(q.v_init))
        if st["v_min"] is not None:
            vbound += float(st["v_min"].abs().max())
        lim = lambda bits: float(2 ** (bits - 1) - 1) if bits else float("inf")  # noqa: E731
        st["check_u"] = not (ubound <= lim(prof.u_bits) and ubound <= lim(prof.arith_bits))
        st["check_v"] = not (vbound <= lim(prof.v_bits) and vbound <= lim(prof.arith_bits))
        if st["fast"] and NARROW and st["v"].numel() >= _NARROW_MIN:
            # what the v sum can hold besides decayed v and u: bias, v_init, reset_value, and a
            # delayed subtraction (binary: one vth) before the checks; a same-step subtraction
            # comes after them and only shrinks |v|
            delayed_sub = op.reset == "subtract" and op.reset_timing != "same"
            extra = bias + abs(q.v_init) + abs(q.reset_value) + (abs(st["vth"]) if delayed_sub else 0.0)
            self._narrow(op, st, amax, ubound, vbound, extra)
            if "s32" in st and ctx.float_out and op.spike == "binary":
                # only weighted ops read the spikes (engine._float_outputs): 0/1 rows in float32
                st["spike_rows"] = torch.empty(st["spike_rows"].shape, dtype=torch.float32)

    def _prepare_fast(self, op: ops.LIF, st: dict, ctx: Context) -> None:
        """Buffers for `_step_fast`: the state is updated in place (no allocation per step); ports
        somebody reads are written into ``[T, B, ...]`` rows the engine takes without stacking."""
        st["tmp"] = torch.empty_like(st["v"])
        st["spike_rows"] = torch.empty((ctx.steps, *st["v"].shape), dtype=torch.int64)
        for port in ("v", "i"):
            if (ctx.node, port) in ctx.needed:
                st[port + "_rows"] = torch.empty((ctx.steps, *st["v"].shape), dtype=torch.int64)
        # the v register's limits with one check per step (see _step_fast)
        prof: NumericProfile = ctx.profile  # type: ignore[assignment]
        st["v_ok"] = _range_of(prof.arith_bits, "wrap"), _range_of(prof.v_bits, prof.v_overflow)
        st["u_rules"] = ((prof.arith_bits, "wrap", "u_adder_wrap"), (prof.u_bits, prof.u_overflow, "u_overflow"))
        # the decays multiply the state after the previous step's register rules (or within
        # `prepare`'s proven bounds, which fit those registers): when registers keep that product
        # below 2^53 it is an exact float64, and two passes replace `_decay_`'s five on int64
        reg = lambda bits, mode: float("inf") if mode == "none" or not bits else float(2 ** (bits - 1))  # noqa: E731
        wide = max(min(reg(prof.u_bits, prof.u_overflow), reg(prof.arith_bits, "wrap")),
                   min(reg(prof.v_bits, prof.v_overflow), reg(prof.arith_bits, "wrap"))
                   + abs(st["vth"]) + abs(op.q.reset_value), abs(op.q.v_init))  # resets after the adder wrap
        if wide * prof.decay_unity < 2.0**52:
            st["ftmp"] = torch.empty(st["v"].shape, dtype=torch.float64)

    def _narrow(self, op: ops.LIF, st: dict, amax: float, ubound: float, vbound: float, extra: float) -> None:
        """Run `_step_fast` on int32 state when no intermediate value can leave int32.

        Bounds (``prepare``'s, or the register a check resolves into each step): the input
        ``|a| <= amax``; u before its check ``<= U + amax`` with ``U`` the proven bound or u's
        register; the v sum before its checks ``<= V + U + extra`` (bias, reset amounts, reset
        value) with ``V`` likewise. Checks that stay on still run (on int32 values that are the
        exact sums), so overflow is still detected and resolved exactly as in int64."""
        prof: NumericProfile = st["prof"]
        reg = lambda bits, mode: float("inf") if mode == "none" or not bits else float(2 ** (bits - 1))  # noqa: E731
        U = min(reg(prof.u_bits, prof.u_overflow), reg(prof.arith_bits, "wrap")) if st["check_u"] else ubound
        V = min(reg(prof.v_bits, prof.v_overflow), reg(prof.arith_bits, "wrap")) if st["check_v"] else vbound
        if max(U + amax, V + U + extra) >= 2**30:  # a margin below 2^31: no proof, keep int64
            return
        i32 = torch.int32
        for k in ("u", "v", "tmp"):
            st[k] = st[k].to(i32)
        st["s32"] = [torch.zeros_like(st["v"]), torch.zeros_like(st["v"])]  # this step's and the last
        st["s"] = st["s32"][1]
        st["ftmp"] = torch.empty(st["v"].shape, dtype=torch.float64)

    def _amount(self, op: ops.LIF, s: torch.Tensor, st: dict) -> torch.Tensor:
        if op.spike == "ternary":
            return torch.where(s > 0, st["vth"], torch.where(s < 0, st["vth_lo"], 0))
        return s * st["vth"]

    def step(self, op: ops.LIF, st: dict, xs, t: int, ctx: Context) -> dict:
        if "all" in st:  # computed by `prepare`
            return {p: y[t] for p, y in st["all"].items()}
        if "pop" in st:  # inside a recurrent group: one fused step
            return {p: y[t] for p, y in self._run_fused(op, st, xs[0].unsqueeze(0), t, ctx).items()}
        if st["fast"]:
            return self._step_fast(op, st, xs, t, ctx)
        prof: NumericProfile = ctx.profile  # type: ignore[assignment]
        q = op.q
        if "a_shifted" in st:
            a_shifted = st["a_shifted"][t]
        else:  # inside a recurrent group: inputs arrive step by step
            a_shifted = overflow(_ints(xs[0]), prof.act_bits, prof.act_overflow, ctx, "input_overflow") << prof.act_shift
        # modular adders: one wrap of the total equals a wrap after every add
        u = a_shifted if _is(st["du"], 0) else decay(st["u"], st["du"], prof) + a_shifted
        if st.get("check_u", True):
            u = overflow(u, prof.arith_bits, "wrap", ctx, "u_adder_wrap")
            u = overflow(u, prof.u_bits, prof.u_overflow, ctx, "u_overflow")
        v, s_prev = st["v"], st["s"]
        if op.reset_timing == "delayed" and op.reset == "value":
            v = torch.where(s_prev != 0, q.reset_value, v)
        h = decay(v, st["dv"], prof) + (st["u"] if op.charge == "previous" else u)
        if st["bias"] is not None:
            h += st["bias"]  # h is a fresh sum: adding in place is safe
        if st.get("check_v", True):
            h = overflow(h, prof.arith_bits, "wrap", ctx, "v_adder_wrap")
        if op.reset_timing != "same" and op.reset == "subtract":
            h = h - self._amount(op, s_prev, st)
        if op.reset_timing == "delayed_charge" and op.reset == "value":
            h = torch.where(s_prev != 0, q.reset_value, h)
            if op.charge == "previous":  # the alpha neuron's reset also clears its current
                u = torch.where(s_prev != 0, 0, u)
        if st.get("check_v", True):
            h = overflow(h, prof.v_bits, prof.v_overflow, ctx, "v_overflow")
        if op.spike == "binary":  # the hot path: keep the comparison's mask for the reset
            fired = h > st["vth"] if op.compare == "gt" else h >= st["vth"]
            rows = st.get("spike_rows")
            s = rows[t].copy_(fired) if rows is not None else fired.to(torch.int64)
        else:
            s = self._fire(op, h, st, t)
            fired = s != 0
        if op.reset_timing == "same" and op.reset == "subtract":
            v = h - self._amount(op, s, st)
        elif op.reset_timing == "same" and op.reset == "value":
            v = h.masked_fill_(fired, q.reset_value)  # h is fresh (never a stored state)
        else:
            v = h
        if st["v_min"] is not None:
            v = torch.maximum(v, st["v_min"])
        st["u"], st["v"], st["s"] = u, v, s
        return {"spikes": s, "v": v, "i": u}

    def _step_fast(self, op: ops.LIF, st: dict, xs, t: int, ctx: Context) -> dict:
        """`step` for binary spikes, in place on owned buffers (int32 ones when `_narrow` proved
        they suffice).

        Same arithmetic in the same order as `step`. The two v-register resolutions (the adder's
        wrap before the reset, the state rule after it) are decided by one ``aminmax`` of the sum:
        the reset moves values by at most ``|vth|`` (or to ``reset_value``), so when that whole
        range fits both registers neither rule can change a value; otherwise this step takes
        `step`'s exact path. Resets that set a value multiply by a 0/1 mask (``masked_fill_`` is
        several times slower on CPU)."""
        prof: NumericProfile = ctx.profile  # type: ignore[assignment]
        q = op.q
        if "a_shifted" in st:
            a = st["a_shifted"][t]
        elif "a_known" in st:  # inside a recurrent group, the input's check proven idle (`prepare_range`)
            a = st["a_known"].copy_(xs[0]).__ilshift__(prof.act_shift)  # fits (`_narrow`)
        else:  # inside a recurrent group
            a = overflow(_ints(xs[0]), prof.act_bits, prof.act_overflow, ctx, "input_overflow") << prof.act_shift
        ftmp = st.get("ftmp")
        u = a if _is(st["du"], 0) else _decay_(st["u"], st["du"], prof, st["tmp"], ftmp).add_(a)
        if st.get("check_u", True):  # u is owned (a is the kernel's own tensor)
            y = overflow_chain(u, st["u_rules"], ctx)
            if y is not u:
                u.copy_(y)
        v, s_prev = st["v"], st["s"]
        after = t > 0  # the first step has no previous spikes
        if after and op.reset_timing == "delayed" and op.reset == "value":
            self._set_where(v, s_prev, q.reset_value, st["tmp"])
        h = _decay_(v, st["dv"], prof, st["tmp"], ftmp).add_(u)
        if st["bias"] is not None:
            h += st["bias"]
        if st.get("check_v", True) and not self._fits(op, st, h, after):
            h.copy_(overflow(h, prof.arith_bits, "wrap", ctx, "v_adder_wrap"))
            self._reset_before(op, st, h, s_prev, after)
            h.copy_(overflow(h, prof.v_bits, prof.v_overflow, ctx, "v_overflow"))
        else:
            self._reset_before(op, st, h, s_prev, after)
        cmp = torch.gt if op.compare == "gt" else torch.ge
        row = st["spike_rows"][t]
        if "s32" in st:  # int32 state: spikes in an int32 buffer (the last step's stays), copied to the rows
            s = self._spikes(op, st, h, cmp, st["s32"][t % 2])
            row.copy_(s)
        else:
            s = row = self._spikes(op, st, h, cmp, row)  # written straight into the int64 rows
        if op.reset_timing == "same" and op.reset == "subtract":
            h.add_(s, alpha=-st["vth"])
        elif op.reset_timing == "same" and op.reset == "value":
            self._set_where(h, s, q.reset_value, st["tmp"])
        st["s"] = s
        out = {"spikes": row}
        out["v"] = st["v_rows"][t].copy_(h) if "v_rows" in st else h
        out["i"] = st["i_rows"][t].copy_(u) if "i_rows" in st else u
        return out

    @staticmethod
    def _spikes(op: ops.LIF, st: dict, h: torch.Tensor, cmp, out: torch.Tensor) -> torch.Tensor:
        """Binary spikes ``h > vth`` (or ``>=``), or `_fire`'s multi-level counts, into ``out``."""
        if op.spike == "binary":
            return cmp(h, st["vth"], out=out)
        vth = int(st["vth"])
        if vth > 0 and not vth & (vth - 1):  # a power of two: the shift floors like the division, 4x faster
            torch.bitwise_right_shift(h, vth.bit_length() - 1, out=out)
        else:
            torch.div(h, vth, rounding_mode="floor", out=out)
        return out.clamp_(min=0, max=None if op.levels is None else op.levels - 1)

    @staticmethod
    def _set_where(x: torch.Tensor, mask: torch.Tensor, value: int, tmp: torch.Tensor) -> None:
        """``x[mask != 0] = value`` for a 0/1 integer ``mask``: ``x -= (x - value) * mask``."""
        if value:
            torch.sub(x, value, out=tmp)
            tmp.mul_(mask)
        else:
            torch.mul(x, mask, out=tmp)
        x.sub_(tmp)

    def _reset_before(self, op: ops.LIF, st: dict, h: torch.Tensor, s_prev: torch.Tensor, after: bool) -> None:
        """The resets `step` applies between the v adder and the v register (previous spikes)."""
        if not after:
            return
        if op.reset_timing != "same" and op.reset == "subtract":
            h.add_(s_prev, alpha=-st["vth"])
        if op.reset_timing == "delayed_charge" and op.reset == "value":
            self._set_where(h, s_prev, op.q.reset_value, st["tmp"])

    def _fits(self, op: ops.LIF, st: dict, h: torch.Tensor, after_spikes: bool) -> bool:
        """Whether neither v-register rule can change any value this step (see `_step_fast`)."""
        lo, hi = (float(x) for x in torch.aminmax(h))
        (wlo, whi), (vlo, vhi) = st["v_ok"]
        if not (wlo <= lo and hi <= whi):
            return False
        if after_spikes and op.reset_timing != "same" and op.reset == "subtract":
            lo, hi = lo - max(st["vth"], 0), hi - min(st["vth"], 0)
        if after_spikes and op.reset_timing == "delayed_charge" and op.reset == "value":
            lo, hi = min(lo, op.q.reset_value), max(hi, op.q.reset_value)
        return vlo <= lo and hi <= vhi

    def _fire(self, op: ops.LIF, h: torch.Tensor, st: dict, t: int) -> torch.Tensor:
        vth = st["vth"]
        if op.spike == "binary":
            return (h > vth if op.compare == "gt" else h >= vth).to(torch.int64)
        if op.spike == "ternary":
            lo = st["vth_lo"]
            if op.compare == "gt":
                return (h > vth).to(torch.int64) - (h < lo).to(torch.int64)
            return (h >= vth).to(torch.int64) - (h <= lo).to(torch.int64)
        if op.spike == "multilevel":
            s = torch.clamp(torch.div(h, vth, rounding_mode="floor"), min=0)
            return s if op.levels is None else torch.clamp(s, max=op.levels - 1)
        m = float((1 << op.bits) - 1)
        p = torch.sigmoid((h - vth).to(torch.float64) * op.q.scale)
        pq = torch.floor(p * m + 0.5)
        r = st["r"][t].reshape(h.shape[1:]).to(torch.float64)
        return (r <= pq).to(torch.int64)


# -- max pools of spikes: a window count and an OR neuron, run as one ------------------------


def pool_pairs(graph, ctx: Context) -> dict[str, tuple[str, int]]:
    """The max pools of spikes the loihi lowering made into a window count and an OR neuron
    (`compiler.passes.legalize`), by the neuron's name: ``(count node, rule)``, the rule being the
    window count ``c0`` from which the neuron fires (`_or_rule`). The engine runs such a pair as one
    node (`pool_or`) when neither is probed and nobody reads the neuron's v or i (cached with the
    graph; the rules are found at the first run)."""
    if not FUSED_POOLS:
        return {}
    if "_pool_pairs" not in ctx.cache:
        from .engine import _static_range

        found: dict[str, tuple[str, int]] = {}
        for node in graph:
            users = graph.users(node.name)
            if not (isinstance(node.op, ops.Conv2d) and len(users) == 1 and len(node.inputs) == 1):
                continue
            (src,), lif = node.inputs, graph[users[0][0]]
            if (src.delay or not isinstance(lif.op, ops.LIF) or len(lif.inputs) != 1 or lif.inputs[0].delay
                    or _static_range(graph, src.node, graph[src.node].port(src)) != (0.0, 1.0)
                    or tuple(node.op.stride) != tuple(node.op.kernel) or not _stateless(lif.op, ctx.profile)
                    or _window_sum(node.op, ctx) is None):
                continue
            rule = _or_rule(graph, node, lif, ctx)
            if rule is not None:
                found[lif.name] = (node.name, rule)
        ctx.cache["_pool_pairs"] = found
    return ctx.cache["_pool_pairs"]


FUSED_POOLS = True
"""Run a max pool's window count and OR neuron as one node (`pool_or`; False: both nodes, which
the tests compare with it)."""


def _stateless(op, prof: NumericProfile | None) -> bool:
    """Whether a neuron's spikes at a step depend on that step's input alone: u and v decay fully
    every step (multipliers 0), the charge is the current one, a reset acts within its step (it
    only changes the v that decays away), binary spikes."""
    q = op.q
    if prof is None or q is None or op.spike != "binary" or op.charge != "current" or op.reset_timing != "same":
        return False
    return all(not np.any(np.asarray(prof.decay_unity - (np.asarray(d, dtype=np.int64) + off)))
               for d, off in ((q.du, prof.du_offset), (q.dv, prof.dv_offset)))


def _or_rule(graph, count, lif, ctx: Context) -> int | None:
    """The count ``c0`` from which the stateless neuron ``lif`` fires on the window count
    ``count`` of binary spikes, found by the engine itself: the pair runs (both nodes, this
    profile's kernels) on one sample per count ``c`` in ``0 .. k*k``, each window holding ``c``
    spikes. None (the pair then runs as two nodes) when its spikes are not ``c >= c0`` for every
    neuron, or when a register rule changed any value (the counters must count them)."""
    from ..ir import Graph
    from ..ir.values import Encoding
    from . import simulate

    kh, kw = count.op.kernel
    c_in, h, w = graph[count.inputs[0].node].shapes[graph[count.inputs[0].node].port(count.inputs[0])]
    n_h, n_w = (h - kh) // kh + 1, (w - kw) // kw + 1
    k = kh * kw
    x = np.zeros((1, k + 1, c_in, h, w), dtype=np.float32)
    for c in range(k + 1):
        window = (np.arange(k) < c).reshape(kh, kw)
        x[0, c, :, :n_h * kh, :n_w * kw] = np.tile(window, (n_h, n_w))
    sub = Graph("pool_or_rule")
    sub.add("x", ops.Input((c_in, h, w), layout="TB", encoding=Encoding("spikes")))
    sub.add("count", count.op, ["x"])
    sub.add("or", lif.op, ["count"])
    sub.add("out", ops.Output(index=0), ["or"])
    sub.profile = ctx.profile
    res = simulate(sub.verify(), x, "int")
    if any(res.stats.values()):
        return None
    s = res.outputs[0][0].reshape(k + 1, -1)  # [count, neuron]
    if not np.isin(s, (0, 1)).all() or not (s == s[:, :1]).all():
        return None
    fires = s[:, 0].astype(bool)
    c0 = int(np.argmax(fires)) if fires.any() else k + 1
    return c0 if not fires[:c0].any() and fires[c0:].all() else None


def pool_or(count_op, lif_op, c0: int, x: torch.Tensor, ctx: Context) -> dict[str, torch.Tensor]:
    """A max pool's window count and OR neuron as one node on binary spikes ``x`` (``[T, B, C, H,
    W]``, any integer or float type): the neuron's spikes ``count >= c0`` (`pool_pairs`), from ``c0
    = 1`` the windows' maxima, in the type the fused neuron kernel writes them in."""
    t, b = x.shape[:2]
    flat = x.reshape(t * b, *x.shape[2:])
    dtype = torch.uint8 if ctx.float_out else torch.int64
    if c0 == 1:
        y = window_max(flat, count_op.kernel, count_op.stride).to(dtype)
    else:
        counts = F.avg_pool2d(flat.to(torch.float32), count_op.kernel, count_op.stride, 0, divisor_override=1)
        y = (counts >= c0).to(dtype)
    return {"spikes": y.reshape(t, b, *y.shape[1:])}

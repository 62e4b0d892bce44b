"""Lower the inter-token NPEs (`npuc.ir.ops.attention`) to RTL units.

* `SpikeAttention` is the weighted op of a synapse path into a neuron
  population: `attn_path` builds an `AttnPath` (`npuc_attn` accumulates
  ``S V`` in lane RAMs; the neuron unit reads them through a table that folds
  the Permute/Reshape ops after the attention, then ``(acc * mult) >> shift``).
* `StochasticAttention` and `LinearAttention` are populations: `sc_unit` and
  `linear_unit` build `Unit` stages (`npuc_sc_attn`, `npuc_linattn`).

All three read their inputs Q, K, V through `npuc_gather`: the Reshape/Permute
ops between each source population and the unit are folded into one decode
ROM (`gather`). Every width comes from exact integer ranges, and the constant
rounding divisions of stochastic attention use a multiply-shift proven exact
over the whole counter range (`sc_divider`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...ir import Graph, Ref
from ...ir.analysis import is_population
from ...ir.ops import LinearAttention, Permute, Reshape, SpikeAttention, StochasticAttention
from ...sim import lfsr
from .bounds import (
    Range,
    UnboundedError,
    WidthLog,
    fixpoint,
    overflow,
    rounding_shift,
    unsigned_bits,
)
from .model import AttnPath, EventList, Gather, Memory, Unit
from .util import RtlSupportError, ident, uconst, vconst, words

OVF_MODES = {"none": 0, "wrap": 1, "wrap_sym": 2, "saturate": 3, "saturate_sym": 4}
ROUNDING = {"trunc0": 0, "floor": 1, "round_half_up": 2}
ATTENTION_MODULES = ("npuc_gather.v", "npuc_attn.v")
SC_MODULES = ("npuc_gather.v", "npuc_lfsr_bank.v", "npuc_sc_encode.v", "npuc_sc_decode.v", "npuc_unit_out.v",
              "npuc_sc_attn.v")
LINEAR_MODULES = ("npuc_gather.v", "npuc_vdecay.v", "npuc_unit_out.v", "npuc_linattn.v")
UNIT_OPS = (StochasticAttention, LinearAttention)


@dataclass(frozen=True)
class UnitInput:
    """One input of an attention unit: the source population, the ops between, the edge delay."""

    source: str
    pre: tuple[str, ...]
    delay: int


def walk_input(graph: Graph, ref: Ref, where: str) -> UnitInput:
    """Follow an attention input back through Reshape/Permute ops to its source population.

    Raises:
        RtlSupportError: another op on the way, or a delay above 1.
    """
    pre: list[str] = []
    delay = 0
    while True:
        delay += ref.delay
        node = graph[ref.node]
        if is_population(graph, ref):
            if delay > 1:
                raise RtlSupportError(f"{where}: input from '{ref.node}' has delay {delay}; the RTL keeps one step "
                                      "of history (delay 0 or 1)")
            return UnitInput(ref.node, tuple(reversed(pre)), delay)
        if not isinstance(node.op, (Reshape, Permute)):
            raise RtlSupportError(f"{where}: '{ref.node}' ({type(node.op).__name__}) between a population and the "
                                  "attention has no RTL mapping (supported: Reshape, Permute)")
        pre.append(ref.node)
        (ref,) = node.inputs


def unit_inputs(graph: Graph, name: str, extra_delay: int = 0) -> list[UnitInput]:
    """The three inputs (Q, K, V) of an attention node."""
    where = f"attention '{name}' ({type(graph[name].op).__name__})"
    out = []
    for r in graph[name].inputs:
        u = walk_input(graph, r, where)
        if u.delay + extra_delay > 1:
            raise RtlSupportError(f"{where}: input from '{u.source}' reaches the neuron with delay "
                                  f"{u.delay + extra_delay}; the RTL keeps one step of history")
        out.append(UnitInput(u.source, u.pre, u.delay + extra_delay))
    return out


def _positions(graph: Graph, u: UnitInput, n_src: int, src_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """For each source element: its flat position in the attention input (pre ops folded)."""
    arr = np.arange(n_src).reshape(src_shape)
    for name in u.pre:
        op = graph[name].op
        arr = arr.reshape(graph[name].shape) if isinstance(op, Reshape) else arr.transpose(op.dims)
    if tuple(arr.shape) != tuple(shape):  # guaranteed by shape inference; a clear error if not
        raise RtlSupportError(f"input from '{u.source}' arrives with shape {arr.shape}, expected {shape}")
    inv = np.empty(arr.size, dtype=np.int64)
    inv[arr.reshape(-1)] = np.arange(arr.size)
    return inv


Layout = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""flat positions -> (sel, word, field) arrays of the gather rows."""


def gather(graph: Graph, where: str, ins: list[UnitInput], shapes: list[tuple[int, ...]], layouts: list[Layout],
           depths: tuple[int, int], widths: tuple[int, int], fw: int, pops: dict, evlists: dict[str, EventList],
           mem_name: str) -> Gather:
    """The `npuc_gather` configuration of a unit's inputs: one decode ROM entry per source element.

    Args:
        shapes: the attention input shapes (Q, K, V).
        layouts: per input, where each flat position goes (RAM select, row, field).
        depths, widths: rows and fields of RAM A and RAM B.
        fw: field width.
    """
    entries: list[int] = []
    bases: list[int] = []
    rows_a, rows_b = depths
    aaw, baw = unsigned_bits(rows_a - 1), unsigned_bits(rows_b - 1)
    rww = max(aaw, baw)
    fb = unsigned_bits(max(widths) - 1)
    for u, shape, layout in zip(ins, shapes, layouts):
        pop = pops[u.source]
        inv = _positions(graph, u, pop.n, pop.shape, shape)
        sel, word, fld = layout(inv)
        bases.append(len(entries))
        entries += [int(s) | (int(w) << 1) | (int(f) << (1 + rww)) for s, w, f in zip(sel, word, fld)]
    srcs = [evlists[u.source] for u in ins]
    return Gather(
        sources=srcs, delays=[u.delay for u in ins], nodes=[[u.source, *u.pre] for u in ins],
        pw=max(max(s.pw for s in srcs), fw), iw=max(s.iw for s in srcs), eaw=max(s.iaw for s in srcs), fw=fw,
        aaw=aaw, baw=baw, rww=rww, fb=fb, rom=Memory(mem_name, 1 + rww + fb, words(entries)),
        rom_aw=unsigned_bits(len(entries) - 1), base1=bases[1], base2=bases[2],
        caw=unsigned_bits(max(rows_a, rows_b)), depths=(rows_a, rows_b), widths=(widths[0] * fw, widths[1] * fw))


def _binary_inputs(where: str, ins: list[UnitInput], pops: dict) -> None:
    for u in ins:
        if not pops[u.source].binary:
            raise RtlSupportError(f"{where}: input '{u.source}' carries graded values; coincidence and stochastic "
                                  "attention take binary spikes (a binary LIF or a spike-encoded input)")


def _qkv_dims(graph: Graph, name: str) -> tuple[list[tuple[int, ...]], dict[str, int]]:
    node = graph[name]
    shapes = [tuple(graph[r.node].shapes[graph[r.node].port(r)]) for r in node.inputs]
    q, k, v = shapes
    return shapes, {"H": int(np.prod(q[:-2], dtype=np.int64)), "N": q[-2], "M": k[-2], "DK": q[-1], "DV": v[-1]}


def _qk_layouts(dims: dict[str, int]) -> list[Layout]:
    """Q -> RAM A rows (h, i), field d; K and V -> RAM B rows (h, j), fields d and DK + d."""
    H, N, M, DK, DV = (dims[k] for k in ("H", "N", "M", "DK", "DV"))

    def q(p):
        h, i, d = np.unravel_index(p, (H, N, DK))
        return np.zeros_like(p), h * N + i, d

    def k(p):
        h, j, d = np.unravel_index(p, (H, M, DK))
        return np.ones_like(p), h * M + j, d

    def v(p):
        h, j, d = np.unravel_index(p, (H, M, DV))
        return np.ones_like(p), h * M + j, DK + d

    return [q, k, v]


# -- coincidence attention path -------------------------------------------------------------------


def attn_path(graph: Graph, lif: str, k: int, i: int, sp, pops: dict, evlists: dict[str, EventList],
              lanes: int) -> tuple[AttnPath, Range, Range, int, str]:
    """A SpikeAttention path into neuron population ``lif`` (path ``i`` of layer ``k``).

    Returns what `npuc.backends.rtl.lower._layer` needs: the path, the range of the current it
    delivers (after the multiply-shift), a zero bias range and no overflow rule.
    """
    wname = sp.weighted
    op: SpikeAttention = graph[wname].op
    where = f"path {i} ({wname} -> {' -> '.join(sp.post + [lif])})"
    q = op.q
    if q is None:
        raise RtlSupportError(f"attention '{wname}' has no integer parameters: run the quantize pass")
    ins = unit_inputs(graph, wname, sp.delay)
    _binary_inputs(f"attention '{wname}'", ins, pops)
    shapes, dims = _qkv_dims(graph, wname)
    H, N, M, DK, DV = (dims[x] for x in ("H", "N", "M", "DK", "DV"))
    for name in sp.post:
        if not isinstance(graph[name].op, (Reshape, Permute)):
            raise RtlSupportError(f"{where}: '{name}' ({type(graph[name].op).__name__}) between the attention and "
                                  "the neuron has no RTL mapping (supported: Reshape, Permute)")
    kc = -(-DV // lanes)
    a_int, a_frac = int(q.a_int), int(q.a_frac)
    smax = DK * max(1 << a_frac, a_int)
    ymax = M * smax
    acc = Range(0, ymax)
    sw = max(unsigned_bits(smax), unsigned_bits(DK) + 2)  # the popcount adders need DK + 2 bits
    aw = max(acc.bits, unsigned_bits(M) + 1, sw + 1)  # holds a score and a KV count (signed)
    bb = unsigned_bits(DK - 1)
    order = 1 if op.order == "q_kv" else 0
    ydepth = H * N * kc
    kvdepth = (2 if a_int else 1) * H * DK * kc if order == 1 else 1
    # neuron n -> (lane, word) of Y[h, i, d], folding the ops after the attention
    arr = np.arange(H * N * DV).reshape(graph[wname].shape)
    for name in sp.post:
        o = graph[name].op
        arr = arr.reshape(graph[name].shape) if isinstance(o, Reshape) else arr.transpose(o.dims)
    n_lif = int(np.prod(graph[lif].shape))
    if arr.size != n_lif:
        raise RtlSupportError(f"{where}: attention output has {arr.size} values for {n_lif} neurons")
    hh, ii, dd = np.unravel_index(arr.reshape(-1), (H, N, DV))
    yaw = unsigned_bits(ydepth - 1)
    lb = unsigned_bits(lanes - 1)
    entries = ((hh * N + ii) * kc + dd // lanes) | ((dd % lanes) << yaw)
    g = gather(graph, f"attention '{wname}'", ins, shapes, _qk_layouts(dims), (H * N, H * M), (DK, DK + DV), 1,
               pops, evlists, f"l{k}_p{i}_gather.hex")
    params = {
        "ORDER": str(order), "H": str(H), "N": str(N), "M": str(M), "DK": str(DK), "DV": str(DV), "L": str(lanes),
        "KC": str(kc), "KCB": str(unsigned_bits(kc)), "AF": str(a_frac), "AINT": str(a_int), "SW": str(sw),
        "AW": str(aw), "AI_S": uconst(a_int, sw), "AI_W": uconst(a_int, aw), "YDEPTH": str(ydepth), "AAW": str(yaw),
        "KVW": str(unsigned_bits(M)), "KVDEPTH": str(kvdepth), "KVAW": str(unsigned_bits(kvdepth - 1)),
        "CW": str(unsigned_bits(max(H, N, M, DK, DV) + 1)), "BB": str(bb),
        "A_AW": str(g.aaw), "B_AW": str(g.baw),
    }
    mult, shift = int(q.mult), int(q.shift)
    post = Range.of(0, ymax * mult)
    out = Range.of(rounding_shift(0, shift, "floor"), rounding_shift(ymax * mult, shift, "floor"))
    gathered = 3 * 2 + 3  # per-source switch, pipeline drain
    model = {"pairs": float(H * N * M), "rows": float(H * (N + M)), "kc": float(kc), "gather": float(gathered),
             "order": float(order), "complement": float(1 if a_int else 0), "dk": float(DK), "h": float(H)}
    path = AttnPath(
        index=i, weighted=wname, nodes=list(sp.nodes), gather=g, order=op.order, dims=dims, lanes=lanes, kc=kc,
        aw=aw, aaw=yaw, params=params,
        iter_rom=Memory(f"l{k}_p{i}_iter.hex", lb + yaw, words(entries)), iter_aw=unsigned_bits(n_lif - 1), lb=lb,
        mult=mult, shift=shift, post_bits=post.bits + 1, cycles_model=model)
    return path, out, Range(0, 0), 0, "none"


# -- stochastic attention ----------------------------------------------------------------------------


def sc_divider(mx: int, norm: int, cmax: int) -> dict[str, int]:
    """Constants of `npuc_sc_decode` for ``min(floor(c mx / norm + 1/2), mx)`` over ``c = 0..cmax``.

    ``floor((2 c mx + norm) / (2 norm)) = ((c * 2 mx m + norm m) >> k)`` with
    ``m = ceil(2^k / (2 norm))``: the smallest ``k`` for which the identity holds for every
    ``c`` (checked exhaustively here; the caller never sees an unchecked constant).

    Returns:
        ``{"k", "ma", "mb", "ww"}`` (``ww``: work width holding ``cmax ma + mb``).
    """
    if norm < 1 or cmax < 0 or mx < 1:
        raise RtlSupportError(f"stochastic attention divider: bad operands mx={mx}, norm={norm}, cmax={cmax}")
    c = np.arange(cmax + 1, dtype=object)
    want = [(2 * int(x) * mx + norm) // (2 * norm) for x in c]
    for k in range(0, 160):
        m = -(-(1 << k) // (2 * norm))
        ma, mb = 2 * mx * m, norm * m
        if all(((int(x) * ma + mb) >> k) == w for x, w in zip(c, want)):
            return {"k": k, "ma": ma, "mb": mb, "ww": unsigned_bits(cmax * ma + mb) + 1}
    raise RtlSupportError(f"stochastic attention divider: no exact multiply-shift for norm {norm}")  # unreachable


def sc_unit(graph: Graph, name: str, k: int, pops: dict, evlists: dict[str, EventList], ev: EventList | None,
            gident: str) -> Unit:
    """`npuc_sc_attn` for a StochasticAttention node (stage ``k``)."""
    op: StochasticAttention = graph[name].op
    ins = unit_inputs(graph, name)
    _binary_inputs(f"stochastic attention '{name}'", ins, pops)
    shapes, dims = _qkv_dims(graph, name)
    H, N, M, DK, DV = (dims[x] for x in ("H", "N", "M", "DK", "DV"))
    nqk, nav = op.norms(DK, M)
    mx = (1 << op.bits) - 1
    d1, d2 = sc_divider(mx, nqk, DK), sc_divider(mx, nav, M)
    n = H * N * DV
    g = gather(graph, f"stochastic attention '{name}'", ins, shapes, _qk_layouts(dims), (H * N, H * M),
               (DK, DK + DV), 1, pops, evlists, f"u{k}_gather.hex")
    b = op.bits
    params = {
        "H": str(H), "N": str(N), "M": str(M), "DK": str(DK), "DV": str(DV), "BITS": str(b),
        "TAPS1": uconst(lfsr.primitive_taps(b, 0), b), "SEED1": uconst(op.seed, b),
        "TAPS2": uconst(lfsr.primitive_taps(b, 1), b), "SEED2": uconst(op.seed2, b),
        "C1W": str(unsigned_bits(DK)), "D1W": str(d1["ww"]), "D1K": str(d1["k"]), "D1MA": uconst(d1["ma"], d1["ww"]),
        "D1MB": uconst(d1["mb"], d1["ww"]),
        "C2W": str(unsigned_bits(M)), "D2W": str(d2["ww"]), "D2K": str(d2["k"]), "D2MA": uconst(d2["ma"], d2["ww"]),
        "D2MB": uconst(d2["mb"], d2["ww"]),
        "CW": str(unsigned_bits(max(H, N, M, DV) + 1)), "OIW": str(unsigned_bits(n - 1)), "OPW": "2",
        "A_AW": str(g.aaw), "B_AW": str(g.baw),
    }
    uid = f"u{k}_{ident(name)}"
    return Unit(index=k, node=name, ident=uid, module=f"npuc_{gident}_{uid}"[:60], kind="sc", core="npuc_sc_attn",
                n=n, shape=tuple(graph[name].shape), gather=g, params=params, ow=2, naw=unsigned_bits(n - 1), ev=ev,
                memories=[], spike="binary", dims=dims, lanes=1)


# -- linear attention / SSM ----------------------------------------------------------------------------


def _decay_range(r: Range, mults: Range, shift: int, rounding: str) -> tuple[Range, Range]:
    """(result, product) ranges of ``R(x * m / 2^shift)`` for x in ``r`` and m in ``mults``."""
    prod = r * mults
    return Range(rounding_shift(prod.lo, shift, rounding), rounding_shift(prod.hi, shift, rounding)), prod


def _linear_numbers(graph: Graph, name: str, pops: dict, prof) -> dict:
    """Exact ranges and widths of a LinearAttention unit (independent of lanes and event lists)."""
    op: LinearAttention = graph[name].op
    q = op.q
    if q is None:
        raise RtlSupportError(f"linear attention '{name}' has no integer parameters: run the quantize pass")
    ins = unit_inputs(graph, name)
    node = graph[name]
    shapes = [tuple(graph[r.node].shapes[graph[r.node].port(r)]) for r in node.inputs]
    qs, _, vs = shapes
    H, DK, DV = int(np.prod(qs[:-1], dtype=np.int64)), qs[-1], vs[-1]
    state_shape = (*vs, DK)
    da = np.asarray(q.da, dtype=np.int64)
    md = prof.decay_unity - (da.reshape(-1, 1) if da.ndim == 1 else da)
    try:
        md = np.broadcast_to(md, state_shape).reshape(H, DV, DK)
    except ValueError:
        raise RtlSupportError(f"linear attention '{name}': decay shape {da.shape} does not fit the state "
                              f"{state_shape}") from None
    payload = [pops[u.source].payload for u in ins]
    q_r, k_r, v_r = payload
    b_int = int(q.b_int)
    outer = Range(b_int, b_int) * v_r * k_r
    md_r = Range(int(md.min()), int(md.max()))
    rounding, db = prof.decay_rounding, prof.decay_bits
    log = WidthLog()
    vb, vmode = (prof.v_bits, prof.v_overflow) if prof.v_bits and prof.v_overflow != "none" else (0, "none")

    def update(s: Range) -> Range:
        dec, prod = _decay_range(s, md_r, db, rounding)
        s0 = dec + outer
        out = overflow(s0, vb, vmode)
        log.see(s, prod, dec, s0, out, outer, Range(b_int, b_int) * v_r)
        return out

    try:
        s_r = fixpoint(Range(0, 0), update, f"linear attention '{name}': the state S")
    except UnboundedError as e:
        raise RtlSupportError(f"{e} (v_overflow='{prof.v_overflow}' and a decay of 1 leave it unbounded): "
                              "use a profile with v_bits and an overflow rule") from None
    terms = s_r * q_r
    y_r = Range(DK * min(terms.lo, 0), DK * max(terms.hi, 0))
    mult, shift = int(q.mult), int(q.shift)
    yp = y_r * Range(mult, mult)
    yo = Range(rounding_shift(yp.lo, shift, "floor"), rounding_shift(yp.hi, shift, "floor"))
    log.see(terms, y_r, yp, yo, md_r, Range(mult, mult), Range(b_int, b_int))
    if vb:
        log.see_bits(vb + 2)
    return {"ins": ins, "shapes": shapes, "dims": {"H": H, "DK": DK, "DV": DV}, "md": md, "md_r": md_r,
            "s_r": s_r, "yo": yo, "w": log.bits + 2, "fw": max(2, max(r.bits for r in payload)), "vb": vb,
            "vmode": vmode, "b_int": b_int, "mult": mult, "shift": shift}


def linear_output_range(graph: Graph, name: str, pops: dict, prof) -> Range:
    """Range of a LinearAttention unit's output values (its population payload)."""
    return _linear_numbers(graph, name, pops, prof)["yo"]


def linear_unit(graph: Graph, name: str, k: int, pops: dict, evlists: dict[str, EventList], ev: EventList | None,
                prof, lanes: int, gident: str) -> Unit:
    """`npuc_linattn` for a LinearAttention node (stage ``k``)."""
    x = _linear_numbers(graph, name, pops, prof)
    dims = x["dims"]
    H, DK, DV = dims["H"], dims["DK"], dims["DV"]
    kc = -(-DK // lanes)
    md, md_r, fw = x["md"], x["md_r"], x["fw"]
    swd = max(2, x["s_r"].bits)
    ow = max(2, x["yo"].bits)
    n = H * DV
    sdepth = H * DV * kc
    db = prof.decay_bits
    mdw = max(2, md_r.bits, db + 2 - swd)  # npuc_vdecay forms the product at swd + mdw > db bits
    w = max(x["w"], swd + fw + 1, 2 * fw + 1, swd + mdw + 1)  # the lane products are sign-extended to w
    g = gather(graph, f"linear attention '{name}'", x["ins"], x["shapes"], [
        lambda p: (np.zeros_like(p), *np.unravel_index(p, (H, DK))),
        lambda p: (np.ones_like(p), *np.unravel_index(p, (H, DK))),
        lambda p: (np.ones_like(p), p // DV, DK + p % DV),
    ], (H, H), (DK, DK + DV), fw, pops, evlists, f"u{k}_gather.hex")
    mems = []
    dmode = 0 if md_r.lo == md_r.hi else 1
    if dmode:
        padded = np.zeros((H, DV, kc * lanes), dtype=np.int64)
        padded[:, :, :DK] = md
        rows = padded.reshape(H * DV * kc, lanes)
        mems.append(Memory(f"u{k}_decay.hex", lanes * mdw, rows))  # lane matrix
    vb, vmode = x["vb"], x["vmode"]
    mode = (vb, OVF_MODES[vmode]) if vb else (2, 0)
    params = {
        "H": str(H), "DK": str(DK), "DV": str(DV), "L": str(lanes), "KC": str(kc), "KCB": str(unsigned_bits(kc)),
        "FW": str(fw), "W": str(w), "SWD": str(swd), "SDEPTH": str(sdepth), "SAW": str(unsigned_bits(sdepth - 1)),
        "DB": str(prof.decay_bits), "ROUND": str(ROUNDING[prof.decay_rounding]), "V_BITS": str(mode[0]),
        "V_MODE": str(mode[1]), "DMODE": str(dmode), "MDW": str(mdw), "MD": vconst(md_r.lo, w),
        "DROM_FILE": f'"{mems[0].path}"' if mems else '""', "B_INT": vconst(x["b_int"], w),
        "MULT": vconst(x["mult"], w), "SHIFT": str(x["shift"]), "CW": str(unsigned_bits(max(H, DV) + 1)),
        "OIW": str(unsigned_bits(n - 1)), "OPW": str(ow),
        "A_AW": str(g.aaw), "B_AW": str(g.baw),
    }
    uid = f"u{k}_{ident(name)}"
    return Unit(index=k, node=name, ident=uid, module=f"npuc_{gident}_{uid}"[:60], kind="linear",
                core="npuc_linattn", n=n, shape=tuple(graph[name].shape), gather=g, params=params, ow=ow,
                naw=unsigned_bits(n - 1), ev=ev, memories=mems, spike="graded", dims=dims, lanes=lanes)


__all__ = ["attn_path", "sc_unit", "linear_unit", "linear_output_range", "sc_divider", "unit_inputs",
           "walk_input", "UNIT_OPS", "ATTENTION_MODULES", "SC_MODULES", "LINEAR_MODULES"]

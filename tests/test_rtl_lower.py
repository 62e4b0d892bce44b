"""RTL lowering without a simulator: width analysis, lookup tables and clear errors.

The interval analysis that sizes every register is checked against brute
force over the golden engine's own functions; the bernoulli threshold table
and the multi-level division constants are checked exhaustively; graphs the
hardware cannot implement must raise `RtlSupportError` naming the node.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.backends.rtl import RtlSupportError, emit
from npuc.backends.rtl.bounds import (
    Range,
    UnboundedError,
    decay,
    fixpoint,
    overflow,
    signed_bits,
    unsigned_bits,
)
from npuc.backends.rtl.lower import _bernoulli_table, ident, lower, vconst
from npuc.ir import QLIF, Encoding, Graph, QInput, QScale, QSynapse, ops
from npuc.sim import int_kernels
from npuc.targets import load_target

FPGA = load_target("fpga")
MODES = ["none", "wrap", "wrap_sym", "saturate", "saturate_sym"]


@settings(max_examples=200, deadline=None)
@given(st.integers(-300, 300), st.integers(0, 300), st.integers(3, 7), st.sampled_from(MODES))
def test_overflow_range_is_sound_and_tight(lo, span, bits, mode):
    r = Range(lo, lo + span)
    x = torch.arange(r.lo, r.hi + 1, dtype=torch.int64)
    y = int_kernels.overflow(x, bits, mode)
    out = overflow(r, bits, mode)
    assert out.lo <= int(y.min()) and int(y.max()) <= out.hi
    if mode != "wrap" or r.within(Range(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)):
        assert (out.lo, out.hi) == (int(y.min()), int(y.max()))


@settings(max_examples=200, deadline=None)
@given(st.integers(-2000, 2000), st.integers(0, 500), st.integers(-300, 300), st.integers(1, 9),
       st.sampled_from(["trunc0", "floor", "round_half_up"]))
def test_decay_range_matches_engine(lo, span, mult, bits, rounding):
    prof = dataclasses.replace(FPGA.profile, decay_bits=bits, decay_rounding=rounding)
    x = torch.arange(lo, lo + span + 1, dtype=torch.int64)
    y = int_kernels.decay(x, mult, prof)
    out, prod = decay(Range(lo, lo + span), mult, bits, rounding)
    assert (out.lo, out.hi) == (int(y.min()), int(y.max()))
    assert prod.lo <= int((x * mult).min()) and int((x * mult).max()) <= prod.hi


def test_bit_widths_and_literals():
    assert [signed_bits(v) for v in (0, 1, -1, 127, -128, 128)] == [1, 2, 1, 8, 8, 9]
    assert [unsigned_bits(v) for v in (0, 1, 2, 255, 256)] == [1, 1, 2, 8, 9]
    assert Range(-128, 127).bits == 8 and Range(0, 128).bits == 9
    assert vconst(-5, 12) == "-12'sd5" and vconst(7, 4) == "4'sd7"
    assert ident("reg.x-1:a") == "reg_x_1_a" and ident("...") == "n"


def test_fixpoint_bounds_leaky_state_and_rejects_runaway():
    # a leaky integrator: |v| <= (|x| + 1) * D / (D - m) settles on a finite range
    r = fixpoint(Range(0, 0), lambda v: decay(v, 4000, 12, "floor")[0] + Range(-50, 50), "v")
    assert r.lo < -1000 and r.hi > 1000 and r.bits < 20
    with pytest.raises(UnboundedError, match="v"):
        fixpoint(Range(0, 0), lambda v: v + Range(0, 1), "v")


@pytest.mark.parametrize("scale,bits,vth", [(1 / 64, 8, 100), (0.02, 6, 0), (1 / 300, 10, -50)])
def test_bernoulli_threshold_table_is_exact(scale, bits, vth):
    lif = ops.LIF(spike="bernoulli", bits=bits, q=QLIF(du=4096, dv=0, vth=vth, bias_mant=np.array(0), scale=scale))
    h = Range(-3000, 3000)
    table, rng = _bernoulli_table("n", lif, h, vth)
    d = torch.arange(h.lo - vth, h.hi - vth + 1, dtype=torch.int64)
    m = float((1 << bits) - 1)
    pq = torch.floor(torch.sigmoid(d.to(torch.float64) * scale) * m + 0.5).to(torch.int64).numpy()
    r = np.arange(1, 1 << bits)[:, None]
    fire_engine = r <= pq[None]
    fire_rtl = d.numpy()[None] >= np.asarray(table)[1:, None]
    assert np.array_equal(fire_engine, fire_rtl)
    assert rng.lo <= min(table) and max(table) <= rng.hi


def _one_layer(lif: ops.LIF, prof=None) -> Graph:
    g = Graph("one", num_steps=4)
    g.add("x", ops.Input((3,), encoding=Encoding("current"), q=QInput(0, 8)))
    g.add("fc", ops.Dense(np.zeros((2, 3), np.float32), q=QSynapse(np.ones((2, 3), np.int64))), ["x"])
    g.add("n", lif, ["fc"])
    g.add("o", ops.Output(), ["n"])
    g.profile = prof or FPGA.profile
    return g.verify()


@pytest.mark.parametrize("vth", [3, 7, 100, 1000, 4095])
def test_multilevel_division_is_exact(vth):
    lif = ops.LIF(threshold=1.0, compare="ge", spike="multilevel", q=QLIF(du=4096, dv=0, vth=vth, bias_mant=np.array(0)))
    layer = lower(_one_layer(lif), FPGA).layers[0]
    m = int(layer.lif["DIV_M"].split("'sd")[1])
    k = int(layer.lif["DIV_K"])
    h = np.arange(0, 2 ** (FPGA.profile.v_bits - 1), dtype=object)
    assert all((hh * m) >> k == hh // vth for hh in h)


def _path_graph(pre, post=(), weighted=None, shape=(2, 4, 4)) -> Graph:
    g = Graph("p", num_steps=3)
    g.add("x", ops.Input(shape, encoding=Encoding("rate")))
    prev = "x"
    for name, op in pre:
        prev = g.add(name, op, [prev])
    n_in = int(np.prod(g[prev].shape))
    w = weighted or ops.Dense(np.zeros((3, n_in), np.float32), q=QSynapse(np.ones((3, n_in), np.int64)))
    prev = g.add("w", w, [prev])
    for name, op in post:
        prev = g.add(name, op, [prev])
    g.add("n", ops.LIF(q=QLIF(du=4096, dv=0, vth=5, bias_mant=np.array(0))), [prev])
    g.add("o", ops.Output(), ["n"])
    g.profile = FPGA.profile
    return g.verify()


def test_unsupported_structures_name_the_node(tmp_path):
    from npuc.ir import Reshape

    flat = ("flat", Reshape((-1,)))
    cases = [
        (_path_graph([("avg", ops.AvgPool2d(2, q=QScale(np.array(1), 2))), flat]), "avg"),
        (_path_graph([flat], post=[("scale", ops.Scale(np.float32(0.5), q=QScale(np.array(1), 1)))]), "scale"),
        (_path_graph([("p1", ops.SumPool2d(2)), ("p2", ops.MaxPool2d(1)), flat]), "two pooling ops"),
    ]
    for g, what in cases:
        with pytest.raises(RtlSupportError, match=what):
            emit(g, tmp_path / "x", FPGA)
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_unsupported_numerics_name_the_node(tmp_path):
    # weights outside the profile's range
    g = _one_layer(ops.LIF(q=QLIF(du=4096, dv=0, vth=5, bias_mant=np.array(0))))
    g["fc"].op = ops.Dense(np.zeros((2, 3), np.float32), q=QSynapse(np.full((2, 3), 300)))
    with pytest.raises(RtlSupportError, match="'fc'.*outside"):
        lower(g, FPGA)
    # a non-leaky current without any overflow rule grows without bound
    prof = dataclasses.replace(FPGA.profile, u_overflow="none", arith_bits=0)
    g = _one_layer(ops.LIF(q=QLIF(du=0, dv=0, vth=5, bias_mant=np.array(0))), prof)
    with pytest.raises(RtlSupportError, match="neuron 'n'.*current state u"):
        lower(g, FPGA)
    # Loihi's weight scheme is not the FPGA's
    g.profile = load_target("loihi2").profile
    with pytest.raises(RtlSupportError, match="weight_scheme"):
        lower(g, FPGA)


def test_outputs_and_delays_that_have_no_hardware(tmp_path):
    g = Graph("bad", num_steps=3)
    g.add("x", ops.Input((3,), encoding=Encoding("rate")))
    g.add("fc", ops.Dense(np.zeros((2, 3), np.float32), q=QSynapse(np.ones((2, 3), np.int64))), ["x"])
    g.add("n", ops.LIF(q=QLIF(du=4096, dv=0, vth=5, bias_mant=np.array(0))), ["fc"])
    g.add("o", ops.Output(), ["fc"])
    g.profile = FPGA.profile
    with pytest.raises(RtlSupportError, match="output 'o' reads 'fc'"):
        lower(g.verify(), FPGA)
    h = Graph("late", num_steps=3)
    h.add("x", ops.Input((3,), encoding=Encoding("rate")))
    h.add("fc", ops.Dense(np.zeros((2, 3), np.float32), q=QSynapse(np.ones((2, 3), np.int64))), [("x", None, 1)])
    h.add("fc2", ops.Dense(np.zeros((2, 3), np.float32), q=QSynapse(np.ones((2, 3), np.int64))), ["x"])
    h.add("sum", ops.Add(), ["fc", "fc2"])
    h.add("n", ops.LIF(q=QLIF(du=4096, dv=0, vth=5, bias_mant=np.array(0))), [("sum", None, 1)])
    h.add("o", ops.Output(), ["n"])
    h.profile = FPGA.profile
    with pytest.raises(RtlSupportError, match="delay 2"):
        lower(h.verify(), FPGA)


def test_conv_decode_covers_every_tap():
    """The decode ROM lists exactly the (tap, output) pairs of the convolution, for awkward strides."""
    conv = ops.Conv2d(np.zeros((2, 1, 3, 4), np.float32), stride=(2, 3), padding=(1, 2), dilation=(2, 1),
                      q=QSynapse(np.ones((2, 1, 3, 4), np.int64)))
    g = Graph("c", num_steps=2)
    g.add("x", ops.Input((1, 9, 11), encoding=Encoding("rate")))
    g.add("w", conv, ["x"])
    g.add("n", ops.LIF(q=QLIF(du=4096, dv=0, vth=5, bias_mant=np.array(0))), ["w"])
    g.add("o", ops.Output(), ["n"])
    g.profile = FPGA.profile
    path = lower(g.verify(), FPGA).layers[0].paths[0]
    c = path.conv
    widths = [c["GB"], c["CIB"], c["KB"], c["OB"], c["NB"], c["KB"], c["OB"], c["NB"]]
    oh, ow = g["w"].shape[1:]
    for e, word in enumerate(path.decode.words):
        fields = []
        for wd in widths:
            fields.append(int(word) & ((1 << wd) - 1))
            word = int(word) >> wd
        _, _, u0, i0, nu, v0, j0, nv = fields
        y, x = divmod(e, 11)
        got = {(u0 + a * c["USTEP"], i0 - a * c["ISTEP"], v0 + b * c["VSTEP"], j0 - b * c["JSTEP"])
               for a in range(nu) for b in range(nv)}
        want = {(u, (y + 1 - 2 * u) // 2, v, (x + 2 - v) // 3) for u in range(3) for v in range(4)
                if (y + 1 - 2 * u) % 2 == 0 and 0 <= (y + 1 - 2 * u) // 2 < oh
                and (x + 2 - v) % 3 == 0 and 0 <= (x + 2 - v) // 3 < ow}
        assert got == want, (e, got, want)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["binary", "ternary", "multilevel"]), st.sampled_from(["gt", "ge"]),
       st.integers(-200, 50), st.integers(0, 300), st.integers(1, 60), st.integers(-80, 40),
       st.sampled_from([None, 2, 4]))
def test_same_step_subtract_range_is_sound(spike, compare_, lo, span, vth, vth_lo, levels):
    """The piecewise range of v = h - amount(s) contains every value the engine can produce."""
    from npuc.backends.rtl.lower import _subtract_range

    if spike == "multilevel":
        compare_ = "ge"
    vth_lo = min(vth_lo, vth - 1)
    lif = ops.LIF(threshold=1.0, threshold_lo=-1.0 if spike == "ternary" else None, compare=compare_, spike=spike,
                  levels=levels if spike == "multilevel" else None)
    h = torch.arange(lo, lo + span + 1, dtype=torch.int64)[None]
    st_ = {"vth": vth, "vth_lo": vth_lo}
    s = int_kernels.LIFInt()._fire(lif, h, st_, 0)
    v = h - int_kernels.LIFInt()._amount(lif, s, st_)
    amt = Range.of(0, vth, vth_lo) if spike == "ternary" else Range(0, vth * (16 if spike == "multilevel" else 1))
    r = _subtract_range(lif, Range(lo, lo + span), vth, vth_lo, amt)
    assert r.lo <= int(v.min()) and int(v.max()) <= r.hi


@pytest.mark.parametrize("lanes,lw", [(1, 1), (1, 7), (3, 5), (4, 8), (8, 9), (2, 40)])
def test_memory_hex_image_equals_per_word_packing(lanes, lw):
    """The numpy image writer (lane matrices, chunked) against packing each word by hand."""
    from npuc.backends.rtl.model import hex_image

    rng = np.random.default_rng(lanes * 100 + lw)
    vals = rng.integers(-(1 << (lw - 1)) if lw > 1 else 0, 1 << (lw - 1) if lw > 1 else 2, size=(37, lanes))
    width, digits = lanes * lw, -(-lanes * lw // 4)
    expect = "".join(f"{sum((int(v) & ((1 << lw) - 1)) << (j * lw) for j, v in enumerate(row)):0{digits}x}\n"
                     for row in vals)
    assert hex_image(vals, width, chunk=5) == expect
    assert hex_image(np.array([int(v) for v in vals[:, 0]], dtype=object), lw) == _expect_1d(vals[:, 0], lw)


def _expect_1d(col, lw):
    return "".join(f"{int(v) & ((1 << lw) - 1):0{max(1, -(-lw // 4))}x}\n" for v in col)


def test_static_blocks_stand_alone_with_their_port_groups_inlined():
    """The shared port groups (``npuc_*.vh``) are inlined into every artifact file that uses them:
    no artifact needs an include path, and each group is used by the blocks it names."""
    from importlib import resources

    from npuc.backends.rtl.lower import STATIC_MODULES
    from npuc.backends.rtl.lower_attention import ATTENTION_MODULES, LINEAR_MODULES, SC_MODULES
    from npuc.backends.rtl.render import static_source

    root = resources.files("npuc.hdl")
    headers = {p.name: p.read_text() for p in root.iterdir() if p.name.endswith(".vh")}
    assert {"npuc_stage_ports.vh", "npuc_acc_ports.vh", "npuc_unit_rows.vh", "npuc_unit_io.vh"} <= set(headers)
    used = set()
    for name in sorted(set(STATIC_MODULES + ATTENTION_MODULES + SC_MODULES + LINEAR_MODULES)):
        raw, text = root.joinpath(name).read_text(), static_source(name)
        assert "`include" not in text, name
        for h in headers:
            if f'`include "{h}"' in raw:
                used.add(h)
                ports = [ln for ln in headers[h].splitlines() if ln.strip().startswith(("input", "output"))]
                assert ports and all(ln in text.splitlines() for ln in ports), (name, h)
    assert used == set(headers)  # no orphan port group

"""The fused integer neuron kernel (`npuc.sim.int_fused`) against the torch steps it replaces
and the Python-int reference: every spike kind it covers, the reset modes and timings, both
compares, both charges, per-neuron decays, ``v_min``, roundings and register rules, from inside
to far beyond the registers (values and overflow counters); one step per call inside a
recurrent loop; the fallbacks; where the compiled code is cached."""

import copy
import dataclasses
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import lif_int
from test_sim_fast import PROFILES, both_paths, lif_graph, recurrent_loop

from npuc.ir import LIF, QLIF, Dense, Encoding, Graph, Input, Output, QInput, QSynapse
from npuc.sim import int_fused, int_kernels, simulate


@pytest.fixture
def fused_calls(monkeypatch):
    """The number of `int_fused.Population.run` calls made (to show the fused kernel ran)."""
    calls = []
    orig = int_fused.Population.run
    monkeypatch.setattr(int_fused.Population, "run", lambda self, *a: calls.append(a[1]) or orig(self, *a))
    return calls


def random_neuron(rng, prof, spike, reset, timing, compare, charge, per_neuron, n):
    """A LIF the integer engine accepts, with random integer parameters (decays per neuron or not)."""
    D = prof.decay_unity
    big = 2 ** (prof.v_bits - 1)
    vth = int(rng.integers(1, max(2, big // 4 >> prof.vth_shift)))
    if spike == "multilevel" and rng.random() < 0.5:
        vth = 1 << int(rng.integers(0, max(1, (big // 8 >> prof.vth_shift).bit_length())))  # shifts, not divisions
    du = rng.integers(0, D, n) if per_neuron else int(rng.integers(0, D))
    dv = rng.integers(0, D, n) if per_neuron else int(rng.integers(0, D))
    q = QLIF(du=du, dv=dv, vth=vth, bias_mant=rng.integers(-50, 50, n), bias_exp=int(rng.integers(0, 3)),
             reset_value=int(rng.integers(-20, 20)), v_init=int(rng.integers(-10, 10)),
             vth_lo=-vth if spike == "ternary" else None,
             v_min=rng.integers(-big // 2, 0, n) if rng.random() < 0.3 else None)
    if charge == "previous":  # the alpha neuron's resets: none, or a value reset of the charge
        reset, timing = ("value", "delayed_charge") if reset == "value" else ("none", timing)
    return LIF(spike=spike, reset=reset, reset_timing=timing, compare="ge" if spike == "multilevel" else compare,
               charge=charge, alpha_i=0.5 if charge == "previous" else None,
               threshold_lo=-1.0 if spike == "ternary" else None, levels=[None, 4][int(rng.integers(0, 2))] if spike == "multilevel" else None, q=q)


def reference(op, prof, a):
    """`reference.lif_int`, neuron by neuron when the decays differ per neuron (it takes scalars)."""
    if isinstance(op.q.du, int) and isinstance(op.q.dv, int):
        return lif_int(op, prof, a)
    def sub(v, k):  # neuron k's value of a per-neuron array
        return v if v is None or np.ndim(v) == 0 else np.asarray(v).reshape(-1)[k:k + 1]

    parts = []
    for k in range(a.shape[2]):
        q = dataclasses.replace(op.q, du=int(sub(op.q.du, k)[0]) if np.ndim(op.q.du) else op.q.du,
                                dv=int(sub(op.q.dv, k)[0]) if np.ndim(op.q.dv) else op.q.dv,
                                bias_mant=sub(op.q.bias_mant, k), v_min=sub(op.q.v_min, k))
        parts.append(lif_int(dataclasses.replace(op, q=q), prof, a[:, :, k:k + 1]))
    return {p: np.concatenate([r[p] for r in parts], axis=2) for p in parts[0]}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PROFILES), st.sampled_from(["binary", "ternary", "multilevel"]),
       st.sampled_from(["subtract", "value", "none"]), st.sampled_from(["same", "delayed", "delayed_charge"]),
       st.sampled_from(["gt", "ge"]), st.sampled_from(["current", "previous"]), st.booleans(),
       st.sampled_from([0.01, 0.3, 1.0, 3.0]), st.integers(0, 100_000), st.booleans())
def test_fused_equals_reference_torch_step_and_plain_step(prof, spike, reset, timing, compare, charge, per_neuron,
                                                          drive, seed, spikes_only):
    """Values equal the Python-int reference; values and every overflow counter equal the in-place
    torch step's and the plain step's (`both_paths`): overflow found and resolved exactly where
    they find it. With only the spikes read (no v or u rows), binary neurons without delayed resets
    or ``v_min`` take the kernel's shorter checking pass (``P_SIMPLE``)."""
    rng = np.random.default_rng(seed)
    T, B, n = 12, 3, 5
    op = random_neuron(rng, prof, spike, reset, timing, compare, charge, per_neuron, n)
    scale = max(1, int(drive * 2 ** (prof.v_bits - 1)) >> prof.act_shift)
    a = rng.integers(-scale, scale + 1, (T, B, n)) * (rng.random((T, B, n)) < 0.6)
    ports = ("spikes",) if spikes_only else ("spikes", "v", "i")
    g = lif_graph(op, n, T, prof, ports)
    want = reference(op, prof, a)
    with pytest.MonkeyPatch.context() as mp:
        calls = []
        orig = int_fused.Population.run
        mp.setattr(int_fused.Population, "run", lambda self, *args: calls.append(1) or orig(self, *args))
        fused, plain = both_paths(g, a.astype(np.float64), mp)
    assert calls == [1]  # one call for all steps (the torch and plain runs never call it)
    assert len(fused.outputs) == len(ports)
    for got, port in zip(fused.outputs, ports):
        assert np.array_equal(got, want[port]), port
    assert fused.stats == plain.stats


@pytest.mark.parametrize("prof", PROFILES)
@pytest.mark.parametrize("reset", ["subtract", "value", "none"])
def test_simple_checking_pass_spikes_and_counters(prof, reset):
    """The shorter checking pass (`int_fused._simple_check`: binary, same-step or no reset, no
    ``v_min``, only spikes read), leaky and IF neurons driven from inside to far beyond the
    registers: spikes equal the Python-int reference, counters the plain step's."""
    rng = np.random.default_rng(len(reset) + prof.v_bits)
    T, B, n = 16, 3, 300  # more than a block of 256 neurons
    for dv in (0, 300):  # no leak (v kept whole), a leak
        q = QLIF(du=prof.decay_unity - prof.du_offset, dv=dv, vth=int(rng.integers(5, 40)),
                 bias_mant=rng.integers(-20, 20, n), bias_exp=1, reset_value=3, v_init=0)
        op = LIF(reset=reset, reset_timing="same", q=q)
        assert int_fused.params(op, prof, (n,))[0][int_fused.P_SIMPLE]
        for drive in (0.01, 1.0, 4.0):
            scale = max(1, int(drive * 2 ** (prof.v_bits - 1)) >> prof.act_shift)
            a = rng.integers(-scale, scale + 1, (T, B, n)) * (rng.random((T, B, n)) < 0.6)
            g = lif_graph(op, n, T, prof, ("spikes",))
            with pytest.MonkeyPatch.context() as mp:
                fused, plain = both_paths(g, a.astype(np.float64), mp)
            assert np.array_equal(fused.outputs[0], lif_int(op, prof, a)["spikes"])
            assert fused.stats == plain.stats


def test_fused_counts_every_overflow_the_plain_step_counts(fused_calls):
    """Loihi 2 registers (u wrapping once, v saturating) driven past their limits: the fused
    kernel's exact pass runs, and its counters are the plain step's."""
    prof = PROFILES[0]
    D = prof.decay_unity
    q = QLIF(du=D - 1 - prof.du_offset, dv=0 - prof.dv_offset, vth=2**16 - 1, bias_mant=np.zeros(1))
    op = LIF(reset="none", q=q)
    T = 40
    a = np.full((T, 2, 3), 2**15, dtype=np.int64)
    a[T // 2:, 0] = -(2**15)
    a[5, 1, 0] = 2**17 + 5  # u = 2^23 + 320 + the decayed rest: past the 24-bit u register
    g = lif_graph(op, 3, T, prof)
    want = lif_int(op, prof, a)
    with pytest.MonkeyPatch.context() as mp:
        fused, plain = both_paths(g, a.astype(np.float64), mp)
    assert fused_calls
    for got, port in zip(fused.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port
    assert fused.stats == plain.stats
    assert {"u_overflow", "v_overflow"} <= set(fused.stats["n"])


def test_fused_step_by_step_inside_a_recurrent_loop(fused_calls, monkeypatch):
    """A neuron fed back through a delayed Dense runs one fused step per call, with its state kept
    between calls: equal to the torch and plain steps, counters included, also overflowing."""
    prof = PROFILES[2]  # 10-bit wrapping registers
    rng = np.random.default_rng(7)
    T, B, n_in, n = 9, 4, 6, 5
    for drive in (1, 300):
        W, R = rng.integers(-40, 40, (n, n_in)) * drive, rng.integers(-40, 40, (n, n)) * drive
        op = LIF(reset="subtract", reset_timing="delayed",
                 q=QLIF(du=100, dv=300, vth=30, bias_mant=np.zeros(n, dtype=np.int64)))
        g, x, spikes = recurrent_loop(op, prof, W, R, T, B, rng, ("spikes", "v"))
        fused_calls.clear()
        fused, plain = both_paths(g, x, monkeypatch)
        assert fused_calls == list(range(T))  # one call per step, at steps 0 .. T-1
        assert np.array_equal(fused.outputs[0], spikes)
        assert fused.stats == plain.stats
        if drive > 1:
            assert fused.stats  # the registers overflowed


def test_bernoulli_neurons_keep_the_torch_step(fused_calls):
    """Spikes drawn from the LFSR stream are not fused: the torch step runs."""
    prof = PROFILES[1]
    q = QLIF(du=0, dv=100, vth=20, bias_mant=np.zeros(1), scale=0.05)
    g = lif_graph(LIF(spike="bernoulli", bits=8, q=q), 4, 6, prof, ("spikes",))
    a = np.random.default_rng(0).integers(-40, 40, (6, 2, 4)).astype(np.float64)
    assert int_fused.params(g["n"].op, prof, (4,)) is None
    simulate(g, a, "int")
    assert fused_calls == []


def test_fused_off_restores_the_torch_steps(fused_calls, monkeypatch):
    prof = PROFILES[1]
    g = lif_graph(LIF(q=QLIF(du=10, dv=100, vth=20, bias_mant=np.zeros(1))), 4, 6, prof, ("spikes",))
    a = np.random.default_rng(1).integers(-40, 40, (6, 2, 4)).astype(np.float64)
    monkeypatch.setattr(int_kernels, "FUSED", False)
    simulate(g, a, "int")
    assert fused_calls == []


def test_cache_directory_for_a_read_only_install(tmp_path, monkeypatch):
    """The compiled kernels are cached beside the module when its __pycache__ is writable, in
    NUMBA_CACHE_DIR when set, else in the first writable per-user directory."""
    pkg = str(tmp_path / "site-packages" / "npuc" / "sim")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert int_fused._cache_dir(pkg) is None  # writable: numba's own place (the __pycache__)
    read_only = lambda path: not path.startswith(str(tmp_path / "site-packages"))  # noqa: E731
    assert int_fused._cache_dir(pkg, read_only) == os.path.join(str(tmp_path / "home"), ".cache", "npuc", "numba")
    only_tmp = lambda path: "npuc-numba-" in path  # noqa: E731  (no home directory either)
    assert os.path.basename(int_fused._cache_dir(pkg, only_tmp)).startswith("npuc-numba-")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "given"))
    assert int_fused._cache_dir(pkg, read_only) is None  # numba reads the variable itself


@pytest.mark.parametrize("n,batch", [(300, 4), (5, 120)], ids=["blocks-split-a-sample", "blocks-of-many-samples"])
def test_fused_blocks_over_and_across_samples(n, batch):
    """A layer wider than a block (blocks of 256 and 44 neurons per sample) and one of 5 neurons
    (blocks of 51 samples, the last one partial), with per-neuron decays and biases: each neuron
    keeps its own parameters, equal to the reference and the torch steps."""
    prof = PROFILES[0]
    rng = np.random.default_rng(n)
    T = 6
    op = random_neuron(rng, prof, "binary", "subtract", "same", "gt", "current", True, n)
    scale = op.q.vth << prof.vth_shift >> prof.act_shift  # about one threshold per input
    a = rng.integers(-scale, 2 * scale, (T, batch, n)) * (rng.random((T, batch, n)) < 0.6)
    g = lif_graph(op, n, T, prof)
    want = reference(op, prof, a)
    with pytest.MonkeyPatch.context() as mp:
        fused, plain = both_paths(g, a.astype(np.float64), mp)
    for got, port in zip(fused.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port
    assert fused.stats == plain.stats
    assert 0 < want["spikes"].mean() < 1


@pytest.mark.parametrize("decoding", ["sequence", "last", "sum", "mean", "max"])
def test_reused_state_equals_fresh_across_batch_sizes_and_keeps_earlier_results(fused_calls, decoding):
    """The fused state and rows of a layer are reused by the next run of the same size: runs of
    batch 3, 5 and 3 again (and one split into chunks of 2) each equal a fresh engine's result on
    the same samples, and an earlier result is not changed by later runs (rows that leave a run,
    as the output or as its last step's view, are never reused; an output's sum, mean or maximum
    over the steps is a new array)."""
    prof = PROFILES[1]
    rng = np.random.default_rng(3)
    n_in, n, T = 6, 7, 8
    W = rng.integers(-30, 30, (n, n_in))
    g = Graph("reuse", num_steps=T)
    g.add("x", Input((n_in,), layout="TB", encoding=Encoding("spikes"), q=QInput(0, 8)))
    g.add("d", Dense(W.astype(np.float32), q=QSynapse(W, 0)), ["x"])
    g.add("h", LIF(q=QLIF(du=200, dv=600, vth=25, bias_mant=np.zeros(n, dtype=np.int64))), ["d"])
    W2 = rng.integers(-30, 30, (3, n))
    g.add("d2", Dense(W2.astype(np.float32), q=QSynapse(W2, 0)), ["h"])
    g.add("o", LIF(reset="value", q=QLIF(du=100, dv=300, vth=20, bias_mant=np.zeros(3, dtype=np.int64))), ["d2"])
    g.add("out", Output(decoding=decoding, layout="TB" if decoding == "sequence" else "B"), [("o", "v")])
    g.profile = prof
    g.verify()
    xs = {b: (rng.random((T, b, n_in)) < 0.5).astype(np.float32) for b in (3, 5)}
    fresh = {}
    for b, x in xs.items():  # a new graph object each time: nothing to reuse
        fresh[b] = simulate(copy.deepcopy(g), x, "int")
    first = simulate(g, xs[3], "int")
    kept = first.output.copy()
    for b in (5, 3, 5):
        again = simulate(g, xs[b], "int")
        assert np.array_equal(again.output, fresh[b].output) and again.stats == fresh[b].stats
    assert np.array_equal(first.output, kept)  # the first result was not overwritten
    assert np.array_equal(simulate(g, xs[5], "int", chunk=2).output, fresh[5].output)
    assert fused_calls


@pytest.mark.parametrize("scale", [1, 2**25], ids=["int32", "beyond-int32"])
def test_large_layers_take_the_torch_int32_step_only_where_proven(scale, monkeypatch, fused_calls):
    """A fused layer of `_TORCH_MIN` values or more (here lowered, with `_NARROW_MIN`) runs the torch step instead
    where its input bounds prove int32 state (`LIFInt._adopt_torch`): inside a recurrent loop and
    for multi-level spikes outside loops. With weights that drive v beyond int32 (48-bit
    registers), no int32 proof holds and the fused kernel keeps running; both equal the Python-int
    reference (spikes, and v where it reaches past 2^31)."""
    monkeypatch.setattr(int_kernels, "_TORCH_MIN", 1)
    monkeypatch.setattr(int_kernels, "_NARROW_MIN", 1)
    adopted = []
    orig = int_kernels.LIFInt._adopt_torch
    monkeypatch.setattr(int_kernels.LIFInt, "_adopt_torch",
                        lambda self, *a: adopted.append(orig(self, *a)) or adopted[-1])
    prof = dataclasses.replace(PROFILES[1], u_bits=48, v_bits=48)
    rng = np.random.default_rng(5)
    T, B, n_in, n = 8, 3, 6, 5
    W, R = rng.integers(-40, 40, (n, n_in)) * scale, rng.integers(-40, 40, (n, n)) * scale
    op = LIF(reset="subtract", q=QLIF(du=300, dv=900, vth=30 * scale, bias_mant=np.zeros(n, dtype=np.int64)))
    g, x, spikes = recurrent_loop(op, prof, W, R, T, B, rng)
    got = simulate(g, x, "int")
    assert np.array_equal(got.outputs[0], spikes)
    assert adopted == [scale == 1]
    assert (fused_calls == []) == (scale == 1)  # one fused call per step where not adopted

    adopted.clear()
    fused_calls.clear()
    op = LIF(spike="multilevel", levels=None, compare="ge", reset="subtract",
             q=QLIF(du=300, dv=900, vth=30 * scale, bias_mant=np.zeros(n, dtype=np.int64)))
    g = lif_graph(op, n, T, prof)
    a = rng.integers(-40, 60, (T, B, n)) * scale
    got = simulate(g, a.astype(np.float64), "int")
    want = lif_int(op, prof, a)
    for out, port in zip(got.outputs, ("spikes", "v", "i")):
        assert np.array_equal(out, want[port]), port
    assert adopted == [scale == 1] and (fused_calls == []) == (scale == 1)
    if scale > 1:
        assert np.abs(want["v"]).max() >= 2**31  # int32 state would have been wrong


def test_a_slow_first_compile_says_so(monkeypatch):
    """The first call of a compiled variant in a process that takes longer than NOTICE_AFTER_S
    (numba compiling) prints one line; later calls of the same variant print nothing. The kernel
    call is held until the notice fires, standing in for a cold compile."""
    import threading

    fired, notices = threading.Event(), []
    monkeypatch.setattr(int_fused, "_notify", lambda m: notices.append(m) or fired.set())
    monkeypatch.setattr(int_fused, "NOTICE_AFTER_S", 0.01)
    monkeypatch.setattr(int_fused, "_seen", set())
    kernel = int_fused.lif_steps
    monkeypatch.setattr(int_fused, "lif_steps", lambda *a: fired.wait(30) and kernel(*a))
    prof = PROFILES[0]
    op = random_neuron(np.random.default_rng(0), prof, "binary", "subtract", "same", "gt", "current", False, 4)
    g = lif_graph(op, 4, 3, prof, ports=("spikes",))
    a = np.ones((3, 2, 4), dtype=np.int64)
    first = simulate(g, a, "int").outputs[0]
    assert len(notices) == 1 and "compiling the fused neuron kernel for int64 inputs" in notices[0]
    again = simulate(g, a, "int").outputs[0]  # the variant is known: no timer, no notice
    assert len(notices) == 1 and np.array_equal(first, again)

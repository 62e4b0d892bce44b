"""The golden engines' fast paths against the plain paths and the Python-int reference:
the in-place integer neuron step (values and overflow counters, also at the register bounds),
chunked simulation (API, memory-mapped inputs, CLI), and Lava's timing counters."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import lif_int

from npuc.cli import main
from npuc.errors import UserError
from npuc.ir import LIF, QLIF, Add, Dense, Encoding, Graph, Input, Output, QInput, QSynapse
from npuc.sim import int_kernels, simulate, simulate_chunks
from npuc.targets import load_target

LOIHI = load_target("loihi2").profile
FPGA = load_target("fpga").profile
PROFILES = [
    LOIHI,
    FPGA,
    dataclasses.replace(FPGA, decay_rounding="trunc0", u_overflow="wrap", v_overflow="wrap", u_bits=10, v_bits=10),
    dataclasses.replace(FPGA, decay_rounding="round_half_up", act_bits=8, act_overflow="saturate", act_shift=2,
                        vth_shift=2, du_offset=1),
    dataclasses.replace(FPGA, arith_bits=15, u_overflow="wrap_sym", v_overflow="saturate_sym"),
]


def lif_graph(op, n, steps, profile, ports=("spikes", "v", "i")):
    """Input -> LIF -> one Output per port (only the spikes: the step keeps no v / i rows)."""
    g = Graph("fast", num_steps=steps)
    g.add("x", Input((n,), layout="TB", encoding=Encoding("current"), q=QInput(0, 32)))
    g.add("n", op, ["x"])
    for k, port in enumerate(ports):
        g.add(f"o{k}", Output(index=k), [("n", port)])
    g.profile = profile
    return g.verify()


def both_paths(graph, a, monkeypatch, **kw):
    """The integer engine with the fused neuron kernel, with the in-place torch step, and with the
    plain step everywhere; asserts the first two agree (values and counters), returns the first
    and the last."""
    fused = simulate(graph, a, "int", **kw)
    monkeypatch.setattr(int_kernels, "FUSED", False)
    fast = simulate(graph, a, "int", **kw)
    monkeypatch.setattr(int_kernels, "FAST_PATHS", False)
    plain = simulate(graph, a, "int", **kw)
    monkeypatch.setattr(int_kernels, "FAST_PATHS", True)
    monkeypatch.setattr(int_kernels, "FUSED", True)
    assert all(np.array_equal(x, y) for x, y in zip(fused.outputs, fast.outputs))
    assert fused.stats == fast.stats
    return fused, plain


def random_lif(rng, prof, reset, timing, compare):
    big = 2 ** (prof.v_bits - 1)
    D = prof.decay_unity
    q = QLIF(du=int(rng.integers(0, D)), dv=int(rng.integers(0, D)), vth=int(rng.integers(1, big // 4 >> prof.vth_shift) or 1),
             bias_mant=rng.integers(-50, 50, 5), bias_exp=int(rng.integers(0, 3)), reset_value=int(rng.integers(-20, 20)),
             v_init=int(rng.integers(-10, 10)))
    return LIF(reset=reset, reset_timing=timing, compare=compare, q=q)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PROFILES), st.sampled_from(["subtract", "value", "none"]),
       st.sampled_from(["same", "delayed", "delayed_charge"]), st.sampled_from(["gt", "ge"]),
       st.sampled_from([0.01, 0.3, 1.0, 3.0]), st.booleans(), st.integers(0, 100_000))
def test_fast_step_equals_reference_and_plain_step(prof, reset, timing, compare, drive, spikes_only, seed):
    """Inputs from far inside to far beyond the registers: values equal the Python-int reference,
    and every overflow counter equals the plain step's (overflow detected exactly where it was)."""
    rng = np.random.default_rng(seed)
    op = random_lif(rng, prof, reset, timing, compare)
    T, B, n = 12, 3, 5
    scale = max(1, int(drive * 2 ** (prof.v_bits - 1)) >> prof.act_shift)
    a = rng.integers(-scale, scale + 1, (T, B, n)) * (rng.random((T, B, n)) < 0.6)
    ports = ("spikes",) if spikes_only else ("spikes", "v", "i")
    g = lif_graph(op, n, T, prof, ports)
    want = lif_int(op, prof, a)
    with pytest.MonkeyPatch.context() as mp:
        fast, plain = both_paths(g, a.astype(np.float64), mp)
    for got, port in zip(fast.outputs, ports):
        assert np.array_equal(got, want[port]), port
    assert fast.stats == plain.stats


@pytest.mark.parametrize("prof", [LOIHI, PROFILES[2], PROFILES[4]], ids=["loihi2", "wrap10", "arith15"])
@pytest.mark.parametrize("timing", ["same", "delayed", "delayed_charge"])
@pytest.mark.parametrize("reset", ["subtract", "value"])
def test_fast_step_at_the_register_bounds(prof, timing, reset, monkeypatch):
    """Sums landing exactly on, one inside and one beyond each register limit (no decay, so the
    input sets the sum): the single range check must resolve exactly the values the plain step does."""
    D = prof.decay_unity
    q = QLIF(du=D - 1 - prof.du_offset, dv=0 - prof.dv_offset, vth=1, bias_mant=np.zeros(1), reset_value=3)
    op = LIF(reset=reset, reset_timing=timing, q=q)  # dv multiplier D: v keeps everything
    v_hi = 2 ** (prof.v_bits - 1) - 1
    unit = 1 << prof.act_shift
    steps = []
    for target in (v_hi - unit, v_hi, v_hi + unit, -v_hi - unit, -v_hi, -v_hi + unit):
        steps += [target // unit, 0, -(target // unit), 0]  # push to the bound, hold, come back
    a = np.array(steps, dtype=np.int64).reshape(-1, 1, 1)
    g = lif_graph(op, 1, len(steps), prof)
    want = lif_int(op, prof, a)
    fast, plain = both_paths(g, a.astype(np.float64), monkeypatch)
    for got, port in zip(fast.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port
    assert fast.stats == plain.stats


def dense_lif_graph(tmp_path):
    """A Dense -> LIF graph and its loihi2 build's quantized graph."""
    import npuc

    rng = np.random.default_rng(3)
    g = Graph("chunks", num_steps=7)
    g.add("x", Input((6,), layout="TB", encoding=Encoding("spikes")))
    g.add("fc", Dense(rng.normal(0, 1.0, (4, 6)).astype(np.float32)), ["x"])
    g.add("lif", LIF(alpha=0.9, reset="subtract"), ["fc"])
    g.add("o", Output(), ["lif"])
    g.add("ov", Output(index=1), [("lif", "v")])
    g = g.verify()
    hw = npuc.compile(g, (rng.random((7, 16, 6)) < 0.5).astype(np.float32), target="loihi2", out=tmp_path / "b")
    return g, hw


def test_chunked_simulation_equals_whole(tmp_path):
    g, hw = dense_lif_graph(tmp_path)
    q = hw.quantized("loihi2")
    x = (np.random.default_rng(1).random((7, 23, 6)) < 0.5).astype(np.float32)
    whole = simulate(q, x, "int")
    for chunk in (1, 5, 23, 100):
        part = simulate(q, x, "int", chunk=chunk)
        assert all(np.array_equal(a, b) for a, b in zip(part.outputs, whole.outputs))
        assert part.stats == whole.stats
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    got = [r.outputs[0] for _, _, r in simulate_chunks(q, mapped, "int", chunk=4)]
    assert np.array_equal(np.concatenate(got, axis=1), whole.outputs[0])
    assert np.array_equal(simulate(g, x, "float", chunk=23).outputs[0], simulate(g, x, "float").outputs[0])


def test_chunk_refuses_probe_and_bad_sizes(tmp_path):
    q = dense_lif_graph(tmp_path)[1].quantized("loihi2")
    x = np.zeros((7, 3, 6), dtype=np.float32)
    with pytest.raises(UserError, match="probe"):
        simulate(q, x, "int", probe=True, chunk=2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="chunk must be a positive"):
            simulate(q, x, "int", chunk=bad)


def test_cli_simulate_streams_in_chunks(tmp_path):
    _, hw = dense_lif_graph(tmp_path)
    q = hw.quantized("loihi2")
    x = (np.random.default_rng(2).random((7, 11, 6)) < 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for extra in ([], ["--chunk", "3"]):
        out = tmp_path / f"y{len(extra)}.npz"
        assert main(["simulate", str(hw.path), "--engine", "int", "--input", str(tmp_path / "x.npy"),
                     "--out", str(out), *extra]) == 0
        with np.load(out) as got:
            assert all(np.array_equal(got[k], v) for k, v in zip(("o", "ov"), simulate(q, x, "int").outputs))
    with pytest.raises(SystemExit):
        main(["simulate", str(hw.path), "--engine", "int", "--input", str(tmp_path / "x.npy"), "--chunk", "0"])


@pytest.mark.lava
def test_lava_reports_build_and_steady_state(tmp_path):
    """Several samples through one Lava build: bit-exact, with the steps run and the steady rate."""
    from npuc.backends import run_engine
    from npuc.builddir import BuildDir

    _, hw = dense_lif_graph(tmp_path)
    x = (np.random.default_rng(4).random((7, 3, 6)) < 0.5).astype(np.float32)
    res = run_engine(BuildDir(hw.path), "lava", [x])
    assert np.array_equal(res.outputs[0], simulate(hw.quantized("loihi2"), x, "int").outputs[0])
    lava = res.stats["lava"]
    assert lava["steps"] >= 3 * 7 and lava["steps_per_s"] > 0 and lava["build_us"] > 0


@pytest.mark.parametrize("prof", [LOIHI, PROFILES[2]], ids=["loihi2", "wrap10"])
@pytest.mark.parametrize("timing", ["same", "delayed"])
def test_fast_step_inside_a_recurrent_loop(prof, timing, tmp_path, monkeypatch):
    """A LIF fed back through a delayed Dense (stepped by the recurrent-group driver, inputs step
    by step, every check on): the fast step equals the plain step, overflow counters included,
    also with the state read out (v rows) and with strong drive."""
    import npuc

    rng = np.random.default_rng(5)
    g = Graph("rec", num_steps=9)
    g.add("x", Input((6,), layout="TB", encoding=Encoding("current")))
    g.add("fin", Dense(rng.normal(0, 2.0, (5, 6)).astype(np.float32)), ["x"])
    g.add("frec", Dense(rng.normal(0, 1.5, (5, 5)).astype(np.float32)), [("lif", "spikes", 1)])
    g.add("sum", Add(), ["fin", "frec"])
    g.add("lif", LIF(alpha=0.8, reset="subtract", reset_timing=timing), ["sum"])
    g.add("o", Output(), ["lif"])
    g.add("ov", Output(index=1), [("lif", "v")])
    g = g.verify()
    x = rng.normal(0, 1.0, (9, 4, 6)).astype(np.float32)
    spec = "loihi2" if prof is LOIHI else "fpga:state_bits=10"
    q = npuc.compile(g, x, target=spec, out=tmp_path / "b").quantized()
    for drive in (1.0, 50.0):  # 50x the calibration range: the registers overflow
        fast, plain = both_paths(q, x * drive, monkeypatch)
        assert all(np.array_equal(a, b) for a, b in zip(fast.outputs, plain.outputs))
        assert fast.stats == plain.stats


def narrowed(monkeypatch):
    """Let every LIF state take the int32 path (not only large ones); returns the nodes'
    int32 decisions as they are made (True: int32 state)."""
    taken = []
    orig = int_kernels.LIFInt._narrow

    def spy(self, op, st, *args):
        orig(self, op, st, *args)
        taken.append("s32" in st)

    monkeypatch.setattr(int_kernels, "_NARROW_MIN", 0)
    monkeypatch.setattr(int_kernels.LIFInt, "_narrow", spy)
    return taken


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PROFILES), st.sampled_from(["subtract", "value", "none"]),
       st.sampled_from(["same", "delayed", "delayed_charge"]), st.sampled_from(["binary", "multilevel"]),
       st.sampled_from([0.01, 0.3, 1.0, 3.0]), st.integers(0, 100_000))
def test_int32_step_equals_reference_and_int64_step(prof, reset, timing, spike, drive, seed):
    """The in-place step on int32 state (where `_narrow` proves it exact) and multi-level spikes
    on the in-place step: values equal the Python-int reference, counters equal the plain step's."""
    rng = np.random.default_rng(seed)
    op = random_lif(rng, prof, reset, timing, "gt")
    if spike == "multilevel":
        op = dataclasses.replace(op, spike="multilevel", compare="ge", levels=[None, 3][seed % 2])
    T, B, n = 12, 3, 5
    scale = max(1, int(drive * 2 ** (prof.v_bits - 1)) >> prof.act_shift)
    a = rng.integers(-scale, scale + 1, (T, B, n)) * (rng.random((T, B, n)) < 0.6)
    g = lif_graph(op, n, T, prof)
    want = lif_int(op, prof, a)
    with pytest.MonkeyPatch.context() as mp:
        narrowed(mp)
        fast, plain = both_paths(g, a.astype(np.float64), mp)
    for got, port in zip(fast.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port
    assert fast.stats == plain.stats


@pytest.mark.parametrize("spike", ["binary", "multilevel"])
def test_int32_step_still_resolves_overflow_where_the_bound_proof_fails(spike, monkeypatch):
    """Loihi 2, no decay, no reset: an input that drives v past its 24-bit register. The bound
    cannot prove the register idle (so its check stays on), but the register bounds every sum
    below 2^31 (so the state is int32): the check must fire, saturating exactly as the reference."""
    prof = LOIHI
    D = prof.decay_unity
    q = QLIF(du=D - 1 - prof.du_offset, dv=0 - prof.dv_offset, vth=2**16 - 1, bias_mant=np.zeros(1))
    op = LIF(reset="none", spike=spike, compare="ge" if spike == "multilevel" else "gt", q=q)
    T, B, n = 40, 2, 3
    a = np.full((T, B, n), 2**15, dtype=np.int64)  # 2^21 per step: past 2^23 after 4 steps
    a[T // 2:, 0] = -(2**15)  # one sample comes back down, through the negative limit
    g = lif_graph(op, n, T, prof)
    want = lif_int(op, prof, a)
    taken = narrowed(monkeypatch)
    fast, plain = both_paths(g, a.astype(np.float64), monkeypatch)
    assert taken[0] is True  # the int32 path ran
    for got, port in zip(fast.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port
    assert fast.stats == plain.stats and fast.stats["n"]["v_overflow"] > 0


def test_int32_state_refused_when_sums_can_leave_int32(monkeypatch):
    """48-bit registers and an input whose bound cannot be proven: sums can leave int32, so the
    state stays int64 (and v grows past 2^31 exactly as the reference says)."""
    prof = dataclasses.replace(FPGA, arith_bits=48, v_bits=48, u_bits=48, act_bits=32)
    D = prof.decay_unity
    q = QLIF(du=D - 1 - prof.du_offset, dv=0 - prof.dv_offset, vth=2**40, bias_mant=np.zeros(1))
    op = LIF(reset="none", q=q)
    a = np.full((40, 1, 2), 2**26, dtype=np.int64)  # v passes 2^31 after ~32 steps
    g = lif_graph(op, 2, 40, prof)
    taken = narrowed(monkeypatch)
    fast, plain = both_paths(g, a.astype(np.float64), monkeypatch)
    assert taken == [False]
    want = lif_int(op, prof, a)
    assert want["v"].max() > 2**31
    for got, port in zip(fast.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 2), ((2, 3), (1, 2)), (3, 3), (1, 1)])
def test_int_max_pool_on_strided_views_equals_max_pool2d(kernel, stride):
    """The integer max pool without padding (maxima of strided views, no float round trip) equals
    torch's max_pool2d on the same integers, including values beyond float32's exact range."""
    import torch
    import torch.nn.functional as F

    from npuc.ir import MaxPool2d

    rng = np.random.default_rng(7)
    for h, w in [(7, 9), (8, 8), (5, 6)]:
        x = torch.from_numpy(rng.integers(-(2**40), 2**40, (3, 2, h, w)))
        got = int_kernels.maxpool(MaxPool2d(kernel=kernel, stride=stride), [x], None)
        want = F.max_pool2d(x.to(torch.float64), kernel, stride).to(torch.int64)
        assert got.dtype == torch.int64 and torch.equal(got, want)


@pytest.mark.parametrize("prof", [LOIHI, FPGA])
@pytest.mark.parametrize("read_v", [False, True])
def test_chunked_mlp_views_float_handoffs_and_spike_ranges_equal_reference(prof, read_v, monkeypatch):
    """Input spikes -> Dense -> LIF -> Dense -> LIF, in two chunks: the chunks' strided input views
    (one batched product per chunk), the exact-float values between weighted sums and neurons and
    the float32 spike rows of a hidden layer only a weighted sum reads, the weighted sums bounded by
    the spikes' known range (no pass over them), the neurons' biases added to all steps' inputs at
    once and the int32 state equal the Python-int reference (outputs, and every node when probed,
    which keeps int64 values and the separate bias), and the plain step's counters."""
    from reference import dense_int

    from npuc.sim import engine

    rng = np.random.default_rng(3)
    T, B, n_in, n_hid, n_out = 4, 90, 24, 64, 6
    W1, b1 = rng.integers(-120, 120, (n_hid, n_in)), rng.integers(-40, 40, n_hid)
    W2 = rng.integers(-120, 120, (n_out, n_hid))
    unit = prof.decay_unity

    def lif(n, vth):  # u is the input alone (du = unity): the bias joins the shifted inputs
        return LIF(reset="subtract", reset_timing="delayed", q=QLIF(
            du=unit - prof.du_offset, dv=unit // 8 - prof.dv_offset, vth=vth, bias_mant=rng.integers(-30, 30, n)))

    g = Graph("mlp", num_steps=T)
    g.add("x", Input((n_in,), layout="TB", encoding=Encoding("spikes"), q=QInput(0, 8)))
    g.add("fc1", Dense(W1.astype(np.float32), q=QSynapse(W1, 0, b1)), ["x"])
    g.add("lif1", lif(n_hid, 300), ["fc1"])
    g.add("fc2", Dense(W2.astype(np.float32), q=QSynapse(W2, -1)), ["lif1"])
    g.add("lif2", lif(n_out, 200), ["fc2"])
    g.add("o", Output(), ["lif2"])
    if read_v:  # somebody else reads lif1: its spikes stay int64
        g.add("ov", Output(index=1), [("lif1", "v")])
    g.profile = prof
    g.verify()
    x = (rng.random((T, B, n_in)) < 0.4).astype(np.float32)
    a1 = dense_int(x.astype(np.int64), W1, 0, b1)
    r1 = lif_int(g["lif1"].op, prof, a1)
    a2 = dense_int(r1["spikes"], W2, -1)
    r2 = lif_int(g["lif2"].op, prof, a2)
    assert 0 < r1["spikes"].mean() < 1 and 0 < r2["spikes"].mean() < 1
    monkeypatch.setattr(engine, "_CHUNK_ELEMENTS", T * n_hid * 70)  # at most 70 per chunk: two of 45
    monkeypatch.setattr(int_kernels, "_NARROW_MIN", 1)
    ctx = engine.Context("int", prof, T, B, cache=engine._graph_cache(g, "int", prof))
    assert engine._strided_inputs(g, ctx, set()) == {"x"}
    assert engine._float_outputs(g, ctx, set()) == {"fc1", "fc2"} | (set() if read_v else {"lif1"})
    fast, plain = both_paths(g, x, monkeypatch)
    for res in (fast, plain):
        assert np.array_equal(res.outputs[0], r2["spikes"])
        assert not read_v or np.array_equal(res.outputs[1], r1["v"])
    assert fast.stats == plain.stats
    probes = simulate(g, x, "int", probe=True).probes
    for name, port, want in (("fc1", "out", a1), ("lif1", "spikes", r1["spikes"]), ("lif1", "v", r1["v"]),
                             ("fc2", "out", a2), ("lif2", "v", r2["v"])):
        assert probes[name][port].dtype == np.int64 and np.array_equal(probes[name][port], want), (name, port)


def recurrent_loop(op, prof, W, R, T, B, rng, ports=("spikes",)):
    """Input spikes -> Dense (W) -> Add <- Dense (R) <- the neuron ``op``'s spikes one step late,
    with an Output per port; its random input spikes, and the spikes the Python-int reference
    gives stepping the loop one step at a time."""
    from reference import dense_int

    n, n_in = W.shape
    g = Graph("loop", num_steps=T)
    g.add("x", Input((n_in,), layout="TB", encoding=Encoding("spikes"), q=QInput(0, 8)))
    g.add("fin", Dense(W.astype(np.float32), q=QSynapse(W, 0)), ["x"])
    g.add("frec", Dense(R.astype(np.float32), q=QSynapse(R, 0)), [("lif", "spikes", 1)])
    g.add("sum", Add(), ["fin", "frec"])
    g.add("lif", op, ["sum"])
    for k, port in enumerate(ports):
        g.add(f"o{k}", Output(index=k), [("lif", port)])
    g.profile = prof
    g.verify()
    x = (rng.random((T, B, n_in)) < 0.5).astype(np.float32)
    a_in = dense_int(x.astype(np.int64), W, 0)
    spikes = np.zeros((T, B, n), dtype=np.int64)
    for t in range(T):  # the loop's input at step t needs the spikes of step t - 1
        rec = dense_int(spikes[:t], R, 0) if t else np.zeros((0, B, n), dtype=np.int64)
        a = a_in[:t + 1] + np.concatenate([np.zeros((1, B, n), dtype=np.int64), rec])
        spikes[t] = lif_int(op, prof, a)["spikes"][t]
    return g, x, spikes


@pytest.mark.parametrize("prof", [LOIHI, PROFILES[2]], ids=["loihi2", "wrap10"])
@pytest.mark.parametrize("drive", [1, 400])
def test_recurrent_loop_on_proven_bounds_equals_reference(prof, drive, monkeypatch):
    """Input spikes -> Dense -> Add <- Dense <- the neuron's spikes one step late -> LIF: the loop's
    neuron takes its input's bounds from the two weighted sums (no input check, int32 state, exact
    floats through the Add, float32 spike rows into the recurrent Dense) and equals the Python-int
    reference, stepped one step at a time; with strong weights the u / v checks stay on and fire
    exactly where the plain step's do."""
    rng = np.random.default_rng(11)
    T, B, n_in, n = 10, 6, 8, 5
    W, R = rng.integers(-60, 60, (n, n_in)) * drive, rng.integers(-60, 60, (n, n)) * drive
    unit = prof.decay_unity
    op = LIF(reset="value", q=QLIF(du=unit // 4 - prof.du_offset, dv=unit // 2 - prof.dv_offset, vth=40,
                                   bias_mant=np.zeros(n, dtype=np.int64)))
    g, x, spikes = recurrent_loop(op, prof, W, R, T, B, rng)
    assert 0 < spikes.mean() < 1
    taken = narrowed(monkeypatch)
    known = []
    orig = int_kernels.LIFInt.prepare_range
    monkeypatch.setattr(int_kernels.LIFInt, "prepare_range",
                        lambda self, o, st, rng_, ctx: (orig(self, o, st, rng_, ctx), known.append("a_known" in st)))
    fast, plain = both_paths(g, x, monkeypatch)
    assert np.array_equal(fast.outputs[0], spikes) and np.array_equal(plain.outputs[0], spikes)
    assert fast.stats == plain.stats
    # the torch step's run (both_paths' second; the fused kernel needs no proofs): the proven path
    # ran, on int32 state
    assert known[1] is True and taken[0] is True
    if drive > 1 and prof is PROFILES[2]:
        assert fast.stats  # the 10-bit registers overflowed: the checks ran and counted


@pytest.mark.parametrize("prof", PROFILES[:3] + PROFILES[4:], ids=["loihi2", "fpga", "wrap10", "arith15"])
@pytest.mark.parametrize("reset", ["subtract", "value", "none"])
def test_stateless_neuron_on_all_steps_equals_reference(prof, reset):
    """A neuron whose u and v decay fully every step (the OR after a max pool's count) runs all
    steps at once: spikes, v and i equal the Python-int reference from inside to far beyond the
    registers, and its overflow counters the plain step's."""
    rng = np.random.default_rng(2)
    step = 2**prof.act_shift
    bias = rng.integers(-20, 20, 5) * step
    q = QLIF(du=prof.decay_unity - prof.du_offset, dv=prof.decay_unity - prof.dv_offset, vth=step,
             bias_mant=bias, reset_value=-4)
    op = LIF(reset=reset, q=q)
    T, B, n = 6, 4, 5
    scale = 2 ** (prof.v_bits + 1 - prof.act_shift)
    a = rng.integers(-scale, scale + 1, (T, B, n)) * (rng.random((T, B, n)) < 0.5)
    a[:3] //= 2 ** (prof.v_bits - 2)  # the first steps within the registers
    vth = step << prof.vth_shift
    a[1, 0] = (vth - bias) // step  # exactly at the threshold (no spike: v > vth)
    a[1, 1] = (vth - bias) // step + 1
    g = lif_graph(op, n, T, prof)
    want = lif_int(op, prof, a)
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        orig = int_kernels.LIFInt._all_steps
        mp.setattr(int_kernels.LIFInt, "_all_steps", lambda *args: calls.append(1) or orig(*args))
        fast, plain = both_paths(g, a.astype(np.float64), mp)
    assert calls == [1]  # the fast run took the all-steps path (the plain one never does)
    for got, port in zip(fast.outputs, ("spikes", "v", "i")):
        assert np.array_equal(got, want[port]), port
    assert fast.stats == plain.stats and fast.stats


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 2), ((2, 3), (1, 2))])
@pytest.mark.parametrize("weight,exp", [(1, 0), (37, -2)])
def test_uniform_depthwise_conv_as_window_sums_equals_reference(kernel, stride, weight, exp):
    """A depthwise convolution whose weights are all equal (a max pool's count) is computed as
    sum pools: equal to window sums of the integers in numpy, shifted and biased."""
    from npuc.ir import Conv2d

    prof = load_target("loihi2").profile
    prof = dataclasses.replace(prof, conv_weight_exp=True)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    C, H, W = 3, 9, 8
    w = np.full((C, 1, kh, kw), weight, dtype=np.int64)
    bias = np.array([5, -7, 0])
    g = Graph("pool", num_steps=3)
    g.add("x", Input((C, H, W), layout="TB", encoding=Encoding("current"), q=QInput(0, 32)))
    g.add("c", Conv2d(w.astype(np.float32), stride=(sh, sw), groups=C,
                      q=QSynapse(w, exp, bias)), ["x"])
    g.add("o", Output(), ["c"])
    g.profile = prof
    g.verify()
    rng = np.random.default_rng(4)
    x = rng.integers(-300, 300, (3, 2, C, H, W))
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    want = np.zeros((3, 2, C, Ho, Wo), dtype=np.int64)
    for i in range(Ho):
        for j in range(Wo):
            want[..., i, j] = x[..., i * sh:i * sh + kh, j * sw:j * sw + kw].sum((-2, -1)) * weight
    want = (want << exp if exp >= 0 else want >> -exp) + bias[:, None, None]
    got = simulate(g, x.astype(np.float64), "int").outputs[0]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_spike_input_integrality_and_extremes(dtype):
    """The integrality check of float spike inputs (numpy's round and compare for large float32/64
    inputs, torch's for bfloat16 and small ones), block by block and on a strided batch chunk: the
    extremes of integer values, None for one fraction, a NaN, or a fraction in the last block."""
    import torch

    from npuc.sim.encoding import _integral

    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.integers(-3, 5, (7, 100, 33)).astype(np.float32)).to(getattr(torch, dtype))
    assert _integral(x, block=1 << 14) == (-3.0, 4.0)
    assert _integral(x[:, 2:6], block=1 << 14) == (float(x[:, 2:6].min()), float(x[:, 2:6].max()))
    for where, bad in (((0, 0, 0), 0.5), ((6, 99, 32), 2.25), ((3, 4, 5), float("nan"))):
        y = x.clone()
        y[where] = bad
        assert _integral(y, block=1 << 14) is None and _integral(y[:, where[1]:], block=1 << 14) is None
        assert _integral(y, block=64) is None


@pytest.mark.parametrize("prof", [LOIHI, FPGA])
@pytest.mark.parametrize("vth", [1, 16, 24])
def test_multilevel_spikes_with_a_power_of_two_threshold_equal_reference(prof, vth, monkeypatch):
    """Multi-level spikes (sinabs) divide v by the threshold with floor: a power-of-two threshold
    shifts instead (also on int32 state); negative and positive v equal the Python-int reference."""
    rng = np.random.default_rng(6)
    q = QLIF(du=prof.decay_unity - prof.du_offset, dv=0 - prof.dv_offset, vth=vth, bias_mant=np.zeros(4, dtype=np.int64))
    op = LIF(spike="multilevel", reset="subtract", compare="ge", levels=None, q=q)
    T, B, n = 8, 3, 4
    a = rng.integers(-40 * vth, 60 * vth, (T, B, n)) << prof.vth_shift >> prof.act_shift
    g = lif_graph(op, n, T, prof)
    want = lif_int(op, prof, a)
    assert want["spikes"].max() > 1 and want["v"].min() < 0
    for narrow in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            if narrow:
                narrowed(mp)
            fast, plain = both_paths(g, a.astype(np.float64), mp)
        for got, port in zip(fast.outputs, ("spikes", "v", "i")):
            assert np.array_equal(got, want[port]), port
        assert fast.stats == plain.stats


def test_batch_chunks_are_of_equal_size(monkeypatch):
    """A batch splits into chunks of (nearly) equal size: a small last chunk would pay the
    per-step overhead of a recurrent loop for a few samples."""
    from npuc.sim import engine

    g = lif_graph(LIF(q=QLIF(du=0, dv=0, vth=4, bias_mant=np.zeros(1))), 100, 10, LOIHI)
    monkeypatch.setattr(engine, "_CHUNK_ELEMENTS", 10 * 100 * 327)
    assert [engine._chunk_size(g, 10, b) for b in (1000, 327, 328, 1, 0)] == [250, 327, 164, 1, 1]

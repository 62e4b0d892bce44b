"""The integer engine running parts of a batch in several threads at once (`simulate(threads=...)`,
`npuc simulate --threads`): outputs, probes and overflow counters equal the one-thread run's on
the tutorial-written models (conv and max pool, multi-level spikes, a recurrent cell) and on a
graph that saturates its registers; the default follows torch's thread setting; errors from any
part reach the caller. And the fused neuron kernel in channels-last order (a convolution's
layout), against the plain order, the torch step and the Python-int reference."""

import dataclasses

import numpy as np
import pytest
import torch
from models import shd_models as shd
from models import zoo_models as zoo
from models import zoo_snntorch as zsn
from test_sim_fast import PROFILES, dense_lif_graph

import npuc
from npuc.cli import main
from npuc.errors import UserError
from npuc.frontends import trace
from npuc.ir import (
    LIF,
    QLIF,
    Conv2d,
    Dense,
    Encoding,
    Graph,
    Input,
    MaxPool2d,
    Output,
    QInput,
    QSynapse,
)
from npuc.sim import engine, int_fused, int_kernels, simulate
from npuc.sim.encoding import InputError


def _spikes(shape, p, seed):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


def _seeded(make):
    torch.manual_seed(0)
    return make()


# (name, model factory of the batch, input of (batch, seed)); batches not divisible by 3
MODELS = {
    "snntorch-csnn": (lambda b: zsn.spiking_csnn(small=True), lambda b, s: zsn.rate_images(b, seed=s, steps=5).numpy()),
    "spikingjelly-csnn": (lambda b: zoo.sj_csnn(), lambda b, s: np.random.default_rng(s).random((b, 1, 28, 28)).astype(np.float32)),
    "sinabs-speck": (lambda b: _seeded(lambda: zoo.SpeckNet(b, side=16)), lambda b, s: _spikes((b, 4, 2, 16, 16), 0.2, s)),
    "norse-recurrent": (lambda b: _seeded(lambda: shd.spiking(shd.NorseSHD(hidden=24))),
                        lambda b, s: _spikes((12, b, shd.SHD_INPUTS), 0.05, s)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_threads_equal_one_thread_on_tutorial_models(name, tmp_path):
    make, data = MODELS[name]
    x_cal = data(8, 0)
    g = trace(make(8), x_cal)
    for target in ("loihi2", "fpga"):
        q = npuc.compile(g, x_cal, target=target, out=tmp_path / target).quantized(target)
        x = data(37, 1)
        one = simulate(q, x, "int", threads=1, probe=True)
        assert one.threads == 1
        for n in (2, 3):
            many = simulate(q, x, "int", threads=n, probe=True)
            assert many.threads == n
            assert all(np.array_equal(a, b) for a, b in zip(many.outputs, one.outputs)), (target, n)
            assert many.stats == one.stats
            assert one.probes.keys() == many.probes.keys()
            for node, ports in one.probes.items():
                for port, v in ports.items():
                    assert np.array_equal(many.probes[node][port], v), (target, n, node, port)


def saturating_graph():
    """Dense -> LIF with narrow registers and large weights: inputs saturate, u and v wrap."""
    prof = PROFILES[2]  # wrapping 10-bit u and v
    rng = np.random.default_rng(5)
    W = rng.integers(-200, 200, (9, 6))
    g = Graph("saturating", num_steps=11)
    g.add("x", Input((6,), layout="TB", encoding=Encoding("spikes"), q=QInput(0, 8)))
    g.add("d", Dense(W.astype(np.float32), q=QSynapse(W, 0)), ["x"])
    g.add("n", LIF(q=QLIF(du=100, dv=50, vth=300, bias_mant=rng.integers(-20, 20, 9))), ["d"])
    g.add("o", Output(), ["n"])
    g.add("ov", Output(index=1), [("n", "v")])
    g.profile = prof
    return g.verify()


def test_counters_add_up_over_threads():
    g = saturating_graph()
    x = _spikes((11, 41, 6), 0.6, 2)
    one = simulate(g, x, "int", threads=1)
    assert one.stats and sum(sum(c.values()) for c in one.stats.values()) > 0  # the check can fail
    for n in (2, 4, 41, 100):  # more threads than samples: one sample each
        many = simulate(g, x, "int", threads=n)
        assert many.threads == min(n, 41)
        assert many.stats == one.stats
        assert all(np.array_equal(a, b) for a, b in zip(many.outputs, one.outputs))


def test_default_follows_torch_threads(tmp_path, monkeypatch):
    q = dense_lif_graph(tmp_path)[1].quantized("loihi2")
    x = _spikes((7, 64, 6), 0.5, 3)
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert simulate(q, x, "int").threads == 1
        torch.set_num_threads(2)
        assert simulate(q, x, "int").threads == 2
        assert simulate(q, x[:, :20], "int").threads == 1  # fewer than 2 x MIN_THREAD_SAMPLES samples
        assert simulate(q, x, "float").threads == 1  # the float engine keeps the user's batch
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert simulate(q, x, "int").threads == 1  # one usable core


def test_bad_threads_and_errors_of_a_later_part(tmp_path):
    q = dense_lif_graph(tmp_path)[1].quantized("loihi2")
    x = _spikes((7, 40, 6), 0.5, 4)
    for bad in (0, -2, 1.5, True):
        for eng in ("int", "float"):
            with pytest.raises(UserError, match="threads must be a positive"):
                simulate(q, x, eng, threads=bad)
    x[3, 33, 2] = 0.5  # not a spike, in the last of 4 parts
    with pytest.raises(InputError, match="input 'x': a 'spikes' input must hold integer"):
        simulate(q, x, "int", threads=4)


def test_cli_simulate_threads(tmp_path, capsys):
    _, hw = dense_lif_graph(tmp_path)
    q = hw.quantized("loihi2")
    x = _spikes((7, 45, 6), 0.5, 5)
    np.save(tmp_path / "x.npy", x)
    want = simulate(q, x, "int", threads=1)
    out = tmp_path / "y.npz"
    assert main(["simulate", str(hw.path), "--engine", "int", "--input", str(tmp_path / "x.npy"),
                 "--threads", "3", "--out", str(out)]) == 0
    assert "on 3 threads" in capsys.readouterr().err
    got = np.load(out)
    assert all(np.array_equal(got[k], v) for k, v in zip(got.files, want.outputs))
    with pytest.raises(SystemExit):
        main(["simulate", str(hw.path), "--engine", "int", "--input", str(tmp_path / "x.npy"), "--threads", "0"])


# -- channels-last neuron order ----------------------------------------------------------------


def conv_lif_graph(rng, pool: bool, prof):
    """spikes -> Conv2d (int8 weights) -> [MaxPool2d ->] LIF with per-neuron decays, bias and a
    value reset: the constants the fused kernel must reorder with its neurons."""
    c_in, c, side = 3, 5, 8
    W = rng.integers(-60, 60, (c, c_in, 3, 3))
    g = Graph("nhwc", num_steps=6)
    g.add("x", Input((c_in, side, side), layout="TB", encoding=Encoding("spikes"), q=QInput(0, 8)))
    g.add("conv", Conv2d(W.astype(np.float32), padding=(1, 1), q=QSynapse(W, 0)), ["x"])
    shape = (c, side // 2, side // 2) if pool else (c, side, side)
    if pool:
        g.add("pool", MaxPool2d(2), ["conv"])
    D = prof.decay_unity
    q = QLIF(du=rng.integers(0, D, shape), dv=rng.integers(0, D, shape), vth=int(rng.integers(40, 120)),
             bias_mant=rng.integers(-30, 30, shape), reset_value=int(rng.integers(-10, 10)))
    g.add("lif", LIF(reset="value", q=q), ["pool" if pool else "conv"])
    g.add("o", Output(), ["lif"])
    g.profile = prof
    return g.verify()


@pytest.mark.parametrize("pool", [False, True], ids=["conv-lif", "conv-pool-lif"])
def test_channels_last_neurons_equal_plain_order(pool, monkeypatch):
    """A convolution's channels-last sums feed the fused neuron kernel without a copy; its spikes,
    v and i (probed), counters and outputs equal the plain order's, the torch step's and, for the
    neuron, the Python-int reference's (per-neuron decays and bias in channels-last order)."""
    from test_sim_fused import reference

    monkeypatch.setattr(int_kernels, "_INT8_MIN_MACS", 0)  # small products take oneDNN's int8 kernels too
    if not int_kernels._int8_works():
        pytest.skip("no oneDNN int8 kernels on this machine")
    seen = []
    orig = int_fused.Population.run
    monkeypatch.setattr(int_fused.Population, "run", lambda self, *a: (orig(self, *a), seen.append(self.nhwc))[0])
    for k, prof in enumerate(PROFILES[:3]):
        rng = np.random.default_rng(k)
        g = conv_lif_graph(rng, pool, prof)
        x = _spikes((6, 9, 3, 8, 8), 0.4, k)
        seen.clear()
        # (a probed convolution keeps int64 values: only the neuron is probed)
        runs = [simulate(g, x, "int", threads=1, probe=["lif"]), simulate(g, x, "int", threads=1)]  # reused state
        assert seen == [True, True]  # the fused kernel ran in channels-last order
        probed = runs[0].probes
        monkeypatch.setattr(int_kernels, "NHWC", False)
        plain = simulate(g, x, "int", threads=1, probe=True)
        monkeypatch.setattr(int_kernels, "FUSED", False)
        torch_step = simulate(g, x, "int", threads=1, probe=True)
        monkeypatch.setattr(int_kernels, "FUSED", True)
        monkeypatch.setattr(int_kernels, "NHWC", True)
        assert seen[2:] == [False]
        for other in (plain, torch_step):
            assert all(np.array_equal(r.output, other.output) for r in runs)
            assert runs[0].stats == other.stats
            for port in ("spikes", "v", "i"):
                assert np.array_equal(probed["lif"][port], other.probes["lif"][port]), port
        a = plain.probes["pool" if pool else "conv"]["out"].reshape(6, 9, -1)
        flat_op = dataclasses.replace(g["lif"].op, q=dataclasses.replace(
            g["lif"].op.q, du=g["lif"].op.q.du.reshape(-1), dv=g["lif"].op.q.dv.reshape(-1),
            bias_mant=g["lif"].op.q.bias_mant.reshape(-1)))
        want = reference(flat_op, prof, a)
        for port in ("spikes", "v", "i"):
            assert np.array_equal(probed["lif"][port].reshape(6, 9, -1), want[port]), port
        assert probed["lif"]["spikes"].any() and not probed["lif"]["spikes"].all()
        assert runs[0].output.flags.c_contiguous and probed["lif"]["v"].flags.c_contiguous

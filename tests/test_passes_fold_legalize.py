"""fold-batchnorm, fold-scale and legalize: invariants and preserved float semantics."""

import numpy as np
import pytest

from npuc.ir import Encoding, Graph, ops
from npuc.ir.analysis import neuron_paths
from npuc.passes import fold, legalize  # noqa: F401  (registers the passes)
from npuc.passes.base import PassContext, PassError, make_pass, run_pipeline
from npuc.sim import simulate
from npuc.targets import load_target

RNG = np.random.default_rng(11)


def agreement(g1, g2, x):
    a = simulate(g1, x, probe=True)
    b = simulate(g2, x, probe=True)
    out = [float(np.mean(p == q)) for p, q in zip(a.outputs, b.outputs)]
    return min(out)


def bn(c):
    return ops.BatchNorm(RNG.normal(0, 0.3, c), RNG.uniform(0.5, 2, c), RNG.uniform(0.5, 1.5, c), RNG.normal(0, 0.3, c))


def conv_net():
    g = Graph("conv", num_steps=6)
    g.add("x", ops.Input((2, 8, 8)))
    g.add("c1", ops.Conv2d(RNG.normal(0, 0.5, (4, 2, 3, 3)).astype("f4"), RNG.normal(0, 0.1, 4).astype("f4"), padding=1), ["x"])
    g.add("bn1", bn(4), ["c1"])
    g.add("l1", ops.LIF(alpha=0.8, reset="value"), ["bn1"])
    g.add("mp", ops.MaxPool2d(2), ["l1"])
    g.add("ap", ops.AvgPool2d(2), ["mp"])
    g.add("fl", ops.Reshape((-1,)), ["ap"])
    g.add("d", ops.Dense(RNG.normal(0, 1.0, (5, 16)).astype("f4")), ["fl"])
    g.add("sc", ops.Scale(np.float32(1.5)), ["d"])
    g.add("l2", ops.LIF(alpha=0.9, reset="value"), ["sc"])
    g.add("o", ops.Output(), ["l2"])
    return g.verify()


def test_fold_batchnorm_into_weights_and_neurons():
    g = conv_net()
    g.add("bn2", bn(5), ["d"])  # BN feeding only a neuron (d also feeds sc): folds into l3's threshold
    g.add("l3", ops.LIF(alpha=0.7), ["bn2"])
    g.add("o2", ops.Output(index=1), ["l3"])
    x = RNG.random((4, 2, 8, 8)).astype("f4")
    ctx = PassContext(target=load_target("fpga"))
    h = run_pipeline(g, [make_pass("fold-batchnorm")], ctx)
    assert not h.of_type(ops.BatchNorm)
    assert ctx.log[0]["into_weights"] == 1 and ctx.log[0]["into_neurons"] == 1
    assert h["l3"].op.threshold.shape == (5,)  # per-channel threshold after folding
    assert agreement(g, h, x) > 0.999  # exact in real arithmetic, float rounding may flip a tie


def test_fold_batchnorm_rejects_negative_scale_into_neuron():
    g = Graph("n", num_steps=2)
    g.add("x", ops.Input((3,)))
    g.add("b", ops.BatchNorm(np.zeros(3), np.ones(3), np.array([1.0, -1.0, 1.0]), np.zeros(3)), ["x"])
    g.add("l", ops.LIF(), ["b"])
    g.add("o", ops.Output(), ["l"])
    with pytest.raises(PassError, match="non-positive scale"):
        run_pipeline(g, [make_pass("fold-batchnorm")], PassContext())


def test_legalize_then_fold_scale_preserves_float_semantics():
    g = conv_net()
    x = RNG.random((4, 2, 8, 8)).astype("f4")
    for target in ("fpga", "loihi2"):
        ctx = PassContext(target=load_target(target))
        h = run_pipeline(g, [make_pass(n) for n in ("fold-batchnorm", "legalize")], ctx)
        assert not h.of_type(ops.AvgPool2d) and not h.of_type(ops.Scale)
        for lif in h.of_type(ops.LIF):
            for p in neuron_paths(h, lif.name):
                assert p.weighted is not None
        if target == "loihi2":
            assert not h.of_type(ops.MaxPool2d)
            assert any(n.name.startswith("mp.or") for n in h.of_type(ops.LIF))  # OR neuron for the spike max pool
        else:
            assert h.of_type(ops.MaxPool2d)
        assert agreement(g, h, x) > 0.999


def test_legalize_inserts_identity_and_duplicates_shared_synapses():
    g = Graph("id", num_steps=4)
    g.add("x", ops.Input((6,), Encoding("rate")))
    g.add("l0", ops.LIF(alpha=0.5, threshold=0.5), ["x"])  # input straight into a neuron
    g.add("d", ops.Dense(RNG.normal(0, 1, (6, 6)).astype("f4")), ["l0"])
    g.add("la", ops.LIF(), ["d"])  # d feeds two neurons
    g.add("lb", ops.LIF(threshold=2.0), ["d"])
    g.add("s", ops.Add(), ["la", "lb"])  # spikes added without synapses
    g.add("lc", ops.LIF(), ["s"])
    g.add("o", ops.Output(), ["lc"])
    ctx = PassContext(target=load_target("fpga"))
    h = run_pipeline(g.verify(), [make_pass("legalize")], ctx)
    assert ctx.log[0]["duplicated"] == 1 and ctx.log[0]["identity"] == 3
    for lif in h.of_type(ops.LIF):
        assert all(p.weighted for p in neuron_paths(h, lif.name))
    x = RNG.random((3, 6)).astype("f4")
    assert agreement(g, h, x) == 1.0


@pytest.mark.parametrize("shape, factor", [((5,), np.linspace(-0.5, 0.5, 5)), ((5,), 0.3),
                                           ((3, 4, 4), np.array([0.5, -0.25, 1.0]).reshape(3, 1, 1))])
def test_legalize_makes_a_recurrent_scale_a_diagonal_synapse(shape, factor):
    """snntorch RLeaky's one-to-one recurrence: spikes(t-1) * V added to the input."""
    g = Graph("v", num_steps=6)
    g.add("x", ops.Input(shape))
    g.add("rec", ops.Scale(np.asarray(factor, np.float32)), [("l", "spikes", 1)])
    g.add("s", ops.Add(), ["x", "rec"])
    g.add("l", ops.LIF(alpha=0.8, threshold=0.4, reset="value"), ["s"])
    g.add("o", ops.Output(), ["l"])
    for target in ("fpga", "loihi2"):
        ctx = PassContext(target=load_target(target))
        h = run_pipeline(g.verify(), [make_pass("legalize")], ctx)
        assert not h.of_type(ops.Scale) and ctx.log[0]["diagonal_scales"] == 1
        assert type(h["rec"].op) is (ops.Dense if len(shape) == 1 else ops.Conv2d)
        assert [p.delay for p in neuron_paths(h, "l")] == [0, 1]
        x = RNG.random((2, *shape)).astype("f4") * 2
        assert agreement(g, h, x) == 1.0


def _current_maxpool(reader: str = "lif") -> Graph:
    g = Graph("m", num_steps=2)
    g.add("x", ops.Input((1, 4, 4)))
    g.add("c", ops.Conv2d(np.ones((1, 1, 1, 1), "f4")), ["x"])
    g.add("p", ops.MaxPool2d(2), ["c"])
    if reader == "lif":
        g.add("l", ops.LIF(), ["p"])
    else:  # the pooled currents go on through another op before a neuron
        g.add("s", ops.Reshape((-1,)), ["p"])
        g.add("l", ops.LIF(), ["s"])
    g.add("o", ops.Output(), ["l"])
    return g


@pytest.mark.parametrize("target", ["fpga", "loihi2"])
def test_maxpool_of_conv_currents_is_kept(target):
    h = run_pipeline(_current_maxpool(), [make_pass("legalize")], PassContext(target=load_target(target)))
    assert isinstance(h["p"].op, ops.MaxPool2d) and h["l"].inputs[0].node == "p"


def test_maxpool_of_currents_errors():
    with pytest.raises(PassError, match="max pool 'p' pools currents.*stock processes"):
        run_pipeline(_current_maxpool(), [make_pass("legalize")],
                     PassContext(target=load_target("loihi2:stock_only=1")))
    with pytest.raises(PassError, match="max pool 'p' of the currents of 'c' must feed one neuron directly"):
        run_pipeline(_current_maxpool("reshape"), [make_pass("legalize")], PassContext(target=load_target("fpga")))


@pytest.mark.parametrize(
    "lif, message",
    [
        (ops.LIF(reset="subtract"), "subtract reset"),
        (ops.LIF(reset="value", reset_value=0.5), "reset to 0.5"),
        (ops.LIF(reset="value", v_min=-1.0), "lower membrane bound"),
        (ops.LIF(reset="value", reset_timing="delayed_charge"), "delayed_charge"),
        (ops.LIF(spike="multilevel", compare="ge"), "multilevel spikes"),
    ],
)
def test_loihi2_stock_only_neuron_features(lif, message):
    """With ``stock_only`` Loihi 2 has lava-nc's stock neurons only: other features are errors or
    (--allow-approx) approximations; by default npuc's custom process keeps them exactly."""
    g = Graph("f", num_steps=2)
    g.add("x", ops.Input((3,)))
    g.add("d", ops.Dense(np.eye(3, dtype="f4")), ["x"])
    g.add("l", lif, ["d"])
    g.add("o", ops.Output(), ["l"])
    stock = load_target("loihi2:stock_only=1")
    with pytest.raises(PassError, match=message):
        run_pipeline(g, [make_pass("legalize")], PassContext(target=stock))
    h = run_pipeline(g, [make_pass("legalize")], PassContext(target=load_target("loihi2")))
    assert h["l"].op.reset == lif.reset and h["l"].op.spike == lif.spike and h["l"].op.v_min is lif.v_min
    if lif.spike != "multilevel":
        ctx = PassContext(target=stock, allow_approx=True)
        h = run_pipeline(g, [make_pass("legalize")], ctx)
        assert h["l"].op.reset == "value" and h["l"].op.reset_value == 0
        assert ctx.warnings and "'l'" in ctx.warnings[0]


def test_delayed_zero_reset_becomes_same_step_with_identical_spikes():
    g = Graph("z", num_steps=12)
    g.add("x", ops.Input((5,)))
    g.add("d", ops.Dense(RNG.normal(0.5, 1, (5, 5)).astype("f4")), ["x"])
    g.add("l", ops.LIF(alpha=0.9, reset="value", reset_timing="delayed"), ["d"])
    g.add("o", ops.Output(), ["l"])
    h = run_pipeline(g, [make_pass("legalize")], PassContext(target=load_target("loihi2")))
    assert h["l"].op.reset_timing == "same"
    x = RNG.random((6, 5)).astype("f4")
    assert agreement(g, h, x) == 1.0
    assert simulate(g, x).output.sum() > 0


def test_sum_pool_kept_on_fpga():
    """The FPGA pools spikes by address remapping in front of the synapse engine."""
    g = Graph("s", num_steps=2)
    g.add("x", ops.Input((1, 4, 4), Encoding("rate")))
    g.add("p", ops.SumPool2d(2), ["x"])
    g.add("f", ops.Reshape((-1,)), ["p"])
    g.add("d", ops.Dense(np.ones((2, 4), "f4")), ["f"])
    g.add("l", ops.LIF(reset="value"), ["d"])
    g.add("o", ops.Output(), ["l"])
    h = run_pipeline(g, [make_pass("legalize")], PassContext(target=load_target("fpga")))
    (p,) = neuron_paths(h, "l")
    assert p.pre == ["p", "f"] and p.weighted == "d"


@pytest.mark.lava
def test_loihi2_folds_spike_pools_into_the_next_layer_exactly(tmp_path):
    """pool -> conv and pool -> flatten -> dense become single weighted layers; Lava agrees bit for bit."""
    import npuc

    rng = np.random.default_rng(8)
    g = Graph("poolnet", num_steps=5)
    g.add("x", ops.Input((2, 8, 8), Encoding("rate")))
    g.add("c1", ops.Conv2d(rng.normal(0, 0.8, (4, 2, 3, 3)).astype("f4"), padding=1), ["x"])
    g.add("l1", ops.LIF(alpha=0.8, threshold=1.0, reset="value"), ["c1"])
    g.add("p1", ops.AvgPool2d(2), ["l1"])
    g.add("c2", ops.Conv2d(rng.normal(0, 0.8, (6, 4, 3, 3)).astype("f4"), padding=1), ["p1"])
    g.add("l2", ops.LIF(alpha=0.8, threshold=1.0, reset="value"), ["c2"])
    g.add("p2", ops.SumPool2d(2), ["l2"])
    g.add("f", ops.Reshape((-1,)), ["p2"])
    g.add("d", ops.Dense(rng.normal(0, 0.5, (5, 24)).astype("f4")), ["f"])
    g.add("l3", ops.LIF(alpha=0.9, threshold=1.0, reset="value"), ["d"])
    g.add("o", ops.Output(), ["l3"])
    x = rng.random((6, 2, 8, 8)).astype("f4")
    ctx = PassContext(target=load_target("loihi2"))
    h = run_pipeline(g.verify(), [make_pass("legalize")], ctx)
    assert ctx.log[0]["pools_into_weights"] == 2 and not h.of_type(ops.SumPool2d, ops.AvgPool2d)
    assert h["c2"].op.weight.shape == (6, 4, 6, 6) and h["c2"].op.stride == (2, 2)
    assert h["d"].op.weight.shape == (5, 96)
    assert agreement(g, h, x) > 0.999
    hw = npuc.compile(g, x, target="loihi2", out=tmp_path / "b")
    result = hw.verify(x[:3], engine="lava")
    assert result.ok, result.format()


@pytest.mark.parametrize("k, pool, pad, groups", [(3, 2, 1, 1), (1, 2, 0, 2), (2, 3, 0, 1), (3, 3, 1, 2)])
def test_sum_pool_of_conv_currents_is_one_strided_conv(k, pool, pad, groups):
    from npuc.passes.legalize import Legalize

    rng = np.random.default_rng(k * 10 + pool)
    g = Graph("cp", num_steps=2)
    g.add("x", ops.Input((4, 9, 9)))
    g.add("c", ops.Conv2d(rng.normal(0, 1, (6, 4 // groups, k, k)).astype(np.float32),
                          rng.normal(0, 1, 6).astype(np.float32), padding=pad, groups=groups), ["x"])
    g.add("p", ops.SumPool2d(pool), ["c"])
    g.add("o", ops.Output(), ["p"])
    g.verify()
    h = g.copy()
    assert Legalize()._fold_current_pools(h) == 1
    h.verify()
    assert [type(n.op).__name__ for n in h] == ["Input", "Conv2d", "Output"]
    x = rng.normal(0, 1, (3, 4, 9, 9)).astype(np.float32)
    want, got = simulate(g, x).output, simulate(h, x).output
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

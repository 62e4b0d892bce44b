"""The integer engine's uint8 x int8 weighted sums (`int_kernels._int8_product`) against Python-int
and numpy references, on both sides of every condition that selects them: weights that fit int8
after dividing by their common power of two or not, inputs within [0, 127] or not, products above
and below the size threshold, sums below 2^24 or not; and the max-pool float hand-off."""

import numpy as np
import pytest
import torch
from reference import dense_int, lif_int

from npuc.ir import QLIF, Encoding, Graph, QInput, QSynapse, ops
from npuc.sim import int_kernels, simulate
from npuc.targets import load_target

FPGA = load_target("fpga").profile
LOIHI = load_target("loihi2").profile

# Only the tests that expect the int8 path to be taken need the kernels; the fallbacks (negative
# inputs, sums at 2^24, a failed self-test) and the input check run on every CPU.
needs_int8 = pytest.mark.skipif(not int_kernels._int8_works(), reason="no exact oneDNN int8 kernels on this CPU")


@pytest.fixture
def taken(monkeypatch):
    """Records, per call of `_int8_product`, whether it computed the product; any size qualifies."""
    calls: list[bool] = []
    real = int_kernels._int8_product

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(int_kernels, "_int8_product", spy)
    monkeypatch.setattr(int_kernels, "_INT8_MIN_MACS", 0)
    return calls


def _one(op, in_shape, steps, encoding="spikes", profile=FPGA):
    g = Graph("w", num_steps=steps)
    g.add("x", ops.Input(in_shape, layout="TB", encoding=Encoding(encoding), q=QInput(0, 32)))
    g.add("w", op, ["x"])
    g.add("o", ops.Output(), ["w"])
    g.profile = profile
    return g.verify()


def conv_ref(x: np.ndarray, w: np.ndarray, stride: int, pad: int, dil: int, groups: int) -> np.ndarray:
    """int64 cross-correlation by explicit windows; x [N, C, H, W], w [O, C/groups, k, k]."""
    n, c, h, wd = x.shape
    o, cg, k, _ = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (wd + 2 * pad - dil * (k - 1) - 1) // stride + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    per = o // groups
    for oc in range(o):
        g0 = (oc // per) * cg
        for i in range(ho):
            for j in range(wo):
                win = xp[:, g0:g0 + cg, i * stride:i * stride + dil * (k - 1) + 1:dil, j * stride:j * stride + dil * (k - 1) + 1:dil]
                out[:, oc, i, j] = (win * w[oc]).sum((1, 2, 3))
    return out


@needs_int8
@pytest.mark.parametrize("wlo,whi,even,xhi,expect", [
    (-128, 128, True, 1, True),     # Loihi 2's even 9-bit weights: divided by 2, int8
    (-128, 128, False, 1, True),    # int8 weights as they are
    (-64, 64, True, 127, True),     # multi-level inputs up to 127
    (-128, 128, False, 128, False),  # an input beyond 7 bits: float32
    (-200, 200, False, 1, False),   # odd weights beyond int8: float32
])
@pytest.mark.parametrize("encoding", ["current", "spikes"])  # int64 inputs; float spikes checked into uint8
def test_dense_int8_equals_python_ints(taken, wlo, whi, even, xhi, expect, encoding):
    rng = np.random.default_rng(3)
    W = rng.integers(wlo, whi, (24, 40)) * (2 if even else 1)
    W[0, 0] = (wlo if even else whi - 1)  # the extreme weight is present
    b = rng.integers(-300, 300, 24)
    x = rng.integers(0, xhi + 1, (3, 5, 40)) * (rng.random((3, 5, 40)) < 0.4)
    x[0, 0, 0] = xhi
    g = _one(ops.Dense(W.astype(np.float32), q=QSynapse(W, -2, b)), (40,), 3, encoding)
    got = simulate(g, x.astype(np.float32), "int").output
    assert np.array_equal(got, dense_int(x, W, -2, b))
    assert (got < 0).any()  # floor shifts of negative sums
    assert taken and all(t == expect for t in taken)


@pytest.mark.parametrize("encoding", ["current", "spikes"])
def test_negative_inputs_keep_float32(taken, encoding):
    rng = np.random.default_rng(4)
    W = rng.integers(-100, 100, (8, 16))
    x = rng.integers(-3, 4, (2, 3, 16))
    g = _one(ops.Dense(W.astype(np.float32), q=QSynapse(W, 0)), (16,), 2, encoding)
    assert np.array_equal(simulate(g, x.astype(np.float32), "int").output, dense_int(x, W, 0))
    assert taken == [False]


@needs_int8
@pytest.mark.parametrize("stride,pad,dil,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (1, 1, 1, 2)])
def test_conv_int8_equals_explicit_windows(taken, stride, pad, dil, groups):
    rng = np.random.default_rng(5)
    W = rng.integers(-127, 128, (6, 4 // groups, 3, 3)) * 2
    x = (rng.random((2, 3, 4, 9, 9)) < 0.3).astype(np.float32)
    op = ops.Conv2d(W.astype(np.float32), stride=stride, padding=pad, dilation=dil, groups=groups, q=QSynapse(W, 0))
    got = simulate(_one(op, (4, 9, 9), 2, profile=LOIHI), x, "int").output
    want = conv_ref(x.reshape(6, 4, 9, 9), W, stride, pad, dil, groups)
    assert np.array_equal(got.reshape(want.shape), want)
    assert taken == [True]


def test_sums_at_2_24_leave_int8(taken):
    """A bound at 2^24 (weights' absolute row sum times the largest input) takes the float64 path."""
    W = np.full((4, 1040), 127, np.int64)
    W[1] = -128
    x = np.full((1, 2, 1040), 127, np.float32)  # 1040 * 127 * 127 > 2^24
    g = _one(ops.Dense(W.astype(np.float32), q=QSynapse(W, 0)), (1040,), 1, "current")
    assert np.array_equal(simulate(g, x, "int").output, dense_int(x.astype(np.int64), W, 0))
    assert not any(taken)


def _threshold_case(monkeypatch):
    calls = []
    real = int_kernels._int8_product
    monkeypatch.setattr(int_kernels, "_int8_product", lambda *a: calls.append(real(*a)) or calls[-1])
    W = np.random.default_rng(6).integers(-128, 128, (128, 256))
    return calls, W, _one(ops.Dense(W.astype(np.float32), q=QSynapse(W, 0)), (256,), 2)


@needs_int8
def test_size_threshold(monkeypatch):
    """Small products keep float32; large ones take the int8 kernels."""
    calls, W, g = _threshold_case(monkeypatch)
    rng = np.random.default_rng(7)
    for batch, expect in ((2, False), (256, True)):  # 2 * 2 * 256 * 128 MACs < 2^23 <= 2 * 256 * 256 * 128
        calls.clear()
        x = (rng.random((2, batch, 256)) < 0.2).astype(np.float32)
        assert np.array_equal(simulate(g, x, "int", threads=1).output, dense_int(x.astype(np.int64), W, 0))
        assert [c is not None for c in calls] == [expect]


def test_failed_selftest_keeps_float32(monkeypatch):
    """A machine whose int8 kernels failed the self-test (or lack them) keeps float32, exactly."""
    calls, W, g = _threshold_case(monkeypatch)
    monkeypatch.setitem(int_kernels._INT8_STATE, "ok", False)
    x = (np.random.default_rng(7).random((2, 256, 256)) < 0.2).astype(np.float32)
    assert np.array_equal(simulate(g, x, "int", threads=1).output, dense_int(x.astype(np.int64), W, 0))
    assert calls == [None]


@needs_int8
def test_selftest_detects_a_wrong_kernel(monkeypatch):
    """`int8_selftest` fails when the int8 convolution's sums are off by one (a saturating or rounding kernel)."""
    assert int_kernels.int8_selftest()
    onednn = torch.ops.onednn

    class Ops:
        @staticmethod
        def qconv2d_pointwise(*a):
            return onednn.qconv2d_pointwise(*a) + 1

        def __getattr__(self, name):
            return getattr(onednn, name)

    monkeypatch.setattr(torch.ops, "onednn", Ops(), raising=False)
    assert not int_kernels.int8_selftest()


@needs_int8
@pytest.mark.parametrize("probe", [False, True])
def test_conv_max_pool_neuron_float_handoff(taken, probe):
    """Conv -> max pool -> LIF: the pool passes the int8 product's exact floats to the neuron (or
    int64 when probed); spikes and the probed pool equal the references."""
    rng = np.random.default_rng(8)
    W = rng.integers(-127, 128, (3, 2, 3, 3)) * 2
    q = QLIF(du=0, dv=400, vth=300, bias_mant=np.zeros(1))
    g = Graph("cpl", num_steps=4)
    g.add("x", ops.Input((2, 8, 8), layout="TB", encoding=Encoding("spikes")))
    g.add("c", ops.Conv2d(W.astype(np.float32), q=QSynapse(W, 0)), ["x"])
    g.add("p", ops.MaxPool2d(2), ["c"])
    g.add("n", ops.LIF(q=q), ["p"])
    g.add("o", ops.Output(), ["n"])
    g.profile = LOIHI
    g = g.verify()
    x = (rng.random((4, 3, 2, 8, 8)) < 0.5).astype(np.float32)
    res = simulate(g, x, "int", probe=["p"] if probe else False)
    conv = conv_ref(x.reshape(12, 2, 8, 8), W, 1, 0, 1, 1)
    pool = conv.reshape(12, 3, 3, 2, 3, 2).max((3, 5)).reshape(4, 3, 27)
    assert np.array_equal(res.output.reshape(4, 3, 27), lif_int(g["n"].op, LOIHI, pool)["spikes"])
    assert res.output.any()
    if probe:
        assert res.probes["p"]["out"].dtype == np.int64
        assert np.array_equal(res.probes["p"]["out"].reshape(4, 3, 27), pool)
    assert taken == [True]


@pytest.mark.parametrize("compiled", [True, False])  # `int_input`'s pass, or numpy's
@pytest.mark.parametrize("block", [1 << 18, 64])  # one block; many, the out-of-range value in a late one
@pytest.mark.parametrize("hi", [127, 128, 300, -1, 0.5, float("nan"), float("inf"), float("-inf"), -0.0, 1e-45, 126.99999])
def test_integral_fills_uint8_within_7_bits(monkeypatch, compiled, block, hi):
    """The input check's uint8 copy holds the values when they are within [0, 127]; the extremes
    tell the caller whether it may use it (also for a strided batch chunk); a value beyond uint8,
    negative, infinite or not an integer is found although the copy converts it to something."""
    from npuc.sim import encoding
    from npuc.sim.encoding import _integral

    monkeypatch.setattr(encoding, "COMPILED_MIN", 1 if compiled else 1 << 60)
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.integers(0, 100, (6, 40, 300)).astype(np.float32))
    x[5, 10, 299] = hi  # inside the chunk 3:17 too
    for view in (x, x[:, 3:17]):
        small = torch.empty(view.shape, dtype=torch.uint8)
        found = _integral(view, block, small)
        if hi != hi or abs(hi) == float("inf") or hi != int(hi):
            assert found is None
            continue
        assert found == (min(0.0, hi), float(max(hi, 99)))
        if 0 <= hi <= 127:
            assert torch.equal(small.to(torch.float32), view)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("n", [4, 1 << 17])  # numpy's check, the compiled one
def test_non_finite_spike_input_is_named(bad, n):
    """The integer engine leaves a float spike input's NaN / infinity check to its check of every
    value (one pass less over the input), which still names them (and the input) as such."""
    from npuc.errors import InputError

    g = _one(ops.Dense(np.ones((3, n), np.float32), q=QSynapse(np.ones((3, n), np.int64))), (n,), 2)
    x = np.zeros((2, 1, n), np.float32)
    x[1, 0, n - 1] = bad
    with pytest.raises(InputError, match="input 'x' has 1 NaN or infinite value"):
        simulate(g, x, "int")
    x[1, 0, n - 1] = 1.5
    with pytest.raises(InputError, match="must hold integer values"):
        simulate(g, x, "int")

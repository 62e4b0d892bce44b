"""The float engine's compiled loops (`npuc.sim.float_fused`) against the torch forms they replace
and against the libraries: SpikingJelly IF layers (hard and soft resets, thresholds and reset
values that are not round numbers, inputs at, just around and far from the threshold, signed zeros,
sums that overflow to infinity and the NaN a hard reset makes of them, batches across the kernel's
blocks) and norse LIF steps (one and two input terms, per-neuron parameters left to the form);
membranes and currents compared bit for bit."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron

from npuc.frontends import trace
from npuc.sim import float_fused, float_kernels, simulate


def _if_net(v_threshold: float, v_reset: float | None) -> torch.nn.Module:
    """The currents straight into the IF layer; the multi-step (time-folded) flatten before it runs
    the engine layer by layer (the compiled loop's case: a step-major run steps the form)."""
    net = torch.nn.Sequential(layer.Flatten(), neuron.IFNode(v_threshold=v_threshold, v_reset=v_reset))
    functional.set_step_mode(net, "m")
    return net.eval()


def _inputs(rng, steps: int, batch: int, n: int, thr: float) -> np.ndarray:
    """Random currents with edge values planted: the threshold, its float32 neighbours, halves of
    it (two steps reach it exactly or not), signed zeros, and values near float32's largest."""
    x = (rng.standard_normal((steps, batch, 1, n)) * abs(thr)).astype(np.float32)
    t32 = np.float32(thr)
    edges = np.array([t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf)),
                      t32 / 2, -t32 / 2, 0.0, -0.0, 3e38, -3e38, 1e-45, -1e-45], dtype=np.float32)
    pick = rng.random(x.shape) < 0.3
    x[pick] = rng.choice(edges, size=int(pick.sum()))
    return x


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


@pytest.mark.parametrize("v_threshold,v_reset", [(1.0, 0.0), (0.8, 0.3), (1.0, None), (0.3, -0.7), (-0.45, 0.1),
                                                 (0.7, None)])
@pytest.mark.parametrize("batch", [1, 300])
def test_fused_if_equals_torch_form_and_spikingjelly(monkeypatch, v_threshold, v_reset, batch):
    rng = np.random.default_rng(int(1000 * abs(v_threshold)) + batch)
    steps, n = 6, 7
    x = _inputs(rng, steps, batch, n, v_threshold)
    net = _if_net(v_threshold, v_reset)
    graph = trace(net, x[:, :2])
    calls = []
    orig = float_fused.if_layer
    monkeypatch.setattr(float_fused, "if_layer", lambda *a: calls.append(a) or orig(*a))
    fused = simulate(graph, x, "float", probe=True)
    assert calls, "the compiled loop did not run"
    monkeypatch.setattr(float_kernels, "FUSED", False)
    plain = simulate(graph, x, "float", probe=True)
    assert len(calls) == 1
    np.testing.assert_array_equal(_bits(fused.output), _bits(plain.output))
    assert fused.probes.keys() == plain.probes.keys()
    for node, ports in plain.probes.items():
        for port, v in ports.items():
            np.testing.assert_array_equal(_bits(fused.probes[node][port]), _bits(v), err_msg=f"{node}.{port}")
    functional.reset_net(net)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(_bits(fused.output), _bits(ref))
    assert fused.output.any() and not fused.output.all()


def test_if_steps_kernel_membranes_against_a_python_loop():
    """The kernel alone, membranes written, against the form's operations one float32 at a time."""
    rng = np.random.default_rng(5)
    x = _inputs(rng, 5, 1, 600, 0.8).reshape(5, 600)
    for hard in (True, False):
        consts = np.array([0.25, 0.8, -0.1], dtype=np.float32)
        s, v = np.empty_like(x), np.empty_like(x)
        float_fused.if_steps(x, consts, hard, s, v)
        v0, thr, vr = consts
        with np.errstate(all="ignore"):
            h = x[0] + v0
            for t in range(5):
                if t:
                    h = v[t - 1] + x[t]
                spk = (h >= thr).astype(np.float32)
                h = (np.float32(1) - spk) * h + spk * vr if hard else h - spk * thr
                np.testing.assert_array_equal(s[t], spk)
                np.testing.assert_array_equal(_bits(v[t]), _bits(h))


def _norse_models():
    from models import norse_models, shd_models

    torch.manual_seed(0)
    shd = shd_models.spiking(shd_models.NorseSHD(hidden=24))
    return [("cells_offsets", norse_models.CellLoop("offsets"), (12, 3, 10), 1.0),
            ("cells_per_neuron", norse_models.CellLoop("per_neuron"), (12, 3, 10), 1.0),
            ("shd", shd, (30, 300, shd_models.SHD_INPUTS), None)]


@pytest.mark.parametrize("case", range(3), ids=["cells_offsets", "cells_per_neuron", "norse_shd"])
def test_norse_lif_step_equals_torch_form_and_norse(monkeypatch, case):
    """norse ``LIFCell`` / ``LIFRecurrentCell`` layers by the compiled step (not where parameters
    are per neuron) against the torch form (outputs and every probed membrane and current, bit for
    bit) and against norse; the SHD net at 300 samples (blocks and a recurrent second term)."""
    name, model, shape, scale = _norse_models()[case]
    rng = np.random.default_rng(case)
    if scale is None:  # spikes
        x = (rng.random(shape) < 0.08).astype(np.float32)
    else:
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        x.reshape(-1)[::17] = 0.0
        x.reshape(-1)[5::23] = -0.0
    graph = trace(model, x[:, :2])
    calls = []
    orig = float_fused.norse_lif_step
    monkeypatch.setattr(float_fused, "norse_lif_step", lambda *a: calls.append(1) or orig(*a))
    fused = simulate(graph, x, "float", probe=True)
    monkeypatch.setattr(float_kernels, "FUSED", False)
    plain = simulate(graph, x, "float", probe=True)
    assert bool(calls) == (name != "cells_per_neuron")
    for a, b in zip(fused.outputs, plain.outputs):
        np.testing.assert_array_equal(_bits(a), _bits(b))
    for node, ports in plain.probes.items():
        for port, v in ports.items():
            np.testing.assert_array_equal(_bits(fused.probes[node][port]), _bits(v), err_msg=f"{node}.{port}")
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    ref = ref if isinstance(ref, tuple) else (ref,)
    for a, b in zip(fused.outputs, ref):
        np.testing.assert_array_equal(_bits(a), _bits(b.numpy()))
    assert fused.outputs[0].any()


def test_norse_lif_step_kernel_against_a_python_loop():
    """The step alone, one and two input terms, first and later steps, with values that overflow
    float32 (infinities, and the NaN a reset makes of them), against the form's operations."""
    rng = np.random.default_rng(8)
    n = 700
    consts = np.array([0.1, -0.2, -0.2, 0.8, -0.5], dtype=np.float32)
    c_mem, c_syn, v_leak, v_th, v_reset = consts
    i, x, rec, v = (rng.standard_normal((4, n)) * 2).astype(np.float32)
    x[::50] = 3e38
    rec[::70] = 3e38
    for first in (True, False):
        for r in (rec, np.empty(0, np.float32)):
            z, vo, io = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
            float_fused.norse_lif_step(i, x, r, v, consts, first, z, vo, io)
            with np.errstate(all="ignore"):
                vv = np.full(n, v_leak, np.float32) if first else v
                i_new = i + x + r if r.size else i + x
                v_dec = vv + c_mem * ((v_leak - vv) + i_new)
                zz = ((v_dec - v_th) > 0).astype(np.float32)
                np.testing.assert_array_equal(z, zz)
                np.testing.assert_array_equal(_bits(vo), _bits((np.float32(1) - zz) * v_dec + zz * v_reset))
                np.testing.assert_array_equal(_bits(io), _bits(i_new + c_syn * i_new))

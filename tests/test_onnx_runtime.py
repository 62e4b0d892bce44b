"""The runnable ONNX form (`export_onnx(..., runtime=True)`): onnxruntime, stepping the model
with its state carried from output to input, computes what npuc's float engine computes,
node by node and step by step, for every neuron variant, delayed edges and sum pooling."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from npuc.cli import main
from npuc.frontends.errors import FrontendError
from npuc.frontends.onnx_export import export_onnx
from npuc.frontends.onnx_import import import_onnx
from npuc.frontends.onnx_runtime import run_steps
from npuc.ir import IF, LIF, Add, Conv2d, Dense, Graph, Input, Output, Reshape, SumPool2d
from npuc.sim import simulate

pytest.importorskip("onnxruntime")


def _graph(seed: int) -> Graph:
    """Every neuron variant the runtime form expands: spike types, reset modes and timings,
    CUBA, v_min and v_init, a recurrent edge, conv + sum pooling."""
    gen = np.random.default_rng(seed)

    class rng:  # noqa: N801
        # dyadic weights (k/16) and inputs (k/8): every sum is exact in float32 whatever order onnxruntime
        # and PyTorch add in, so spikes must agree exactly (elementwise ops round the same in both)
        normal = staticmethod(lambda *a, **k: np.round(gen.normal(*a, **k) * 16) / 16)
        random = staticmethod(gen.random)

    g = Graph(f"rt{seed}", num_steps=12)
    g.add("x", Input((2, 6, 6), layout="TB"))
    g.add("c", Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4) / 8, padding=1), ["x"])
    g.add("sp", SumPool2d(2), ["c"])
    g.add("l1", LIF(alpha=rng.random((4, 1, 1)), threshold=0.8, spike="ternary", threshold_lo=-0.5, reset="value",
                    reset_value=0.1, reset_timing="delayed", v_min=-2.0, v_init=0.3), ["sp"])
    g.add("fl", Reshape((-1,)), ["l1"])
    g.add("d", Dense(rng.normal(size=(10, 36)) * 0.5, rng.normal(size=10) / 8), ["fl"])
    g.add("rec", Dense(rng.normal(size=(10, 10)) / 4), [("l2", "spikes", 1)])
    g.add("sum", Add(), ["d", "rec"])
    g.add("l2", LIF(alpha=0.9, alpha_i=0.5, spike="multilevel", compare="ge", levels=4, gain=rng.random(10)),
          ["sum"])
    g.add("l3", LIF(alpha=0.8, threshold=0.6, reset="subtract", reset_timing="delayed", bias=0.05), ["l2"])
    g.add("l4", LIF(alpha=0.7, threshold=0.5, reset="value", reset_timing="delayed_charge", compare="ge"), ["l3"])
    g.add("l5", IF(threshold=0.7), ["l4"])
    g.add("l6", LIF(alpha=0.95, reset="none", threshold=0.4), ["l5"])
    g.add("o1", Output(), ["l6"])
    g.add("o2", Output("last", "B", index=1), [("l2", "v")])
    return g.verify()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_onnxruntime_equals_the_float_engine_node_by_node(tmp_path, seed):
    g = _graph(seed)
    x = np.round(np.random.default_rng(10 + seed).normal(size=(g.num_steps, 3, 2, 6, 6)) * 16).astype(np.float32) / 8
    path = export_onnx(g, tmp_path / "rt.onnx", runtime=True)
    model = onnx.load(path)
    assert {n.domain for n in model.graph.node} == {""}  # standard operators only
    neurons = ["l1", "l2", "l3", "l4", "l5", "l6"]
    for t in neurons + ["l2/v", "l1/v"]:  # read intermediate tensors too
        model.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    onnx.save(model, path)
    got = run_steps(path, x)
    ref = simulate(g, x, "float", probe=True).probes
    for node in neurons:
        assert ref[node]["spikes"].any(), f"{node} never spikes: the test would not exercise it"
        np.testing.assert_array_equal(got[node], ref[node]["spikes"], err_msg=node)
        if node in ("l1", "l2"):
            np.testing.assert_array_equal(got[f"{node}/v"], ref[node]["v"], err_msg=f"{node}/v")
    np.testing.assert_array_equal(got["o1"], ref["l6"]["spikes"])


def test_the_runtime_form_is_refused_by_the_importer_and_bernoulli_by_the_exporter(tmp_path):
    path = export_onnx(_graph(0), tmp_path / "rt.onnx", runtime=True)
    with pytest.raises(FrontendError, match="runnable ONNX form"):
        import_onnx(path)
    g = Graph("b", num_steps=4)
    g.add("x", Input((3,)))
    g.add("l", LIF(spike="bernoulli"), ["x"])
    g.add("o", Output(), ["l"])
    with pytest.raises(FrontendError, match="node 'l'.*Bernoulli"):
        export_onnx(g.verify(), tmp_path / "b.onnx", runtime=True)


def test_export_verb_writes_nir_onnx_and_the_runtime_form(tmp_path, capsys):
    rng = np.random.default_rng(0)
    g = Graph("mlp", num_steps=10)
    g.add("x", Input((8,), layout="TB"))
    g.add("d1", Dense(np.round(rng.normal(size=(6, 8)) * 16) / 16), ["x"])
    g.add("l1", LIF(alpha=0.9, threshold=0.5), ["d1"])
    g.add("d2", Dense(np.round(rng.normal(size=(3, 6)) * 16) / 16), ["l1"])
    g.add("l2", LIF(alpha=0.8, threshold=0.5, reset="value"), ["d2"])
    g.add("o", Output(), ["l2"])
    x = (rng.integers(-8, 9, size=(10, 5, 8)) / 4).astype(np.float32)
    from npuc.api import compile as npuc_compile

    npuc_compile(g.verify(), x, target="fpga", out=tmp_path / "b")
    for fmt, name in (("onnx", "m.onnx"), ("nir", "m.nir")):
        assert main(["export", str(tmp_path / "b"), "--format", fmt, "--out", str(tmp_path / name)]) == 0
    assert sorted(n.name for n in import_onnx(tmp_path / "m.onnx")) == sorted(n.name for n in g)
    assert main(["export", str(tmp_path / "b"), "--format", "onnx", "--runtime", "--out", str(tmp_path / "r.onnx")]) == 0
    want = simulate(g, x, "float", probe=True).probes["l2"]["spikes"]
    assert want.any()
    np.testing.assert_array_equal(run_steps(tmp_path / "r.onnx", x)["o"], want)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "b"), "--format", "nir", "--runtime", "--out", str(tmp_path / "x.nir")]) == 2
    assert "--runtime applies to --format onnx only" in capsys.readouterr().err
    assert not (tmp_path / "x.nir").exists()

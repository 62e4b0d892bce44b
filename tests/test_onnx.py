"""ONNX import/export: exact round trips, a torch.onnx export with npuc LIF nodes
checked against an independent torch computation, hand-built graphs and errors."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from builders import every_op_graph
from onnx import TensorProto, helper, numpy_helper
from reference import lif_float

from npuc.frontends.errors import FrontendError
from npuc.frontends.onnx_export import DOMAIN, export_onnx
from npuc.frontends.onnx_import import import_onnx
from npuc.ir import Graph, ops
from npuc.ir.serialize import graph_to_json
from npuc.sim import simulate

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]


def _canonical(g: Graph):
    doc, arrays = graph_to_json(g)
    for nd in doc["nodes"]:
        for r in nd["inputs"]:  # None and the first port name mean the same port
            src = g[r["node"]]
            if r["port"] == src.op.ports[0]:
                r["port"] = None
    return doc, arrays


def test_round_trip_is_exact(tmp_path):
    g = every_op_graph()
    path = export_onnx(g, tmp_path / "g.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    types = {n.op_type for n in model.graph.node}
    assert {"BatchNormalization", "Conv", "SumPool2d", "AveragePool", "MaxPool", "LIF", "IF", "Transpose",
            "Reshape", "MatMul", "Gemm", "Sum", "Mul"} <= types
    g2 = import_onnx(path)
    (d1, a1), (d2, a2) = _canonical(g), _canonical(g2)
    assert d1 == d2
    assert a1.keys() == a2.keys()
    for k in a1:
        assert a1[k].dtype == a2[k].dtype and a1[k].shape == a2[k].shape, k
        np.testing.assert_array_equal(a1[k], a2[k], err_msg=k)
    x = np.random.default_rng(0).random((3, 2, 6, 6)).astype(np.float32)
    r1, r2 = simulate(g, x), simulate(g2, x)
    assert 0 < r1.outputs[0].mean() < 1
    for a, b in zip(r1.outputs, r2.outputs):
        np.testing.assert_array_equal(a, b)
    export_onnx(g, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()


def test_export_rejects_ops_without_onnx_form(tmp_path):
    from npuc.ir.ops import Op

    class Mystery(Op):
        def infer(self, in_shapes):
            return {"out": tuple(in_shapes[0])}

    g = Graph("m", 2)
    g.add("x", ops.Input((3,)))
    g.add("weird", Mystery(), ["x"])
    g.add("o", ops.Output(), ["weird"])
    with pytest.raises(FrontendError, match="node 'weird' \\(Mystery\\).*no ONNX form"):
        export_onnx(g, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# -----------------------------------------------------------------------------
# A torch.onnx export with LIF nodes swapped in for the ReLUs
# -----------------------------------------------------------------------------


def _torch_stack() -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    torch.manual_seed(0)
    conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
    bn = torch.nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 1.5)
    bn.weight.data.uniform_(0.5, 1.5)
    conv2 = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2)
    fc = torch.nn.Linear(4, 5)
    model = torch.nn.Sequential(conv1, bn, torch.nn.ReLU(), torch.nn.AvgPool2d(2), conv2, torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2), torch.nn.Flatten(), fc, torch.nn.ReLU()).eval()
    segments = [torch.nn.Sequential(conv1, bn), torch.nn.Sequential(torch.nn.AvgPool2d(2), conv2),
                torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(), fc)]
    return model, segments


def test_torch_onnx_export_with_lif_nodes(tmp_path):
    model, segments = _torch_stack()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 2, 8, 8),), f, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "B"}, "y": {0: "B"}},
                          training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load_from_string(f.getvalue())
    assert {"Conv", "BatchNormalization", "AveragePool", "MaxPool", "Flatten", "Gemm"} <= {n.op_type for n in m.graph.node}
    rng = np.random.default_rng(5)
    alpha1 = rng.uniform(0.6, 0.95, (4, 1, 1)).astype(np.float32)
    lifs = [
        ops.LIF(alpha=alpha1, threshold=0.5),
        ops.IF(gain=0.8, threshold=0.6, reset="value", reset_value=0.0),
        ops.LIF(alpha=0.9, alpha_i=rng.uniform(0.2, 0.7, 5), threshold=0.3, compare="ge"),
    ]
    m.graph.initializer.append(numpy_helper.from_array(np.asarray(lifs[2].alpha_i), "lif3.alpha_i"))
    relus = [n for n in m.graph.node if n.op_type == "Relu"]
    attrs = [
        dict(alpha=numpy_helper.from_array(alpha1, "alpha"), threshold=0.5),
        dict(gain=0.8, threshold=0.6, reset="value", reset_value=0.0),
        dict(alpha=0.9, alpha_i="lif3.alpha_i", threshold=0.3, compare="ge"),  # per-neuron via an initializer
    ]
    for k, (relu, a) in enumerate(zip(relus, attrs)):
        lif = helper.make_node("IF" if k == 1 else "LIF", list(relu.input), list(relu.output),
                               name=f"lif{k + 1}", domain=DOMAIN, **a)
        relu.CopyFrom(lif)
    m.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    m.metadata_props.add(key="npuc.layout", value="TB")
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, tmp_path / "net.onnx")
    g = import_onnx(tmp_path / "net.onnx")
    assert [type(g[f"lif{k}"].op) for k in (1, 2, 3)] == [ops.LIF, ops.IF, ops.LIF]
    assert isinstance(g["1_BatchNormalization"].op, ops.BatchNorm)

    x = torch.rand(16, 3, 2, 8, 8) * 2
    h = x
    with torch.no_grad():
        for seg, op in zip(segments, lifs):
            h = torch.stack([seg(h[t]) for t in range(h.shape[0])])  # one step at a time, like the graph
            h = lif_float(op, h)["spikes"]
    want = h.numpy()
    assert 0.05 < want.mean() < 0.95
    np.testing.assert_array_equal(simulate(g, x.numpy()).output, want)


# -----------------------------------------------------------------------------
# Hand-built graphs: MatMul + bias, Div/Mul, Transpose, GlobalAveragePool, ...
# -----------------------------------------------------------------------------


def _model(nodes, inputs, outputs, inits=(), props=None):
    g = helper.make_graph(nodes, "hand", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=OPSETS, ir_version=8)
    for k, v in (props or {}).items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m, full_check=True)
    return m


def test_handbuilt_graph_matches_numpy():
    rng = np.random.default_rng(7)
    w = rng.normal(size=(24, 6)).astype(np.float32)  # MatMul weight [in, out]
    b = rng.normal(size=6).astype(np.float32)
    per_ch = rng.uniform(0.5, 2, (3, 1, 1)).astype(np.float32)
    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="tr", perm=[0, 1, 3, 2]),  # [B,3,2,4] -> [B,3,4,2]
        helper.make_node("Mul", ["xt", "per_ch"], ["xm"], name="mul"),
        helper.make_node("Constant", [], ["two"], name="c2", value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Div", ["xm", "two"], ["xd"], name="div"),
        helper.make_node("Dropout", ["xd"], ["xdo"], name="drop"),
        helper.make_node("GlobalAveragePool", ["xdo"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["xdo"], ["flat"], name="flat"),
        helper.make_node("MatMul", ["flat", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["lin"], name="bias"),
        helper.make_node("LIF", ["lin"], ["s", "v"], name="lif", domain=DOMAIN, alpha=0.8, threshold=0.4),
        helper.make_node("Identity", ["v"], ["vout"], name="id"),
        helper.make_node("Constant", [], ["shp"], name="shape", value=numpy_helper.from_array(np.array([0, -1], np.int64))),
        helper.make_node("Reshape", ["gap", "shp"], ["gapf"], name="rs"),
        helper.make_node("Sum", ["gapf", "gapf", "gapf"], ["g3"], name="sum3"),
    ]
    m = _model(
        nodes,
        [helper.make_tensor_value_info("x", f32, ["B", 3, 2, 4])],
        [helper.make_tensor_value_info("s", f32, ["B", 6]), helper.make_tensor_value_info("vout", f32, ["B", 6]),
         helper.make_tensor_value_info("g3", f32, ["B", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(per_ch[None], "per_ch")],
        {"npuc.layout": "TB"},
    )
    g = import_onnx(m)
    assert isinstance(g["mm"].op, ops.Dense) and g["mm"].op.bias is not None and "bias" not in g
    assert isinstance(g["div"].op, ops.Scale) and isinstance(g["gap"].op, ops.AvgPool2d)
    x = rng.normal(size=(10, 2, 3, 2, 4)).astype(np.float32)
    res = simulate(g, x)
    # numpy reference, step by step
    xt = np.swapaxes(x, -1, -2) * per_ch / 2
    np.testing.assert_allclose(res.outputs[2], 3 * xt.mean(axis=(-1, -2)), rtol=1e-5)
    lin = xt.reshape(10, 2, -1) @ w + b
    v = np.zeros((2, 6))
    spikes = []
    for t in range(10):
        v = 0.8 * v + lin[t]
        s = v > 0.4
        v = v - 0.4 * s
        spikes.append(s)
    np.testing.assert_array_equal(res.outputs[0], np.stack(spikes))
    np.testing.assert_allclose(res.outputs[1][-1], v, rtol=1e-4, atol=1e-5)


# -----------------------------------------------------------------------------
# Errors
# -----------------------------------------------------------------------------


def _one_node(node, inits=(), out_shape=(4,), props=None):
    f32 = TensorProto.FLOAT
    return _model([node], [helper.make_tensor_value_info("x", f32, ["B", 4])],
                  [helper.make_tensor_value_info("y", f32, ["B", *out_shape])], inits,
                  {"npuc.layout": "TB"} if props is None else props)


def test_error_unsupported_op_names_node_and_type():
    m = _one_node(helper.make_node("Softmax", ["x"], ["y"], name="probs"))
    with pytest.raises(FrontendError, match="node 'probs' \\(Softmax\\): unsupported op type 'Softmax'"):
        import_onnx(m)
    m = _one_node(helper.make_node("Gizmo", ["x"], ["y"], name="gz", domain=DOMAIN))
    with pytest.raises(FrontendError, match="node 'gz' \\(ai.npuc::Gizmo\\): unsupported op type 'Gizmo' in domain"):
        import_onnx(m)


def test_error_bad_lif_attributes():
    m = _one_node(helper.make_node("LIF", ["x"], ["y"], name="n1", domain=DOMAIN, reset="sometimes"))
    with pytest.raises(FrontendError, match="node 'n1' \\(ai.npuc::LIF\\): field 'reset': 'sometimes'"):
        import_onnx(m)
    m = _one_node(helper.make_node("LIF", ["x"], ["y"], name="n2", domain=DOMAIN, tau=2.0))
    with pytest.raises(FrontendError, match="node 'n2'.*unknown attribute 'tau'"):
        import_onnx(m)
    m = _one_node(helper.make_node("LIF", ["x"], ["y"], name="n3", domain=DOMAIN, alpha="nowhere"))
    with pytest.raises(FrontendError, match="node 'n3'.*'alpha' names 'nowhere', which is not an initializer"):
        import_onnx(m)
    t = numpy_helper.from_array(np.ones(3, np.float32), "alpha")
    m = _one_node(helper.make_node("LIF", ["x"], ["y"], name="n4", domain=DOMAIN, alpha=t))
    with pytest.raises(FrontendError, match="node 'n4'.*field 'alpha': shape \\(3,\\) does not broadcast"):
        import_onnx(m)


def test_error_constants_weights_and_layout(tmp_path):
    m = _one_node(helper.make_node("Add", ["x", "c"], ["y"], name="shift"), [numpy_helper.from_array(np.ones(4, np.float32), "c")])
    with pytest.raises(FrontendError, match="node 'shift' \\(Add\\): adds the constant 'c'"):
        import_onnx(m)
    m = _one_node(helper.make_node("MatMul", ["x", "x"], ["y"], name="sq"))
    with pytest.raises(FrontendError, match="node 'sq' \\(MatMul\\): weight.*must be a constant"):
        import_onnx(m)
    m = _one_node(helper.make_node("Identity", ["x"], ["y"], name="id"), props={})
    with pytest.raises(FrontendError, match="input 'x' is a static.*pass steps="):
        import_onnx(m)
    assert import_onnx(m, steps=3).num_steps == 3
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage\xff\xff")
    with pytest.raises(FrontendError, match="junk.onnx: not a valid ONNX model"):
        import_onnx(tmp_path / "junk.onnx")
    with pytest.raises(FrontendError, match="no such ONNX file"):
        import_onnx(tmp_path / "missing.onnx")


def test_error_asymmetric_conv_pads():
    f32 = TensorProto.FLOAT
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[0, 0, 1, 1])
    m = _model([node], [helper.make_tensor_value_info("x", f32, ["B", 1, 5, 5])],
               [helper.make_tensor_value_info("y", f32, ["B", 2, 4, 4])], [w], {"npuc.layout": "TB"})
    with pytest.raises(FrontendError, match="node 'conv' \\(Conv\\): asymmetric pads"):
        import_onnx(m)

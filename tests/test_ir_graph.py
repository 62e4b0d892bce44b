"""Graph construction, validation, editing and verification."""

import dataclasses

import numpy as np
import pytest

from npuc.ir import Graph, GraphError, ops


def mlp(T=4):
    g = Graph("mlp", num_steps=T)
    g.add("x", ops.Input((6,)))
    g.add("fc", ops.Dense(np.ones((3, 6), np.float32)), ["x"])
    g.add("lif", ops.LIF(alpha=0.5), ["fc"])
    g.add("out", ops.Output(), ["lif"])
    return g


def test_build_and_shapes():
    g = mlp().verify()
    assert g["fc"].shape == (3,)
    assert g["lif"].shapes == {"spikes": (3,), "v": (3,), "i": (3,)}
    assert [n.name for n in g.inputs()] == ["x"]
    assert g.users("fc") == [("lif", 0)]
    assert g.topo_order() == ["x", "fc", "lif", "out"]


def test_conv_shapes():
    g = Graph("c", num_steps=2)
    g.add("x", ops.Input((2, 9, 9)))
    g.add("c", ops.Conv2d(np.zeros((4, 1, 3, 3)), stride=2, padding=1, groups=2), ["x"])
    g.add("p", ops.MaxPool2d(kernel=2), ["c"])
    g.add("f", ops.Reshape((-1,)), ["p"])
    g.add("o", ops.Output(), ["f"])
    assert g["c"].shape == (4, 5, 5)
    assert g["p"].shape == (4, 2, 2)
    assert g["f"].shape == (16,)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda g: g.add("x", ops.Input((3,))), "already exists"),
        (lambda g: g.add("bad name", ops.Scale(2.0), ["x"]), "invalid node name"),
        (lambda g: g.add("d", ops.Dense(np.zeros((2, 5))), ["x"]), "node 'd' (Dense): input has 6 features"),
        (lambda g: g.add("d", ops.Dense(np.zeros((2, 6))), ["nope"]), "input 'nope' does not exist"),
        (lambda g: g.add("d", ops.Dense(np.zeros((2, 6))), []), "takes 1 input"),
        (lambda g: g.add("a", ops.Add(), ["x", "fc"]), "differ in shape"),
        (lambda g: g.add("d", ops.Dense(np.zeros((2, 6))), [("x", "v")]), "has no port 'v'"),
    ],
)
def test_add_errors_name_the_node(build, message):
    g = mlp()
    with pytest.raises(GraphError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(g)
    g.verify()  # a failed add leaves the graph unchanged


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: ops.Dense(np.zeros((2, 3)), bias=np.zeros(4)), "bias"),
        (lambda: ops.Dense(np.full((2, 3), np.nan)), "weight"),
        (lambda: ops.LIF(reset="sometimes"), "reset"),
        (lambda: ops.LIF(spike="ternary"), "threshold_lo"),
        (lambda: ops.LIF(spike="multilevel", compare="gt"), "compare"),
        (lambda: ops.IF(alpha=0.5), "alpha"),
        (lambda: ops.Conv2d(np.zeros((3, 1, 2, 2)), groups=2), "groups"),
        (lambda: ops.Input((0, 3)), "shape"),
    ],
)
def test_op_validation_names_the_field(make, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        make()


def test_recurrent_graph_and_cycle_check():
    g = Graph("rnn", num_steps=3)
    g.add("x", ops.Input((2,)))
    g.add("fc", ops.Dense(np.ones((3, 2))), ["x"])
    g.add("rec", ops.Dense(np.eye(3)), [("lif", "spikes", 1)])  # forward reference through a delay
    g.add("sum", ops.Add(), ["fc", "rec"])
    g.add("lif", ops.LIF(), ["sum"])
    g.add("o", ops.Output(), ["lif"])
    g.verify()
    groups = g.recurrent_groups()
    assert ["rec", "sum", "lif"] in groups
    assert groups.index(["x"]) < groups.index(["fc"]) < groups.index(["rec", "sum", "lif"])
    with pytest.raises(GraphError, match="delay 2"):
        g.add("z", ops.Scale(1.0), [("lif", None, 2)])


def test_same_step_cycle_is_rejected():
    g = Graph("loop", num_steps=2)
    g.add("x", ops.Input((2,)))
    g.add("s", ops.Scale(1.0), ["x"])
    g.add("a", ops.Add(), ["s", "s"])
    g.add("o", ops.Output(), ["a"])
    g.set_inputs("s", ["a"])
    with pytest.raises(GraphError, match="same-step cycle"):
        g.verify()


def test_verify_requires_io_and_steps():
    g = Graph("g")
    g.add("x", ops.Input((2,)))
    g.add("s", ops.Scale(2.0), ["x"])
    with pytest.raises(GraphError, match="Input and one Output"):
        g.verify()
    g.add("o", ops.Output(), ["s"])
    with pytest.raises(GraphError, match="num_steps"):
        g.verify()
    g.num_steps = 3
    g.verify()


def test_editing():
    g = mlp()
    g.add("sc", ops.Scale(2.0), ["fc"])
    g.redirect("fc", "sc")  # lif now reads sc, sc still reads fc
    assert g["lif"].inputs[0].node == "sc"
    assert g["sc"].inputs[0].node == "fc"
    g.bypass("sc")
    assert g["lif"].inputs[0].node == "fc"
    assert "sc" not in g
    with pytest.raises(GraphError, match="still read by"):
        g.remove("fc")
    g.replace_op("fc", ops.Dense(np.ones((5, 6))))
    assert g["lif"].shape == (5,)
    with pytest.raises(GraphError, match="input has 6"):
        g.replace_op("fc", ops.Dense(np.ones((5, 7))))
    assert g["fc"].op.weight.shape == (5, 6)  # failed replace is rolled back
    c = g.copy()
    c.replace_op("fc", ops.Dense(np.ones((2, 6))))
    assert g["lif"].shape == (5,) and c["lif"].shape == (2,)


def test_ops_are_immutable():
    d = ops.Dense(np.ones((2, 2)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.weight = np.zeros((2, 2))
    with pytest.raises(ValueError):
        d.weight[0, 0] = 3.0

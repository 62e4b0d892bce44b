"""Save/load round trips, determinism and clear errors on damaged files."""

import json
import zipfile

import numpy as np
import pytest

from npuc.ir import (
    LIF,
    QLIF,
    Add,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Encoding,
    Graph,
    GraphFileError,
    Input,
    MaxPool2d,
    NumericProfile,
    Output,
    Permute,
    QInput,
    QScale,
    QSynapse,
    Reshape,
    Scale,
    SumPool2d,
)
from npuc.ir.serialize import graph_to_json
from npuc.sim import simulate


def every_op_graph():
    rng = np.random.default_rng(3)
    g = Graph("all_ops", num_steps=5)
    g.meta["source"] = {"model": "x.py:f", "tuple": (1, 2)}
    g.add("x", Input((2, 6, 6), Encoding("bernoulli", bits=12, seed=77), q=QInput(frac_bits=3)))
    g.add("bn", BatchNorm(rng.random(2), rng.random(2) + 0.5, rng.random(2), rng.random(2), eps=1e-3), ["x"])
    g.add("c", Conv2d(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), stride=1, padding=1, groups=2), ["bn"])
    g.add("sp", SumPool2d(2), ["c"])
    g.add("ap", AvgPool2d(kernel=3, stride=1, padding=1, q=QScale(np.array(7), 6)), ["sp"])
    g.add("mp", MaxPool2d(kernel=(1, 3), stride=1), ["ap"])
    g.add("lif", LIF(alpha=rng.random((4, 1, 1)), threshold=0.8, spike="ternary", threshold_lo=-0.5,
                     reset="value", reset_timing="delayed", v_min=-2.0,
                     q=QLIF(du=4095, dv=100, vth=50, vth_lo=-20, bias_mant=np.arange(4).reshape(4, 1, 1))), ["mp"])
    g.add("p", Permute((1, 2, 0)), ["lif"])
    g.add("r", Reshape((-1, 4)), ["p"])
    g.add("c1", Conv1d(rng.normal(size=(3, 3, 2)), dilation=2), [("r", None)])
    g.add("fl", Reshape((-1,)), ["c1"])
    g.add("d", Dense(rng.normal(size=(5, 6)).astype(np.float32), q=QSynapse(rng.integers(-9, 9, (5, 6)), -2)), ["fl"])
    g.add("rec", Dense(np.eye(5)), [("lif2", "spikes", 1)])
    g.add("sum", Add(), ["d", "rec"])
    g.add("sc", Scale(np.full(5, 0.5)), ["sum"])
    g.add("lif2", LIF(alpha=0.9, alpha_i=0.5, spike="multilevel", compare="ge", levels=4), ["sc"], meta={"core": 3, "rate": [0.1, 0.2]})
    g.add("o1", Output(), ["lif2"])
    g.add("o2", Output("last", "B", index=1), [("lif2", "v")])
    return g


def test_round_trip_is_exact(tmp_path):
    g = every_op_graph().verify()
    g.profile = None
    g.save(tmp_path / "g")
    h = Graph.load(tmp_path / "g")
    d1, a1 = graph_to_json(g)
    d2, a2 = graph_to_json(h)
    assert d1 == d2
    assert a1.keys() == a2.keys()
    for k in a1:
        assert a1[k].dtype == a2[k].dtype and np.array_equal(a1[k], a2[k]), k
    assert h.meta["source"]["tuple"] == (1, 2)
    assert h["lif2"].meta == {"core": 3, "rate": [0.1, 0.2]}
    x = np.random.default_rng(0).random((2, 2, 6, 6)).astype(np.float32)
    r1, r2 = simulate(g, x), simulate(h, x)
    for a, b in zip(r1.outputs, r2.outputs):
        assert np.array_equal(a, b)


def test_profile_round_trip(tmp_path):
    g = Graph("q", num_steps=3)
    g.add("x", Input((3,), q=QInput(frac_bits=4)))
    g.add("d", Dense(np.ones((2, 3)), q=QSynapse(np.ones((2, 3), np.int64), 1, np.array([3, -3]))), ["x"])
    g.add("l", LIF(q=QLIF(du=1, dv=2, vth=3, bias_mant=np.zeros(2), v_min=np.array(-5))), ["d"])
    g.add("o", Output(), ["l"])
    g.profile = NumericProfile("p", weight_bits=6, spike_types=("binary",), notes={"a": "b"})
    g.save(tmp_path / "g")
    h = Graph.load(tmp_path / "g")
    assert h.profile == g.profile and h.profile.notes == {"a": "b"}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(simulate(g, x, "int").output, simulate(h, x, "int").output)


def test_save_is_deterministic(tmp_path):
    every_op_graph().save(tmp_path / "a")
    every_op_graph().save(tmp_path / "b")
    for f in ("graph.json", "tensors.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_failed_save_leaves_nothing(tmp_path):
    g = every_op_graph()
    g.meta["bad"] = object()
    with pytest.raises(TypeError):
        g.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "graph.json").unlink(), "not found"),
        (lambda d: (d / "graph.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "graph.json").write_text(json.dumps({"format": "onnx"})), "not an npuc graph"),
        (lambda d: _edit(d, lambda j: j.update(version=99)), "version 99"),
        (lambda d: _edit(d, lambda j: j["nodes"][2]["op"].update({"$type": "Frobnicate"})), "unknown type 'Frobnicate'"),
        (lambda d: _edit(d, lambda j: j["nodes"][2]["op"].update(stride=[0, 1])), "node 'c'.*stride"),
        (lambda d: _edit(d, lambda j: j["nodes"][2]["op"].update(color=1)), "unknown field"),
        (lambda d: _edit(d, lambda j: j["nodes"][3]["inputs"][0].update(node="zzz")), "input 'zzz' does not exist"),
        (lambda d: (d / "tensors.npz").write_bytes(b"garbage"), "cannot read arrays"),
        (lambda d: _drop_array(d, "d.weight"), "array 'd.weight' is missing"),
    ],
)
def test_damaged_files_give_clear_errors(tmp_path, damage, message):
    every_op_graph().save(tmp_path / "g")
    damage(tmp_path / "g")
    with pytest.raises(GraphFileError, match=message):
        Graph.load(tmp_path / "g")


def _edit(d, fn):
    j = json.loads((d / "graph.json").read_text())
    fn(j)
    (d / "graph.json").write_text(json.dumps(j))


def _drop_array(d, key):
    p = d / "tensors.npz"
    with zipfile.ZipFile(p) as zf:
        items = {n: zf.read(n) for n in zf.namelist() if n != key + ".npy"}
    with zipfile.ZipFile(p, "w") as zf:
        for n, b in items.items():
            zf.writestr(n, b)


def test_pickled_arrays_are_refused(tmp_path):
    every_op_graph().save(tmp_path / "g")
    np.savez(tmp_path / "g" / "tensors.npz", **{"d.weight": np.array([object()], dtype=object)})
    with pytest.raises(GraphFileError):
        Graph.load(tmp_path / "g")

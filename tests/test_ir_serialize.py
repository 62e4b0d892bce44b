"""Save/load round trips, determinism and clear errors on damaged files."""

import json
import zipfile

import numpy as np
import pytest
from builders import every_op_graph

from npuc.ir import QLIF, Graph, GraphFileError, NumericProfile, QInput, QSynapse, ops
from npuc.ir.serialize import graph_to_json
from npuc.sim import simulate


def test_round_trip_is_exact(tmp_path):
    g = every_op_graph(quantized=True).verify()
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
    g.add("x", ops.Input((3,), q=QInput(frac_bits=4)))
    g.add("d", ops.Dense(np.ones((2, 3)), q=QSynapse(np.ones((2, 3), np.int64), 1, np.array([3, -3]))), ["x"])
    g.add("l", ops.LIF(q=QLIF(du=1, dv=2, vth=3, bias_mant=np.zeros(2), v_min=np.array(-5))), ["d"])
    g.add("o", ops.Output(), ["l"])
    g.profile = NumericProfile("p", weight_bits=6, spike_types=("binary",), notes={"a": "b"})
    g.save(tmp_path / "g")
    h = Graph.load(tmp_path / "g")
    assert h.profile == g.profile and h.profile.notes == {"a": "b"}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(simulate(g, x, "int").output, simulate(h, x, "int").output)


def test_per_neuron_decays_round_trip(tmp_path):
    """QLIF du / dv arrays (per-neuron decays) load back as arrays; equal values as one integer."""
    g = Graph("q", num_steps=4)
    g.add("x", ops.Input((3,), q=QInput(frac_bits=4)))
    g.add("d", ops.Dense(np.ones((2, 3)), q=QSynapse(np.ones((2, 3), np.int64), 1)), ["x"])
    g.add("l", ops.LIF(alpha_i=0.5, q=QLIF(du=np.array([7, 7]), dv=np.array([10, 300]), vth=3,
                                           bias_mant=np.zeros(2))), ["d"])
    g.add("o", ops.Output(), ["l"])
    g.profile = NumericProfile("p", weight_bits=6, spike_types=("binary",))
    assert g["l"].op.q.du == 7 and isinstance(g["l"].op.q.du, int)
    g.save(tmp_path / "g")
    q = Graph.load(tmp_path / "g")["l"].op.q
    assert q.du == 7 and np.array_equal(q.dv, [10, 300]) and q.per_neuron_decay


@pytest.mark.parametrize("lo,hi", [(-128, 127), (-300, 300), (-(1 << 20), 1 << 20), (-(1 << 40), 1 << 40)])
def test_large_integer_weights_are_stored_narrow_and_load_as_int64(tmp_path, lo, hi):
    rng = np.random.default_rng(hi)
    w = rng.integers(lo, hi + 1, size=(64, 48))
    w[0, :2] = lo, hi
    g = Graph("q", num_steps=2)
    g.add("x", ops.Input((48,), q=QInput(frac_bits=0)))
    g.add("d", ops.Dense(w.astype(np.float32), q=QSynapse(w, 0, np.zeros(64, np.int64))), ["x"])
    g.add("o", ops.Output(), ["d"])
    g.save(tmp_path / "g")
    stored = np.load(tmp_path / "g" / "tensors.npz")
    assert max(stored[k].dtype.itemsize for k in stored.files if stored[k].size == w.size and stored[k].dtype.kind == "i") \
        == (1 if hi < 128 else 2 if hi < 1 << 15 else 4 if hi < 1 << 31 else 8)
    h = Graph.load(tmp_path / "g")
    assert h["d"].op.q.weight.dtype == np.int64 and np.array_equal(h["d"].op.q.weight, w)


def test_save_is_deterministic(tmp_path):
    every_op_graph(quantized=True).save(tmp_path / "a")
    every_op_graph(quantized=True).save(tmp_path / "b")
    for f in ("graph.json", "tensors.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_failed_save_leaves_nothing(tmp_path):
    g = every_op_graph(quantized=True)
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
    every_op_graph(quantized=True).save(tmp_path / "g")
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
    every_op_graph(quantized=True).save(tmp_path / "g")
    np.savez(tmp_path / "g" / "tensors.npz", **{"d.weight": np.array([object()], dtype=object)})
    with pytest.raises(GraphFileError):
        Graph.load(tmp_path / "g")

"""`npuc explore` and `npuc evaluate` end to end on the digits MLP (small data, few points)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import npuc
from npuc.builddir import BuildDir
from npuc.cli import main
from npuc.demo.models import digits_split
from npuc.sim import simulate

CKPT = str(Path(npuc.demo.__file__).parent / "digits_mlp.pt")
MODEL = "npuc.demo.models:mlp"


@pytest.fixture(scope="module")
def data():
    _, (x, y) = digits_split()
    return x[:160], y[:160]


@pytest.fixture(scope="module")
def graph(data):
    from npuc.driver import load_source

    return load_source(MODEL, CKPT, [data[0][:16]])


def _int_accuracy(build: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy straight from the golden integer engine on the whole set (no chunking)."""
    out = simulate(BuildDir(build).int_graph(), x, "int").outputs[0]
    return float(np.mean(out.argmax(1) == y))


def _stable(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_explore_fpga_front_best_builds_and_resume(tmp_path, data, graph):
    x, y = data
    kw = dict(workers=0, calibration=64, chunk=50, progress=False)
    res = npuc.explore(graph, x, y, "fpga", "weight_bits=3,6,lanes=1,4", tmp_path / "ex", **kw)
    assert [r["status"] for r in res.rows] == ["ok"] * 4
    assert res.costs == ["memory_bits", "latency_us"]
    by = {(r["weight_bits"], r["lanes"]): r for r in res.rows}
    assert by["6", "1"]["memory_bits"] > by["3", "1"]["memory_bits"]  # wider weights, more memory
    assert by["6", "4"]["latency_us"] < by["6", "1"]["latency_us"]  # more lanes, fewer cycles per event
    assert by["6", "1"]["accuracy"] == by["6", "4"]["accuracy"]  # lanes do not change the arithmetic
    assert set(res.front) <= set(range(4)) and res.front
    for objective in ("accuracy", "memory_bits", "latency_us"):
        path = tmp_path / "ex" / f"best-{objective}"
        BuildDir(path).check_unmodified()  # a normal build: `npuc verify` accepts it
    best = res.rows[max(range(4), key=lambda i: (res.rows[i]["accuracy"], -res.rows[i]["memory_bits"]))]
    assert _int_accuracy(tmp_path / "ex" / "best-accuracy", x, y) == pytest.approx(best["accuracy"], abs=1e-5)
    with (tmp_path / "ex" / "explore.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {t["pareto"] for t in table} <= {"0", "1"}
    doc = json.loads((tmp_path / "ex" / "explore.json").read_text())
    assert doc["front"] == [res.rows[i]["id"] for i in res.front]
    assert (tmp_path / "ex" / "pareto.png").stat().st_size > 1000
    again = npuc.explore(graph, x, y, "fpga", "weight_bits=3,6,lanes=1,4", tmp_path / "ex", **kw)
    assert again.measured == 0 and _stable(again.rows) == _stable(res.rows)


def test_refused_points_are_rows_and_loihi2_costs(tmp_path, data, graph):
    x, y = data
    res = npuc.explore(graph, x, y, "loihi2", "weight_bits=1,8,steps=4,neurons_per_core=16,4096,cores_per_chip=2",
                       tmp_path / "ex", workers=0, calibration=64, progress=False)
    assert [r["status"].startswith("refused: ") for r in res.rows] == [True, True, False, False]
    assert "weight_bits=1" in res.rows[0]["status"] and res.rows[0].get("accuracy") is None
    small, big = res.rows[2:]
    assert small["steps"] == "4" and small["num_steps"] == 4 and small["energy_uj"] > 0
    assert small["cores"] >= 74 // 16 + 1 and small["chips"] >= 3 and big["cores"] == 1  # 74 neurons
    assert small["accuracy"] == big["accuracy"]  # the mapping does not change the arithmetic
    assert res.front == [3]


def test_nsga_search_end_to_end(tmp_path, data, graph):
    x, y = data
    res = npuc.explore(graph, x, y, "fpga", "weight_bits=4,6,lanes=1,2", tmp_path / "ex", search="nsga", budget=3,
                       seed=1, workers=0, calibration=32, progress=False)
    points = [(r["weight_bits"], r["lanes"]) for r in res.rows]
    assert len(points) == 3 == len(set(points)) and all(r["status"] == "ok" for r in res.rows)


def test_steps_is_a_knob_of_static_input_models(tmp_path, data, graph):
    x, y = data
    g = graph.copy()
    res = npuc.explore(g, x, y, "fpga", "steps=4", tmp_path / "ex", workers=0, calibration=32, progress=False)
    assert res.rows[0]["status"] == "ok"  # static input: steps are a knob
    assert res.rows[0]["num_steps"] == 4


def test_cli_explore_then_evaluate(tmp_path, data, capsys):
    x, y = data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "ex"
    assert main(["explore", MODEL, "--checkpoint", CKPT, "--data", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--target", "fpga", "--space", "weight_bits=5,lanes=2", "--workers", "0",
                 "--calibration-samples", "64", "--no-progress", "--out", str(out)]) == 0
    assert "Pareto front" in capsys.readouterr().out
    assert main(["evaluate", str(out / "best-accuracy"), "--data", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--workers", "0", "--chunk", "64"]) == 0
    rep = json.loads((out / "best-accuracy" / "report" / "evaluate_fpga_int.json").read_text())
    row = json.loads((out / "explore.json").read_text())["points"][0]
    assert rep["accuracy"] == row["accuracy"] and rep["samples"] == len(y)
    assert rep["spike_rates"] == row["spike_rates"]
    assert np.asarray(rep["confusion"]).sum() == len(y)
    assert (out / "best-accuracy" / "report" / "confusion_fpga_int.png").is_file()
    assert main(["explore", MODEL, "--checkpoint", CKPT, "--data", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--target", "fpga", "--space", "lanes=8..2", "--out", str(out)]) == 2
    assert "range '8..2' is empty" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.mark.slow  # starts worker processes and a LocalCluster (~30 s on 2 shared cores)
def test_cluster_equals_local_processes(tmp_path, data, graph, cluster):
    """A real dask LocalCluster (2 worker processes, reached by its tcp:// address) gives exactly
    the rows, front, builds and evaluation of the local runs."""
    x, y = data
    space, kw = "weight_bits=4,6,lanes=2", dict(calibration=64, chunk=40, progress=False)
    local = npuc.explore(graph, x, y, "fpga", space, tmp_path / "a", workers=2, **kw)
    dask = npuc.explore(graph, x, y, "fpga", space, tmp_path / "b", scheduler=cluster, **kw)
    assert "Dask" in dask.runner and local.runner == "2 local worker processes"
    assert _stable(dask.rows) == _stable(local.rows) and dask.front == local.front
    for name in ("best-accuracy", "best-memory_bits"):
        a, b = (BuildDir(p / name).manifest["files"] for p in (tmp_path / "a", tmp_path / "b"))
        assert a == b  # the same generated files, byte for byte
    ev_local = npuc.evaluate(tmp_path / "a" / "best-accuracy", x, y, chunk=40, workers=0)
    ev_dask = npuc.evaluate(tmp_path / "a" / "best-accuracy", x, y, chunk=40, scheduler=cluster)
    assert ev_local.accuracy == ev_dask.accuracy == max(r["accuracy"] for r in local.rows)
    assert (ev_local.confusion == ev_dask.confusion).all() and ev_local.spike_rates == ev_dask.spike_rates


def test_bad_schedulers():
    """Bad schedulers and worker counts are one-line errors."""
    from npuc.dse.runner import Runner
    from npuc.errors import UserError

    with pytest.raises(UserError, match="local:N"):
        Runner("local:0")
    with pytest.raises(UserError, match="use local:N or tcp://"):
        Runner("nowhere")
    with pytest.raises(UserError, match="--workers"):
        Runner(None, -1)


def _synthesized_point(tmp_path, data, graph, synth: str):
    """One FPGA design point explored with ``synth`` costs: the result and its row."""
    x, y = data
    res = npuc.explore(graph, x, y, "fpga", "weight_bits=4,lanes=1", tmp_path / "ex", workers=0, synth=synth,
                       calibration=64, progress=False)
    return res, res.rows[0]


@pytest.mark.yosys
def test_yosys_costs_are_cached_per_design(tmp_path, data, graph):
    res, row = _synthesized_point(tmp_path, data, graph, "ice40")
    assert res.costs == ["LUT", "latency_us"] and row["LUT"] > 0 and row["FF"] > 0
    cached = json.loads((tmp_path / "ex" / "cache" / "synth.json").read_text())
    assert cached == {f"{row['design_hash']}:ice40": cached[f"{row['design_hash']}:ice40"]}
    assert cached[f"{row['design_hash']}:ice40"]["LUT"] == row["LUT"]


@pytest.mark.rtl
def test_latency_estimate_is_the_report_bound_and_near_the_rtl_cycles(tmp_path, data, graph):
    """The cycles per step explore estimates from integer-engine events equal `npuc report`'s bound
    fed with the events the RTL counted, and stay close to the cycles Verilator measured on the
    sequential top (on the pipelined default the sum of layer bounds is an upper bound: stages
    overlap)."""
    from npuc.backends.rtl import rtl_report, run

    x, y = data
    x, y = x[:6], y[:6]
    res = npuc.explore(graph, x, y, "fpga", "weight_bits=6,lanes=2,pipeline=0", tmp_path / "ex", workers=0, calibration=6,
                       progress=False)
    row = res.rows[0]
    build = tmp_path / "ex" / "best-accuracy"
    sim = run(build / "rtl", x, progress=False)
    rep = rtl_report(BuildDir(build).int_graph(), build / "rtl", sim, yosys=False)
    bound = sum(lay["cycles"]["bound_mean"] for lay in rep["layers"])
    assert row["cycles_per_step"] == pytest.approx(bound, abs=0.01)
    assert 0.8 <= row["cycles_per_step"] / rep["total"]["cycles_per_step"] <= 1.02


@pytest.mark.yosys
def test_ecp5_costs_carry_the_placed_and_routed_fmax(tmp_path, data, graph):
    """synth="ecp5": Yosys + nextpnr per design; the latency is the cycle bound at that Fmax."""
    _, row = _synthesized_point(tmp_path, data, graph, "ecp5")
    assert row["LUT"] > 0 and row["fmax_mhz"] > 0 and row["clock_mhz"] == row["fmax_mhz"]
    assert row["latency_us"] == pytest.approx(row["cycles_per_step"] * row["num_steps"] / row["fmax_mhz"], rel=1e-3)

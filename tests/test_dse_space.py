"""Design spaces, search strategies, Pareto fronts and build bundles (no compilation)."""

from __future__ import annotations

import pytest

from npuc.dse.bundle import pack, unpack
from npuc.dse.pareto import best, front
from npuc.dse.search import make_strategy
from npuc.dse.space import parse_space, point_spec
from npuc.errors import SpaceError, UserError


def test_ranges_lists_and_continuation():
    sp = parse_space("weight_bits=4..6,lanes=1,2,4,steps=8..32/8", "fpga")
    assert sp.kind == "fpga"
    assert sp.knobs == {"weight_bits": ("4", "5", "6"), "lanes": ("1", "2", "4"), "steps": ("8", "16", "24", "32")}
    assert sp.size == 36
    grid = sp.grid()
    assert len(grid) == 36 and grid[0] == {"weight_bits": "4", "lanes": "1", "steps": "8"}
    assert grid[1]["steps"] == "16"  # the last knob varies fastest


@pytest.mark.parametrize("text, message", [
    ("foo=1", "unknown knob 'foo'"),
    ("weight_bits=8..4", "range '8..4' is empty"),
    ("weight_bits=4..x", "must be integers"),
    ("lanes=1,,2", "empty item"),
    ("1,2", "before any knob"),
    ("lanes=1,lanes=2", "given twice"),
    ("lanes=2,2", "repeats a value"),
    ("steps=0", "steps must be positive"),
    ("quantize.nope=1", "unknown knob 'quantize.nope'"),
    ("quantize.percentile=abc", "is not a float"),
    ("map-cores.order=tiled", "unknown knob"),  # the fpga pipeline has no map-cores
])
def test_bad_spaces_are_one_line_errors(text, message):
    with pytest.raises(SpaceError, match=message) as e:
        parse_space(text, "fpga")
    assert "\n" not in str(e.value)
    assert isinstance(e.value, UserError)


def test_loihi2_knobs_include_its_own_options_and_passes():
    sp = parse_space("stock_only=0,1,map-cores.order=tiled,chw,weight_exp_max=0,7", "loihi2")
    assert sp.size == 8
    spec, pipeline, steps = point_spec(sp, {"stock_only": "1", "map-cores.order": "chw", "weight_exp_max": "0"})
    assert spec == "loihi2:stock_only=1,weight_exp_max=0"
    assert "map-cores{order=chw}" in pipeline and steps is None


def test_point_spec_merges_target_overrides_and_pass_options():
    sp = parse_space("lanes=1,2,quantize.percentile=99.9,steps=4", "fpga:lanes=8,clock_mhz=50")
    spec, pipeline, steps = point_spec(sp, {"lanes": "2", "quantize.percentile": "99.9", "steps": "4"})
    assert spec == "fpga:clock_mhz=50,lanes=2"  # the point's lanes replace the base spec's
    assert pipeline == "fold-batchnorm,legalize,quantize{percentile=99.9}"
    assert steps == 4


def test_strategies():
    sp = parse_space("weight_bits=4..7,lanes=1,2,4", "fpga")
    assert make_strategy("grid", sp, None, 0, 3).points == sp.grid()
    assert len(make_strategy("grid", sp, 5, 0, 3).points) == 5
    r1 = make_strategy("random", sp, 5, 7, 3).points
    assert r1 == make_strategy("random", sp, 5, 7, 3).points and len({tuple(p.values()) for p in r1}) == 5
    with pytest.raises(SpaceError, match="needs --budget"):
        make_strategy("random", sp, None, 0, 3)
    with pytest.raises(SpaceError, match="at least 1"):
        make_strategy("grid", sp, 0, 0, 3)


def _nsga_points(seed: int) -> list[tuple[str, ...]]:
    sp = parse_space("weight_bits=4..7,lanes=1,2,4", "fpga")
    s = make_strategy("nsga", sp, 10, seed, 2)
    seen = []
    for batch in s.batches():
        seen += [tuple(p.values()) for p in batch]
        # a made-up cost: accuracy grows with weight bits, cost with bits and lanes; one refused point
        s.tell([(p, None if p["lanes"] == "4" and p["weight_bits"] == "4" else
                 [-int(p["weight_bits"]), int(p["weight_bits"]) * int(p["lanes"])]) for p in batch])
    return seen


def test_nsga_is_deterministic_and_never_repeats_a_point():
    a = _nsga_points(3)
    assert a == _nsga_points(3)
    assert len(a) == 10 and len(set(a)) == 10


def test_pareto_front_and_best():
    rows = [
        {"accuracy": 0.90, "LUT": 100, "lat": 5.0},
        {"accuracy": 0.95, "LUT": 200, "lat": 5.0},
        {"accuracy": 0.95, "LUT": 250, "lat": 5.0},   # dominated by the previous row
        {"accuracy": 0.80, "LUT": 50, "lat": 9.0},
        {"accuracy": 0.70, "LUT": 60, "lat": 9.0},    # dominated by the previous row
        {"accuracy": None, "LUT": 10, "lat": 1.0},    # refused: never on the front
        {"accuracy": 0.85, "LUT": 300, "lat": 1.0},
    ]
    assert front(rows, ["LUT", "lat"]) == [0, 1, 3, 6]
    assert front(rows, ["LUT"]) == [0, 1, 3]
    assert best(rows, "accuracy", ["LUT", "lat"], None) == 1
    assert best(rows, "LUT", ["LUT", "lat"], 0.9) == 0
    assert best(rows, "LUT", ["LUT", "lat"], None) == 3
    assert best(rows, "lat", ["LUT", "lat"], 0.9) == 1  # a tie on latency goes to the higher accuracy
    assert best(rows, "lat", ["LUT", "lat"], 0.99) is None


def test_bundles_are_deterministic_and_round_trip(tmp_path):
    src = tmp_path / "b"
    (src / "rtl" / "mem").mkdir(parents=True)
    (src / "manifest.json").write_text("{}")
    (src / "rtl" / "mem" / "w.hex").write_text("0f\n")
    data = pack(src)
    (src / "manifest.json").touch()  # a newer time stamp does not change the bundle
    assert pack(src) == data
    out = unpack(data, tmp_path / "c")
    assert (out / "rtl" / "mem" / "w.hex").read_text() == "0f\n"
    assert sorted(p.name for p in out.rglob("*")) == sorted(p.name for p in src.rglob("*"))

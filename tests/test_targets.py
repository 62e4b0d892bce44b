"""Target descriptions: kinds, options, pipelines; every bad override is a TargetError naming it."""

import json
from importlib import resources

import pytest

from npuc.backends import engines, for_kind, registry
from npuc.passes import PassError, parse_pipeline, pipeline_text
from npuc.pipeline import target_passes
from npuc.targets import TargetError, load_target


def test_overrides_apply():
    t = load_target("fpga:weight_bits=6,state_bits=12,lanes=4")
    assert (t.profile.weight_bits, t.profile.u_bits, t.profile.v_bits, t.options["lanes"]) == (6, 12, 12, 4)
    assert load_target("fpga").profile.weight_bits == 8
    assert load_target("fpga:spike_types=binary+ternary").profile.spike_types == ("binary", "ternary")
    assert load_target("fpga:spike_types=binary").profile.spike_types == ("binary",)


@pytest.mark.parametrize("spec, message", [
    ("fpga:weight_bits=0", "field 'weight_bits': 0 is below the minimum 1"),
    ("fpga:weight_bits=abc", "expected an integer, got 'abc'"),
    ("fpga:bogus=1", "has no option 'bogus'"),
    ("fpga:weight_bits", "must look like key=value"),
    ("fpga:weight_bits=6,weight_bits=7", "'weight_bits' is given twice"),
    ("fpga:rounding=bogus", "'bogus' is not one of"),
    ("fpga:lanes=0", "option 'lanes': '0' must be an integer >= 1"),
    ("fpga:lanes=2.5", "option 'lanes': '2.5' must be an integer >= 1"),
    ("fpga:clock_mhz=-3", "option 'clock_mhz': '-3' must be a number > 0"),
    ("fpga:spike_types=binary+bogus", "'bogus' is not one of"),
    ("loihi2:lanes=4", "target 'loihi2' (kind loihi2) has no option 'lanes'"),
    ("nope", "unknown target 'nope'"),
])
def test_bad_overrides_are_named(spec, message):
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_target(spec)


@pytest.mark.parametrize("doc, message", [
    ([1, 2], "is a JSON object, got list"),
    ({"kind": "fpga"}, "field 'name' (text) is missing"),
    ({"name": "x"}, "field 'kind' must name the backend"),
    ({"name": "x", "kind": "gpu"}, "no backend for target kind 'gpu'"),
    ({"name": "x", "kind": "fpga", "profile": []}, "field 'profile' must be an object"),
    ({"name": "x", "kind": "fpga", "profile": {"name": "x"}, "options": {"turbo": 1}}, "unknown option 'turbo'"),
    ({"name": "x", "kind": "fpga", "profile": {"name": "x"}, "pipeline": 3}, "field 'pipeline' must be text"),
])
def test_bad_target_files_are_named(tmp_path, doc, message):
    f = tmp_path / "t.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_target(str(f))


def test_registry_knows_both_kinds():
    assert set(registry()) >= {"loihi2", "fpga"}
    assert engines()[:2] == ["lava", "rtl"]
    assert for_kind("fpga").folder == "rtl" and for_kind("loihi2").engine == "lava"
    assert load_target("loihi2").kind == "loihi2" and load_target("fpga").kind == "fpga"


def test_target_file_carries_its_pipeline_with_options(tmp_path):
    doc = json.loads((resources.files("npuc.targets") / "loihi2.json").read_text())
    doc["name"] = "loihi2-chw"
    doc["pipeline"] = "fold-batchnorm,legalize,quantize{percentile=99.9},map-cores{order=chw,tile=auto},place-cores"
    f = tmp_path / "l.json"
    f.write_text(json.dumps(doc))
    t = load_target(str(f))
    passes = target_passes(t)
    assert [p.name for p in passes] == ["fold-batchnorm", "legalize", "quantize", "map-cores", "place-cores"]
    assert passes[2].percentile == 99.9 and passes[3].order == "chw" and passes[3].tile is None
    # the command line's pipeline wins over the file's
    assert [p.name for p in target_passes(t, "fold-batchnorm,legalize,quantize")] == ["fold-batchnorm", "legalize",
                                                                                        "quantize"]
    assert [p.name for p in target_passes(load_target("fpga"))] == ["fold-batchnorm", "legalize", "quantize"]


def test_pipeline_text_round_trips():
    text = "fold-batchnorm,legalize,quantize{percentile=99.9,max_samples=64},map-cores{order=chw,tile=8x8},place-cores{moves=0,time_budget=none}"
    passes = parse_pipeline(text)
    assert pipeline_text(passes) == text
    assert passes[3].tile == (8, 8) and passes[4].time_budget is None and passes[4].moves == 0


@pytest.mark.parametrize("text, message", [
    ("fold,legalize", "unknown pass 'fold'"),
    ("legalize;quantize", "expected ',' after 'legalize'"),
    ("quantize{percentile=abc}", "option percentile='abc' is not a float"),
    ("map-cores{colour=red}", "pass 'map-cores' has no option 'colour'"),
    ("map-cores{order}", "option 'order' must look like key=value"),
    ("place-cores{moves=1.5}", "option moves='1.5' is not a"),
    ("", "empty pipeline"),
])
def test_bad_pipelines_are_named(text, message):
    with pytest.raises(PassError, match=message):
        parse_pipeline(text)

"""Target descriptions: overrides apply, and every bad override is a TargetError naming it."""

import pytest

from npuc.targets import TargetError, load_target


def test_overrides_apply():
    t = load_target("fpga:weight_bits=6,state_bits=12,lanes=4")
    assert (t.profile.weight_bits, t.profile.u_bits, t.profile.v_bits, t.fpga["lanes"]) == (6, 12, 12, 4)
    assert load_target("fpga").profile.weight_bits == 8


@pytest.mark.parametrize("spec, message", [
    ("fpga:weight_bits=0", "field 'weight_bits': 0 is below the minimum 1"),
    ("fpga:weight_bits=abc", "expected an integer, got 'abc'"),
    ("fpga:bogus=1", "has no option 'bogus'"),
    ("fpga:weight_bits", "must look like key=value"),
    ("fpga:weight_bits=6,weight_bits=7", "'weight_bits' is given twice"),
    ("fpga:rounding=bogus", "'bogus' is not one of"),
    ("fpga:lanes=0", "field 'lanes': 0 must be an integer >= 1"),
    ("fpga:lanes=2.5", "field 'lanes': '2.5' must be an integer >= 1"),
    ("nope", "unknown target 'nope'"),
])
def test_bad_overrides_are_named(spec, message):
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_target(spec)

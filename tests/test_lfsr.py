"""LFSR streams: maximal period, exact sequence, independence of different polynomials."""

import pytest
from reference import lfsr_states

from npuc.sim import lfsr


@pytest.mark.parametrize("width", [3, 4, 5, 7, 9, 11])
def test_primitive_taps_have_full_period(width):
    for k in range(2):
        taps = lfsr.primitive_taps(width, k)
        seq = lfsr_states(width, taps, 1, 2**width - 1)
        assert sorted(seq) == list(range(1, 2**width))  # every nonzero state once: period 2^w - 1
    assert lfsr.primitive_taps(width, 0) != lfsr.primitive_taps(width, 1)


def test_non_maximal_taps_are_rejected():
    assert not lfsr.is_maximal(0b1111, 4)  # x^4+x^3+x^2+x+1 has period 5
    assert lfsr.is_maximal(0b1001, 4)


@pytest.mark.parametrize("width, seed, count", [(8, 1, 1000), (16, 12345, 70_001), (24, 7, 5000)])
def test_vectorized_stream_equals_scalar_register(width, seed, count):
    taps = lfsr.primitive_taps(width)
    assert lfsr.stream(width, seed, count).tolist() == lfsr_states(width, taps, seed, count)


def test_independent_polynomials_multiply_probabilities():
    """AND of streams from different primitive polynomials estimates p1*p2 (DESIGN.md section 6)."""
    n, w = 1 << 14, 16
    M = (1 << w) - 1
    a = lfsr.stream(w, 1, n, lfsr.primitive_taps(w, 0)) <= int(0.7 * M)
    b = lfsr.stream(w, 1, n, lfsr.primitive_taps(w, 3)) <= int(0.4 * M)
    same = lfsr.stream(w, 1, n, lfsr.primitive_taps(w, 0)) <= int(0.4 * M)
    assert abs((a & b).mean() - 0.28) < 0.03
    assert abs((a & same).mean() - 0.4) < 0.01  # one shared LFSR gives min(p1, p2), not the product


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        lfsr.stream(8, 0, 10)

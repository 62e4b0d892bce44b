"""Stochastic computing with npuc's LFSR streams (DESIGN.md section 6): the AND of two
independent Bernoulli streams estimates ``p1 p2`` with the binomial variance
``p (1 - p) / T``; streams from one shared LFSR estimate ``min(p1, p2)`` and fail that
test visibly. The streams are `npuc.sim.lfsr.step`'s, as the engines and the RTL use them;
the statistics are computed here."""

from __future__ import annotations

import numpy as np

from npuc.sim import lfsr

BITS, M = 16, (1 << 16) - 1
PAIRS, T, STRIDE = 400, 256, 16


def and_estimates(shared: bool, same_poly: bool = False, seed: int = 0):
    """Per pair: ``(estimate of p1 p2 after T samples, p1, p2)``. Each stream advances
    ``STRIDE`` LFSR steps per sample (as `StochasticAttention` does for a 4x4 score matrix)."""
    rng = np.random.default_rng(seed)
    q1 = np.floor(rng.random(PAIRS) * M + 0.5).astype(np.uint64)
    q2 = np.floor(rng.random(PAIRS) * M + 0.5).astype(np.uint64)
    s1, s2 = (rng.integers(1, M + 1, PAIRS).astype(np.uint64) for _ in range(2))
    ta = lfsr.primitive_taps(BITS, 0)
    tb = ta if same_poly else lfsr.primitive_taps(BITS, 1)
    assert ta != tb or same_poly
    hits = np.zeros(PAIRS)
    for _ in range(T):
        for _ in range(STRIDE):
            s1 = lfsr.step(s1, ta, BITS)
            s2 = s1 if shared else lfsr.step(s2, tb, BITS)
        assert np.all((s1 >= 1) & (s1 <= M))  # an LFSR never reaches 0
        hits += (s1 <= q1) & (s2 <= q2)
    return hits / T, q1 / M, q2 / M


def normalized_variance(est, p1, p2) -> float:
    """Mean of ``(est - p)^2 / (p (1 - p) / T)``: 1 for independent Bernoulli streams."""
    p = p1 * p2
    return float(np.mean((est - p) ** 2 / (p * (1 - p) / T)))


def test_independent_streams_have_binomial_variance():
    est, p1, p2 = and_estimates(shared=False)
    z2 = normalized_variance(est, p1, p2)
    # the mean of 400 chi-square(1)-like terms: 1 +- 0.07 (one sigma)
    assert 0.75 < z2 < 1.3, z2
    assert abs(float(np.mean(est - p1 * p2))) < 0.01  # unbiased


def test_same_polynomial_with_random_seeds_is_independent_enough():
    est, p1, p2 = and_estimates(shared=False, same_poly=True, seed=1)
    assert 0.7 < normalized_variance(est, p1, p2) < 1.4


def test_one_shared_lfsr_estimates_the_minimum():
    est, p1, p2 = and_estimates(shared=True)
    assert normalized_variance(est, p1, p2) > 10  # fails the binomial test by far
    assert np.max(np.abs(est - np.minimum(p1, p2))) < 0.15  # AND of nested events: min(p1, p2)
    assert np.mean(np.abs(est - p1 * p2)) > 0.05  # E|min(p1, p2) - p1 p2| = 1/12 for uniform p

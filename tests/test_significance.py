"""The paired randomization test the recipe's choice rests on (common/significance.py)."""

import itertools

import numpy as np
import pytest

from common.significance import ALPHA, paired_test


def test_no_change_is_not_beyond_noise_and_a_steady_gain_is():
    base = np.linspace(0.2, 0.9, 30)
    same = paired_test(base, base)
    assert same.change == 0 and not same.beyond_noise
    steady = paired_test(base + 0.01, base)  # every query one point better
    assert steady.beyond_noise and steady.p_value == pytest.approx(1 / 10_001)
    assert not paired_test(base - 0.01, base).beyond_noise  # one-sided: a fall is no gain


def test_the_p_value_is_the_exact_sign_flip_one_on_a_few_queries():
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.05, 0.2, size=10)
    exact = np.mean(
        [
            np.mean(np.array(signs) * diffs) >= diffs.mean() - 1e-12
            for signs in itertools.product((-1, 1), repeat=10)
        ]
    )
    got = paired_test(diffs, np.zeros(10), rounds=100_000).p_value
    assert got == pytest.approx(exact, abs=0.005)


def test_a_point_on_forty_noisy_queries_is_noise_and_resolves_says_how_much_would_not_be():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.8, size=40)
    noise = rng.normal(0, 0.2, size=40)
    noise -= noise.mean()  # the made-up candidate gains exactly one point on average
    result = paired_test(base + 0.01 + noise, base)
    assert result.change == pytest.approx(0.01) and not result.beyond_noise
    assert 0.04 < result.resolves < 0.07  # forty queries moving ±0.2 resolve about five points
    big = paired_test(base + result.resolves + 0.01 + noise, base)
    assert big.beyond_noise  # a change beyond what they resolve is called


def test_a_fall_beyond_the_bound_against_one_within_it():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.8, size=200)
    noise = rng.normal(0, 0.05, size=200)
    noise -= noise.mean()
    fell = paired_test(base - 0.03 + noise, base, shift=-0.005, larger=False)
    assert fell.beyond_noise and fell.change == pytest.approx(-0.03)
    within = paired_test(base - 0.004 + noise, base, shift=-0.005, larger=False)
    assert not within.beyond_noise
    assert within.p_value > ALPHA and fell.p_value <= ALPHA


def test_the_same_seed_gives_the_same_answer_and_lengths_must_match():
    a, b = np.random.default_rng(4).uniform(size=(2, 50))
    assert paired_test(a, b) == paired_test(a, b)
    with pytest.raises(ValueError):
        paired_test(a, b[:-1])

"""Is a difference between two systems on the same queries beyond noise? A paired randomization test over
per-query scores (Fisher's sign-flip test; Smucker, Allan and Carterette 2007 found it, the bootstrap and the
t-test agree on IR metrics, and it assumes no distribution).

With the per-query differences d_i = candidate_i − base_i and a shift s (0: "any change"; −0.005: "a fall of
more than half a point"), the null hypothesis is that each d_i − s is as likely to have had the other sign.
The one-sided p-value is the share of random sign flips whose mean is at least as far out as the observed
mean (``larger``: above it; else below it), counted as (1 + hits) / (1 + rounds) so it is never 0::

    paired_test(tuned, base)                           # did it gain? p small: beyond noise
    paired_test(tuned, base, shift=-0.005, larger=False)   # did it fall more than half a point?

``resolves`` is what the queries can tell apart from noise at all: how far beyond the shift the mean change
must lie for the test to call it significant at ``ALPHA``, from the spread of these differences (the
sign-flip null's standard error, √Σ(d_i − s)² / n, times the normal quantile). 40 queries whose nDCG@10
moves ±0.2 each cannot resolve less than about 5 points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # one-sided: a gain (or a fall) called beyond noise is wrong once in 20 where there is none
ROUNDS = 10_000
Z = 1.6449  # the normal quantile of 1 − ALPHA


@dataclass(frozen=True)
class Paired:
    """One paired test: how many queries, the mean change (candidate − base), its one-sided p-value, and the
    smallest change these queries resolve."""

    queries: int
    change: float
    p_value: float
    resolves: float

    @property
    def beyond_noise(self) -> bool:
        return self.p_value <= ALPHA

    def as_record(self) -> dict:
        return {
            "queries": self.queries,
            "change": round(self.change, 4),
            "p": round(self.p_value, 4),
            "resolves": round(self.resolves, 4),
        }


def p_text(p: float) -> str:
    """A p-value as a report prints it: two significant places, or below the test's resolution."""
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}" if p < 0.01 else f"p {p:.2f}"


def paired_test(
    candidate, base, *, shift: float = 0.0, larger: bool = True, seed: int = 0, rounds: int = ROUNDS
) -> Paired:
    """The sign-flip test of ``candidate`` against ``base`` (per-query scores, the same queries in the same
    order): one-sided, for a mean change above ``shift`` (``larger``) or below it."""
    candidate, base = np.asarray(candidate, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if candidate.shape != base.shape or candidate.ndim != 1:
        raise ValueError(
            f"paired scores must be two equally long lists, not {candidate.shape} and {base.shape}"
        )
    n = len(candidate)
    if n == 0:
        return Paired(0, 0.0, 1.0, float("inf"))
    centred = candidate - base - shift
    observed = centred.mean()
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < rounds:  # in blocks, so a few thousand queries stay a few MB
        block = min(1000, rounds - done)
        flipped = (rng.integers(0, 2, size=(block, n)) * 2 - 1) @ centred / n
        hits += int(np.sum(flipped >= observed - 1e-12) if larger else np.sum(flipped <= observed + 1e-12))
        done += block
    resolves = Z * float(np.sqrt(np.sum(centred**2))) / n
    return Paired(n, float(candidate.mean() - base.mean()), (1 + hits) / (1 + rounds), resolves)

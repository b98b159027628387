"""The unbiased pass@k estimator, maj@k, and bootstrap confidence intervals over problems.

`pass_at_k(n, c, k)` is rho(n, c, k) = 1 - C(n-c, k) / C(n, k); `summarize(counts, ks)` gives the
per-k estimate and CI that `pope-eval pass-at-k` reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pope_eval.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct)
    is correct. Product form 1 - prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials, accurate to
    float precision for any n (tested to n = 10,000)."""
    if n < 1:
        raise ConfigError(f"pass@k: n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ConfigError(f"pass@k: correct count c = {c} must be between 0 and n = {n}")
    if k < 1:
        raise ConfigError(f"pass@k: k must be >= 1, got {k}")
    if k > n:
        raise ConfigError(f"pass@k: k = {k} is larger than the n = {n} samples drawn; k must be <= n")
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)
    return float(1.0 - np.exp(np.sum(np.log1p(-k / i))))


def default_ks(n: int) -> list[int]:
    """Powers of two up to n, plus n itself when it is not one."""
    ks = [1 << e for e in range(n.bit_length()) if (1 << e) <= n]
    if ks[-1] != n:
        ks.append(n)
    return ks


def bootstrap_ci(
    values: Sequence[float], *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of the mean, resampling problems with replacement (seeded)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def summarize(
    counts: Sequence[tuple[int, int]], ks: Sequence[int], *, n_boot: int = 1000,
    alpha: float = 0.05, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{str(k): {estimate, ci_low, ci_high}} over problems given (n, c) per problem."""
    out: dict[str, dict[str, float]] = {}
    for k in ks:
        per = [pass_at_k(n, c, k) for n, c in counts]
        lo, hi = bootstrap_ci(per, n_boot=n_boot, alpha=alpha, seed=seed)
        out[str(k)] = {"estimate": float(np.mean(per)) if per else float("nan"),
                       "ci_low": lo, "ci_high": hi}
    return out


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> bool:
    """Majority vote over the first k samples' extracted answers (None = no answer, no vote).
    Ties go to the answer seen first. The vote is correct when that answer's samples were."""
    first = list(zip(answers[:k], correct[:k]))
    votes = Counter(a for a, _ in first if a is not None)
    if not votes:
        return False
    best = max(votes.values())
    for a, ok in first:
        if a is not None and votes[a] == best:
            return bool(ok)
    return False  # pragma: no cover


def maj_at_k(
    answers: Sequence[Sequence[str | None]], correct: Sequence[Sequence[bool]], k: int
) -> float:
    """Mean over problems of `majority_correct` on the first k samples."""
    if not answers:
        return float("nan")
    return float(np.mean([majority_correct(a, c, k) for a, c in zip(answers, correct)]))

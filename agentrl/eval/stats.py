"""Statistics of an evaluation: Wilson intervals, pass@k, pass^k, paired bootstrap."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from agentrl.errors import ConfigError

__all__ = ["wilson", "pass_at_k", "pass_hat_k", "paired_bootstrap"]

_Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a success rate (95% by default); (0, 1) when ``n == 0``."""
    if n < 0 or not 0 <= successes <= n:
        raise ConfigError(f"wilson: need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ConfigError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with ``c`` successes in ``n`` samples (Chen et al. 2021):
    the chance that at least one of ``k`` samples drawn without replacement succeeds."""
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k of one task (tau-bench): the chance that *all* ``k`` samples drawn without
    replacement succeed, ``C(c, k) / C(n, k)`` (consistency, not luck)."""
    _check(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], *, resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float, int]:
    """Difference of means ``B - A`` over the tasks both runs have, with a paired bootstrap
    percentile interval: (difference, low, high, tasks paired)."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return 0.0, 0.0, 0.0, 0
    diffs: Sequence[float] = [b[k] - a[k] for k in keys]
    n = len(diffs)
    mean = sum(diffs) / n
    rng = random.Random(seed)
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = stats[int((1 - level) / 2 * resamples)]
    hi = stats[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return mean, lo, hi, n

"""Statistics of a comparison: summaries, paired differences, t intervals, sign test.

Written with NumPy and `math` here because none of the kept libraries has them:
SciPy is not a dependency, and Student's t distribution for whole degrees of
freedom and the exact two-sided sign test are a few lines each.

The interval of a mean paired difference is Student's t interval. A
percentile bootstrap over seeds (what this module used before) covers far
less than its nominal level at the seed counts comparisons use: about 50 % at
2 seeds, 75 % at 3 and 85 % at 5 for a nominal 95 % (normal differences).
"""

import math

import numpy as np


def summary(values):
    """`{"n", "median", "mean", "std", "runs"}` of a list of numbers (std: sample, ddof=1;
    None from one number: no spread to measure).

    A `None` (a NaN as `metrics.json` writes it) counts as NaN.
    """
    values = [math.nan if v is None else float(v) for v in values]
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "median": float(np.median(array)) if values else None,
        "mean": float(np.mean(array)) if values else None,
        "std": float(np.std(array, ddof=1)) if len(values) > 1 else None,
        "runs": values,
    }


def t_within(t, df):
    """P(|T| ≤ t) for Student's T with `df` (a whole number ≥ 1) degrees of freedom.

    The closed form for whole degrees of freedom (Abramowitz & Stegun 26.7.3–4).
    """
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: 2/π (θ + sin θ cos θ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + …))
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        series = math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0
        return 2 / math.pi * (theta + series)
    total, term = 0.0, 1.0  # even: sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + …)
    for k in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


def t_quantile(level, df):
    """The t with P(|T| ≤ t) = `level` (e.g. 12.706 for 0.95 and 1 degree of freedom)."""
    low, high = 0.0, 1.0
    while t_within(high, df) < level:
        high *= 2
    for _ in range(200):  # bisection to float precision
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if t_within(middle, df) < level else (low, middle)
    return high


def t_interval(differences, level=0.95):
    """Student's t interval of the mean of `differences` (one per seed).

    Returns:
        `(low, high)`, or `(None, None)` with fewer than two differences (no
        spread to judge from).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return (None, None)
    half = t_quantile(level, d.size - 1) * float(np.std(d, ddof=1)) / math.sqrt(d.size)
    mean = float(np.mean(d))
    return (mean - half, mean + half)


def sign_test(differences):
    """Exact two-sided sign test p-value of `differences` (zeros and NaN dropped)."""
    d = [x for x in differences if x != 0 and not math.isnan(x)]
    n = len(d)
    if n == 0:
        return 1.0
    k = min(sum(x > 0 for x in d), sum(x < 0 for x in d))
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(values, baseline):
    """The paired comparison of `values` against `baseline`, both {seed: metric}.

    Returns:
        `{"seeds", "differences", "mean_difference", "ci95", "sign_test_p",
        "better", "equal", "worse", "not_finite"}`. The differences, their
        mean and interval are over the seeds both have with finite metrics;
        `not_finite` lists the others (a diverged run, NaN: no difference to
        measure). The signs — better / equal / worse and the sign test — are
        over every seed both have: a diverged run is worse than a finite one,
        and two diverged runs are equal.
    """
    common = sorted(set(values) & set(baseline))
    finite = [s for s in common if math.isfinite(values[s]) and math.isfinite(baseline[s])]
    differences = [float(values[s]) - float(baseline[s]) for s in finite]

    def sign(seed):
        a, b = (-math.inf if math.isnan(v) else float(v) for v in (values[seed], baseline[seed]))
        return (a > b) - (a < b)

    signs = [sign(s) for s in common]
    low, high = t_interval(differences)
    return {
        "seeds": finite,
        "differences": differences,
        "mean_difference": float(np.mean(differences)) if differences else None,
        "ci95": [low, high],
        "sign_test_p": sign_test(signs),
        "better": signs.count(1),
        "equal": signs.count(0),
        "worse": signs.count(-1),
        "not_finite": [s for s in common if s not in finite],
    }

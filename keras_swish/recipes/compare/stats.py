"""Statistics of a comparison: summaries, paired differences, bootstrap intervals, sign test.

Written with NumPy here because none of the kept libraries has them in this
form: SciPy is not a dependency, and the paired bootstrap over seeds and the
exact two-sided sign test are a few lines each.
"""

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same runs give the same interval


def summary(values):
    """`{"n", "median", "mean", "std", "runs"}` of a list of numbers (std: sample, ddof=1)."""
    values = [float(v) for v in values]
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "median": float(np.median(array)) if values else None,
        "mean": float(np.mean(array)) if values else None,
        "std": float(np.std(array, ddof=1)) if len(values) > 1 else 0.0,
        "runs": values,
    }


def bootstrap_interval(differences, level=0.95, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """Percentile bootstrap interval of the mean of `differences` (resampling seeds).

    Returns:
        `(low, high)`; both equal the one difference when there is only one.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return (None, None)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def sign_test(differences):
    """Exact two-sided sign test p-value of `differences` (zeros dropped)."""
    d = [x for x in differences if x != 0]
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
        "better", "equal", "worse"}` over the seeds both have.
    """
    seeds = sorted(set(values) & set(baseline))
    differences = [float(values[s]) - float(baseline[s]) for s in seeds]
    low, high = bootstrap_interval(differences)
    return {
        "seeds": seeds,
        "differences": differences,
        "mean_difference": float(np.mean(differences)) if differences else None,
        "ci95": [low, high],
        "sign_test_p": sign_test(differences),
        "better": sum(d > 0 for d in differences),
        "equal": sum(d == 0 for d in differences),
        "worse": sum(d < 0 for d in differences),
    }

"""`benchmarks/activation_speed.py`'s timing loop and number format.

No timing is asserted: the calls are stand-ins that count what the loop does.
"""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def speed():
    path = os.path.join(ROOT, "benchmarks", "activation_speed.py")
    spec = importlib.util.spec_from_file_location("activation_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("per_sample", [1, 25])
def test_a_sample_is_calls_back_to_back_and_one_wait(speed, per_sample):
    log = []

    def call(name):
        log.append(name)
        return name

    def sync(out):
        log.append(f"sync {out}")
        return out

    calls = {"a": lambda: call("a"), "b": lambda: call("b")}
    ms, cold, faults = speed.time_calls(calls, sync, rounds=2, per_round=3, per_sample=per_sample)
    assert set(ms) == set(cold) == set(faults) == {"a", "b"}
    warm_up = ["a", "sync a", "a", "sync a", "b", "sync b", "b", "sync b"]
    assert log[: len(warm_up)] == warm_up
    timed = log[len(warm_up) :]
    sample_a = ["a"] * per_sample + ["sync a"]
    sample_b = ["b"] * per_sample + ["sync b"]
    # 2 rounds; in each, 3 samples of a, then 3 of b (the rows take turns).
    assert timed == (sample_a * 3 + sample_b * 3) * 2
    assert all(value >= 0 for value in [*ms.values(), *faults.values()])


def test_times_keep_three_significant_digits(speed):
    assert speed.ms_text(0.0123, 8) == "   0.012"
    assert speed.ms_text(2.346, 6) == "  2.35"
    assert speed.ms_text(13.27, 6) == "  13.3"
    assert speed.ms_text(1.5, 0) == "1.50"

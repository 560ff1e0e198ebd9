"""The search controller: learning, the EMA baseline, rewards in any order, resuming, bad input."""

import json
import math
import os

import keras
import numpy as np
import pytest

from keras_swish import files as files_module
from keras_swish.recipes.search import controller as controller_module
from keras_swish.recipes.search.controller import Controller

UNARY = [f"u{i}" for i in range(25)]
BINARY = [f"b{i}" for i in range(10)]
ONE_UNIT = [
    ("input", ["x"]),
    ("input", ["x"]),
    ("unary", UNARY),
    ("unary", UNARY),
    ("binary", BINARY),
]
PLANTED = [0, 0, 7, 19, 3]


def two_units():
    """10 steps: unit 0's inputs have one choice (x), unit 1's two (x, unit 0)."""
    steps = []
    for i in range(2):
        steps += [("input", list(range(i + 1)))] * 2 + [("unary", UNARY)] * 2 + [("binary", BINARY)]
    return steps


def reward(tokens):
    """1.0 for the planted unary-unary-binary, 0.4 / 0.7 for one / two parts right, else 0.1."""
    return 0.1 + 0.3 * sum(a == b for a, b in zip(tokens[2:], PLANTED[2:], strict=True))


def test_learns_a_planted_candidate_from_rewards_that_arrive_out_of_order():
    controller = Controller(ONE_UNIT, seed=0)  # the paper-derived defaults
    start = controller.probability(PLANTED)
    assert 0.5 / 6250 < start < 2 / 6250  # near uniform over 25 * 25 * 10 candidates
    rng = np.random.default_rng(0)
    in_flight = []  # four workers; whichever finishes first reports first
    num_rewards = 0
    while controller.probability(PLANTED) <= 0.2:
        assert num_rewards < 1000, controller.probability(PLANTED)
        in_flight += controller.sample()
        if len(in_flight) == 4:
            tokens, logprob = in_flight.pop(rng.integers(4))
            controller.record(tokens, logprob, reward(tokens))
            num_rewards += 1
    assert controller.probability(PLANTED) / start > 1000
    assert controller.num_updates == num_rewards // 8
    counts = {}
    for tokens, _ in controller.sample(100):
        counts[tuple(tokens)] = counts.get(tuple(tokens), 0) + 1
    assert max(counts, key=counts.get) == tuple(PLANTED)


def test_samples_are_valid_and_probabilities_sum_to_one():
    controller = Controller(two_units(), seed=1)
    for tokens, logprob in controller.sample(50):
        assert tokens[:2] == [0, 0] and tokens[5] in (0, 1) and tokens[6] in (0, 1)
        assert all(0 <= k < len(c) for k, (_, c) in zip(tokens, controller.steps, strict=True))
        assert logprob == pytest.approx(controller.logprob(tokens), abs=1e-5)

    tiny = Controller([("a", ["x"]), ("b", [0, 1, 2]), ("c", [0, 1])], seed=0)
    total = sum(tiny.probability([0, b, c]) for b in range(3) for c in range(2))
    assert total == pytest.approx(1.0, abs=1e-5)  # a single-choice step has probability 1


def test_baseline_is_the_exponential_moving_average_of_rewards():
    controller = Controller(ONE_UNIT, batch_size=100, baseline_decay=0.9)
    rewards = [0.5, 0.9, 0.1, 0.7]
    for (tokens, logprob), r in zip(controller.sample(4), rewards, strict=True):
        assert controller.record(tokens, logprob, r) is None  # no update before 100
    b1 = 0.5
    b2 = 0.9 * b1 + 0.1 * 0.9
    b3 = 0.9 * b2 + 0.1 * 0.1
    b4 = 0.9 * b3 + 0.1 * 0.7
    assert controller.baseline == pytest.approx(b4, abs=1e-12)
    advantages = [b["advantage"] for b in controller.get_state()["buffer"]]
    # Each reward against the baseline of the rewards before it; the first has none.
    assert advantages == pytest.approx([0.0, 0.9 - b1, 0.1 - b2, 0.7 - b3], abs=1e-12)


def test_rewards_in_any_order_and_from_before_an_update():
    controller = Controller(ONE_UNIT, learning_rate=0.01, batch_size=8, seed=2)
    samples = controller.sample(16)
    order = np.random.default_rng(2).permutation(16)
    results, baseline = [], None
    for i in order:
        tokens, logprob = samples[i]
        r = reward(tokens) + 0.01 * i
        baseline = r if baseline is None else 0.95 * baseline + 0.05 * r
        results.append(controller.record(tokens, logprob, r))
    updates = [k for k, m in enumerate(results) if m is not None]
    assert updates == [7, 15]  # every 8th reward, whichever samples they belong to
    assert controller.num_updates == 2 and controller.num_buffered == 0
    assert controller.baseline == pytest.approx(baseline, abs=1e-12)  # EMA in arrival order
    for metrics in (results[7], results[15]):
        assert set(metrics) == {"loss", "entropy", "mean_ratio", "clip_fraction", "baseline"}
        assert all(math.isfinite(v) for v in metrics.values())
    # The second batch was sampled before the first update: its ratios are off 1.
    assert results[15]["mean_ratio"] != pytest.approx(1.0, abs=1e-6)


def checkpoint(controller, directory, name):
    """Saves weights and a JSON round trip of the state, as a search would."""
    path = os.path.join(directory, f"{name}.npz")
    controller.save_weights(path)
    return path, json.loads(json.dumps(controller.get_state()))


def test_a_restored_controller_continues_exactly(tmp_path):
    kwargs = {"learning_rate": 0.005, "batch_size": 8}
    original = Controller(ONE_UNIT, seed=3, **kwargs)
    samples = original.sample(20)
    for tokens, logprob in samples[:13]:  # one update, 5 buffered, 7 still out
        original.record(tokens, logprob, reward(tokens))
    assert original.num_updates == 1 and original.num_buffered == 5
    path, state = checkpoint(original, tmp_path, "original")

    restored = Controller(ONE_UNIT, seed=99, **kwargs)  # other seed: all comes from the checkpoint
    restored.load_weights(path)
    restored.set_state(state)
    assert restored.get_state() == state
    assert restored.sample(3) == original.sample(3)  # same tokens, same float logprobs
    metrics = []
    for controller in (original, restored):  # the 3rd of these 7 completes a batch
        results = [controller.record(t, lp, reward(t)) for t, lp in samples[13:]]
        metrics.append(results[2])
        assert results[:2] == [None, None] and results[3:] == [None] * 4
    assert original.num_updates == restored.num_updates == 2
    assert metrics[0] == metrics[1]
    assert restored.sample(5) == original.sample(5)
    assert restored.logprob(PLANTED) == original.logprob(PLANTED)
    path_a, state_a = checkpoint(original, tmp_path, "a")
    path_b, state_b = checkpoint(restored, tmp_path, "b")
    assert state_a == state_b
    with np.load(path_a) as a, np.load(path_b) as b:
        assert sorted(a.files) == sorted(b.files)
        assert "adam_m/lstm_kernel" in a.files and int(a["adam_step"]) == 6  # 2 updates x 3 epochs
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_save_weights_is_atomic(tmp_path, monkeypatch):
    controller = Controller(ONE_UNIT)
    path = tmp_path / "controller.npz"
    controller.save_weights(path)
    assert os.listdir(tmp_path) == ["controller.npz"]  # no temporary file left
    before = path.read_bytes()

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(
        controller_module.os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b))
    )

    def crash(fd):  # the new bytes are written, not yet on the disk: the machine fails
        raise OSError("disk full")

    monkeypatch.setattr(files_module.os, "fsync", crash)
    for variable in controller._variables.values():  # other weights: other bytes
        variable.assign(variable * 0.0)
    with pytest.raises(OSError, match="disk full"):
        controller.save_weights(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["controller.npz"]
    assert replaced == []
    monkeypatch.undo()
    monkeypatch.setattr(
        controller_module.os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b))
    )
    controller.save_weights(str(path))
    [(temp, target)] = replaced
    assert os.path.dirname(temp) == str(tmp_path) and target == str(path)


def test_unaffected_by_keras_global_state():
    """A child network's clear_session / set_random_seed must not disturb the controller."""
    a, b = Controller(ONE_UNIT, seed=4), Controller(ONE_UNIT, seed=4)
    first = a.sample(4)
    keras.utils.set_random_seed(123)
    keras.backend.clear_session()
    np.random.seed(7)
    assert b.sample(4) == first
    for tokens, logprob in first * 2:  # an update after clear_session
        a.record(tokens, logprob, reward(tokens))
        b.record(tokens, logprob, reward(tokens))
    keras.backend.clear_session()
    assert a.num_updates == 1 and a.sample(4) == b.sample(4)
    assert Controller(ONE_UNIT, seed=5).sample(4) != first  # the seed matters


@pytest.mark.parametrize(
    "steps, match",
    [
        ([], r"steps=\[\]"),
        ([("unary", UNARY), ("binary", [])], r"steps\[1\]=\('binary', \[\]\)"),
        ([("unary",)], r"steps\[0\]=\('unary',\)"),
        ([("unary", "abc")], r"steps\[0\]"),
        ("unary", r"steps='unary'"),
    ],
)
def test_bad_steps(steps, match):
    with pytest.raises(ValueError, match=match):
        Controller(steps)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_units": 0}, "hidden_units=0"),
        ({"learning_rate": -1.0}, r"learning_rate=-1\.0"),
        ({"ppo_clip": 1.5}, r"ppo_clip=1\.5"),
        ({"ppo_epochs": 0}, "ppo_epochs=0"),
        ({"batch_size": 2.5}, r"batch_size=2\.5"),
        ({"entropy_weight": -0.1}, r"entropy_weight=-0\.1"),
        ({"baseline_decay": 1.0}, r"baseline_decay=1\.0"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Controller(ONE_UNIT, **kwargs)


def test_bad_tokens_rewards_states_and_files(tmp_path):
    controller = Controller(ONE_UNIT)
    for tokens in ([0, 0, 7, 19], [0, 0, 25, 19, 3], [0, 1, 7, 19, 3], [0, 0, -1, 0, 0],
                   [0, 0, 7.0, 19, 3], "abcde"):  # fmt: skip
        with pytest.raises(ValueError, match=rf"tokens={tokens!r}".replace("[", r"\[")):
            controller.logprob(tokens)
        with pytest.raises(ValueError, match="tokens="):
            controller.record(tokens, -1.0, 0.5)
    with pytest.raises(ValueError, match="reward=nan"):
        controller.record(PLANTED, -1.0, float("nan"))
    with pytest.raises(ValueError, match=r"logprob=0\.5"):
        controller.record(PLANTED, 0.5, 0.5)
    with pytest.raises(ValueError, match="n=0"):
        controller.sample(0)
    assert controller.num_rewards == 0 and controller.baseline is None

    other = Controller(two_units())
    with pytest.raises(ValueError, match="num_choices"):
        other.set_state(controller.get_state())
    with pytest.raises(ValueError, match="state="):
        other.set_state({"baseline": 0.5})
    mangled = {k: v for k, v in controller.get_state().items() if k != "rng"}
    with pytest.raises(ValueError, match="lacks or mangles 'rng'"):
        controller.set_state(mangled)
    controller.save_weights(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="hidden_units=35, num_choices=\\[1, 1, 25, 25, 10\\]"):
        other.load_weights(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="hidden_units=8"):
        Controller(ONE_UNIT, hidden_units=8).load_weights(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="path='c.weights'"):
        controller.save_weights("c.weights")

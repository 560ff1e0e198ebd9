"""The paper's search controller: an LSTM that writes candidates, trained with PPO.

Ramachandran et al. (2017) search spaces of ~10^12 activation functions with
an RNN controller that predicts one component of the function per timestep,
each prediction fed back as the next timestep's input, trained with Proximal
Policy Optimization; the reward is the child network's validation accuracy
and the baseline an exponential moving average of rewards. This module is
that controller, for any space given as a list of steps (see `Controller`).

Rewards arrive in any order, from child trainings that finish out of order:
each sample carries the log-probability it was drawn with, and PPO's clipped
importance ratio corrects for the policy having moved since.

The controller is plain TensorFlow (raw `tf.Variable`s, `tf.GradientTape`,
Adam written out below) and draws every random number from its own NumPy
generator. Nothing in it belongs to Keras, so the child networks trained in
the same process may call `keras.backend.clear_session()`,
`keras.utils.set_random_seed()` (which reseeds NumPy's, Python's and
TensorFlow's *global* generators) or run under another Keras backend without
touching the controller's weights, optimizer slots or sampling sequence.
"""

import copy
import io
import math
import numbers
import os

import numpy as np
import tensorflow as tf

from keras_swish.recipes.core.config import write_atomic

_STATE_VERSION = 1
# Uniform init range of the controller weights (Zoph & Le, 2017: ±0.08).
_INIT_SCALE = 0.08
# Adam's moment decays and epsilon (Kingma & Ba, 2015).
_ADAM_BETA_1, _ADAM_BETA_2, _ADAM_EPSILON = 0.9, 0.999, 1e-8


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Controller:
    """LSTM controller that samples candidates and learns from their rewards by PPO.

    A search space is, for the controller, a list of steps `(kind, choices)`;
    a candidate is one integer token per step, the index of the chosen item.
    One core unit `b(u1(x1), u2(x2))` is five steps:

    ```python
    [("input", ["x"]), ("input", ["x"]),
     ("unary", UNARY), ("unary", UNARY), ("binary", BINARY)]
    ```

    and N units are 5N steps (the inputs of unit i choose among x and the
    outputs of the i earlier units). A step with a single choice is still
    emitted, with probability 1.

    The network is a single-layer LSTM. At step t its input is an embedding
    of the token chosen at step t - 1 (a table per step; a learned start
    vector at step 0), and a softmax head of its own turns the LSTM output
    into a distribution over step t's choices.

    Training: `record(tokens, logprob, reward)` takes the reward of a sample
    from `sample()`, in any order. Its advantage is the reward minus the
    baseline, an exponential moving average of the rewards recorded before
    it (`b <- decay * b + (1 - decay) * r`, starting at the first reward,
    whose advantage is therefore 0). Every `batch_size` recorded rewards run
    `ppo_epochs` full-batch Adam steps on PPO's clipped surrogate
    (Schulman et al., 2017) plus an entropy bonus:

    ```python
    ratio = exp(logprob_now(tokens) - logprob_when_sampled)
    loss = -mean(min(ratio * A, clip(ratio, 1 - ppo_clip, 1 + ppo_clip) * A))
           - entropy_weight * mean(entropy of the step distributions)
    ```

    The activation-search paper names the method (RNN controller, PPO, EMA
    baseline, reward = validation accuracy) but no numbers; the defaults
    come from the papers it builds on:

    - `hidden_units=35`, weights uniform in ±0.08: Zoph & Le (2017), "Neural
      Architecture Search with Reinforcement Learning" (their controller has
      two such layers; the activation search, like Zoph et al. 2018, uses one).
    - `learning_rate=0.00035`, `entropy_weight=1e-5`, `baseline_decay=0.95`:
      Zoph et al. (2018), "Learning Transferable Architectures for Scalable
      Image Recognition" (NASNet), whose controller is trained with PPO.
    - `ppo_clip=0.2`: Schulman et al. (2017), "Proximal Policy Optimization
      Algorithms" (ε = 0.2 scored best in their comparison).
    - `ppo_epochs=3`: Schulman et al. (2017), Atari setting.
    - `batch_size=8`: Zoph & Le (2017), m = 8 child networks per controller
      gradient.

    On the synthetic one-unit task of the tests (25 x 25 x 10 candidates,
    partial credit), the defaults lift the planted candidate from 1/6250 to
    a probability above 0.5 within about 700 rewards; 0.001 needs about 300,
    while 0.01 collapses within 200 onto a candidate with two of three parts
    right.

    Args:
        steps: The search space: a non-empty list of `(kind, choices)`
            pairs, `kind` a string, `choices` a non-empty sequence.
        hidden_units: LSTM width, also the width of the token embeddings.
        learning_rate: Adam learning rate.
        ppo_clip: PPO's ε: the importance ratio is clipped to
            `[1 - ppo_clip, 1 + ppo_clip]`.
        ppo_epochs: Adam steps per PPO update, each on the whole batch.
        batch_size: Rewards buffered per PPO update.
        entropy_weight: Weight of the entropy bonus (0 turns it off).
        baseline_decay: Decay of the exponential moving average of rewards.
        seed: Seeds the weight initialization and the sampling generator.

    Example:

    ```python
    controller = Controller(steps, seed=1)
    for tokens, logprob in controller.sample(4):
        queue.put((tokens, logprob))  # a worker trains the child network
    ...
    tokens, logprob, accuracy = results.get()  # in whatever order they finish
    controller.record(tokens, logprob, accuracy)
    # Checkpoint: both halves are needed to resume exactly.
    controller.save_weights("controller.npz")
    json.dump(controller.get_state(), open("controller.json", "w"))
    ```

    References:
    - [Ramachandran et al., 2017](https://arxiv.org/abs/1710.05941)
    - [Zoph & Le, 2017](https://arxiv.org/abs/1611.01578)
    - [Zoph et al., 2018](https://arxiv.org/abs/1707.07012)
    - [Schulman et al., 2017](https://arxiv.org/abs/1707.06347)
    """

    def __init__(
        self,
        steps,
        hidden_units=35,
        learning_rate=0.00035,
        ppo_clip=0.2,
        ppo_epochs=3,
        batch_size=8,
        entropy_weight=1e-5,
        baseline_decay=0.95,
        seed=0,
    ):
        self.steps = _check_steps(steps)
        self.num_choices = [len(choices) for _, choices in self.steps]
        for name, value, ok, rule in [
            ("hidden_units", hidden_units, _is_int(hidden_units) and hidden_units >= 1, ">= 1"),
            ("learning_rate", learning_rate, _is_real(learning_rate) and learning_rate > 0, "> 0"),
            ("ppo_clip", ppo_clip, _is_real(ppo_clip) and 0 < ppo_clip < 1, "in (0, 1)"),
            ("ppo_epochs", ppo_epochs, _is_int(ppo_epochs) and ppo_epochs >= 1, ">= 1"),
            ("batch_size", batch_size, _is_int(batch_size) and batch_size >= 1, ">= 1"),
            (
                "entropy_weight",
                entropy_weight,
                _is_real(entropy_weight) and entropy_weight >= 0,
                ">= 0",
            ),
            (
                "baseline_decay",
                baseline_decay,
                _is_real(baseline_decay) and 0 <= baseline_decay < 1,
                "in [0, 1)",
            ),
            ("seed", seed, _is_int(seed) and seed >= 0, "an integer >= 0"),
        ]:
            if not ok:
                raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")
        self.hidden_units = int(hidden_units)
        self.learning_rate = float(learning_rate)
        self.ppo_clip = float(ppo_clip)
        self.ppo_epochs = int(ppo_epochs)
        self.batch_size = int(batch_size)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.seed = int(seed)

        # Raw tf.Variables and NumPy generators, not Keras layers, optimizers or
        # seeds: a child network's clear_session() / set_random_seed() in this
        # process cannot reset or reseed them (see the module docstring).
        # Two independent streams: one for the initial weights, one for sampling.
        init_rng = np.random.default_rng([self.seed, 0])
        self._rng = np.random.default_rng([self.seed, 1])
        h = self.hidden_units
        shapes = {"lstm_kernel": (2 * h, 4 * h), "start": (1, h)}
        for t, n in enumerate(self.num_choices):
            if t > 0:
                shapes[f"embedding_{t}"] = (self.num_choices[t - 1], h)
            shapes[f"head_kernel_{t}"] = (h, n)
        biases = {"lstm_bias": (4 * h,)}
        biases.update({f"head_bias_{t}": (n,) for t, n in enumerate(self.num_choices)})
        self._variables = {}
        for name, shape in shapes.items():
            value = init_rng.uniform(-_INIT_SCALE, _INIT_SCALE, shape)
            self._variables[name] = tf.Variable(value.astype(np.float32), name=name)
        for name, shape in biases.items():
            self._variables[name] = tf.Variable(np.zeros(shape, np.float32), name=name)
        self._adam_m = {k: tf.Variable(tf.zeros_like(v)) for k, v in self._variables.items()}
        self._adam_v = {k: tf.Variable(tf.zeros_like(v)) for k, v in self._variables.items()}
        self._adam_step = tf.Variable(0, dtype=tf.int64)
        # Compiled once per controller: run eagerly, a sample or an update costs ~10x more.
        num_steps = len(self.steps)
        tokens_spec = tf.TensorSpec([None, num_steps], tf.int32)
        vector_spec = tf.TensorSpec([None], tf.float32)
        self._sample_fn = tf.function(
            lambda uniform: self._unroll(uniform=uniform)[:2],
            input_signature=[tf.TensorSpec([None, num_steps], tf.float32)],
            autograph=False,
        )
        self._logprob_fn = tf.function(
            lambda tokens: self._unroll(tokens)[1], input_signature=[tokens_spec], autograph=False
        )
        self._train_fn = tf.function(
            self._train_step,
            input_signature=[tokens_spec, vector_spec, vector_spec],
            autograph=False,
        )

        self.baseline = None  # EMA of the recorded rewards; None before the first.
        self.num_samples = 0
        self.num_rewards = 0
        self.num_updates = 0
        self._buffer = []  # [tokens, logprob when sampled, reward, advantage]

    # ------------------------------------------------------------------ model

    def _unroll(self, tokens=None, uniform=None):
        """Runs the LSTM over all steps, for a batch of sequences.

        Teacher-forced on `tokens` (int32 `(batch, num_steps)`) when given,
        else sampling: step t picks the first choice whose cumulative
        probability exceeds `uniform[:, t]` (inverse-CDF sampling; the
        uniform numbers come from the controller's NumPy generator).

        Returns:
            `(tokens, logprob, entropy)`: the tokens, the log-probability of
            each sequence and the sum over steps of the entropy of each
            step's distribution (`(batch,)` float32).
        """
        v = self._variables
        n = tf.shape(tokens if uniform is None else uniform)[0]
        h = c = tf.zeros((n, self.hidden_units))
        x = tf.tile(v["start"], [n, 1])
        chosen, logprob, entropy = [], 0.0, 0.0
        for t, num_choices in enumerate(self.num_choices):
            z = tf.matmul(tf.concat([x, h], axis=1), v["lstm_kernel"]) + v["lstm_bias"]
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            log_p = tf.nn.log_softmax(tf.matmul(h, v[f"head_kernel_{t}"]) + v[f"head_bias_{t}"])
            if uniform is None:
                token = tokens[:, t]
            else:
                cdf = tf.cumsum(tf.exp(log_p), axis=1)
                below = tf.cast(cdf <= uniform[:, t : t + 1] * cdf[:, -1:], tf.int32)
                token = tf.minimum(tf.reduce_sum(below, axis=1), num_choices - 1)
            chosen.append(token)
            logprob += tf.gather(log_p, token, batch_dims=1)
            entropy -= tf.reduce_sum(tf.exp(log_p) * log_p, axis=1)
            if t + 1 < len(self.steps):
                x = tf.gather(v[f"embedding_{t + 1}"], token)
        return tf.stack(chosen, axis=1), logprob, entropy

    def _check_tokens(self, tokens):
        """Validates one candidate; returns it as a list of Python ints."""
        ok = isinstance(tokens, (list, tuple, np.ndarray)) and len(tokens) == len(self.steps)
        if ok:
            ok = all(
                _is_int(k) and 0 <= k < n for k, n in zip(tokens, self.num_choices, strict=True)
            )
        if not ok:
            raise ValueError(
                f"`tokens` must be {len(self.steps)} integers, token t in "
                f"[0, num_choices[t]) with num_choices={self.num_choices}. "
                f"Received: tokens={tokens!r}"
            )
        return [int(k) for k in tokens]

    def sample(self, n=1):
        """Samples `n` candidates from the current policy.

        Deterministic given the seed and the controller's state: the
        generator is the controller's own, unaffected by global seeding.

        Args:
            n: Number of candidates.

        Returns:
            A list of `n` pairs `(tokens, logprob)`: a list of ints, one per
            step, and its log-probability under the current policy (a
            float), to be passed back to `record` with the reward.

        Example:

        ```python
        [(tokens, logprob)] = controller.sample()
        names = [choices[k] for (_, choices), k in zip(controller.steps, tokens)]
        # e.g. ['x', 'x', 'sin', 'tanh', 'add']
        ```
        """
        if not _is_int(n) or n < 1:
            raise ValueError(f"`n` must be an integer >= 1. Received: n={n!r}")
        uniform = self._rng.random((int(n), len(self.steps)), dtype=np.float32)
        tokens, logprob = self._sample_fn(tf.constant(uniform))
        self.num_samples += int(n)
        return [
            ([int(k) for k in row], float(lp))
            for row, lp in zip(tokens.numpy(), logprob.numpy(), strict=True)
        ]

    def logprob(self, tokens):
        """The log-probability of a candidate under the current policy.

        Args:
            tokens: One token per step.

        Returns:
            A float.
        """
        tokens = tf.constant([self._check_tokens(tokens)], tf.int32)
        return float(self._logprob_fn(tokens).numpy()[0])

    def probability(self, tokens):
        """The probability of a candidate under the current policy.

        Args:
            tokens: One token per step.

        Returns:
            A float, `exp(logprob(tokens))`.
        """
        return math.exp(self.logprob(tokens))

    # --------------------------------------------------------------- training

    @property
    def num_buffered(self):
        """Rewards recorded since the last PPO update."""
        return len(self._buffer)

    def record(self, tokens, logprob, reward):
        """Records the reward of a sampled candidate; updates every `batch_size`.

        Rewards may come in any order and from samples drawn before earlier
        updates: the advantage uses the baseline at the time of recording,
        and PPO weighs each sample by its probability now over its
        probability when drawn.

        Args:
            tokens: The candidate, as returned by `sample`.
            logprob: Its log-probability as returned by `sample`.
            reward: A finite float, e.g. the child's validation accuracy.

        Returns:
            `None`, or after an update a dict of floats: `loss`, `entropy`
            (mean per candidate), `mean_ratio` and `clip_fraction` (of the
            last epoch, before its step) and the `baseline`.
        """
        tokens = self._check_tokens(tokens)
        for name, value, ok in [
            ("logprob", logprob, _is_real(logprob) and logprob <= 0),
            ("reward", reward, _is_real(reward)),
        ]:
            if not ok or not math.isfinite(value):
                raise ValueError(
                    f"`{name}` must be a finite number"
                    + (" <= 0" if name == "logprob" else "")
                    + f". Received: {name}={value!r}"
                )
        reward = float(reward)
        advantage = 0.0 if self.baseline is None else reward - self.baseline
        if self.baseline is None:
            self.baseline = reward
        else:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        self.num_rewards += 1
        self._buffer.append([tokens, float(logprob), reward, advantage])
        if len(self._buffer) < self.batch_size:
            return None
        return self._ppo_update()

    def _ppo_update(self):
        tokens = tf.constant([b[0] for b in self._buffer], tf.int32)
        old_logprob = tf.constant([b[1] for b in self._buffer], tf.float32)
        advantage = tf.constant([b[3] for b in self._buffer], tf.float32)
        for _ in range(self.ppo_epochs):
            metrics = self._train_fn(tokens, old_logprob, advantage)
        self._buffer = []
        self.num_updates += 1
        metrics = {k: float(value) for k, value in metrics.items()}
        return {**metrics, "baseline": self.baseline}

    def _train_step(self, tokens, old_logprob, advantage):
        """One Adam step on PPO's loss; returns the loss and statistics before the step."""
        names = list(self._variables)
        with tf.GradientTape() as tape:
            _, logprob, entropy = self._unroll(tokens)
            ratio = tf.exp(logprob - old_logprob)
            clipped = tf.clip_by_value(ratio, 1 - self.ppo_clip, 1 + self.ppo_clip)
            surrogate = tf.minimum(ratio * advantage, clipped * advantage)
            loss = -tf.reduce_mean(surrogate) - self.entropy_weight * tf.reduce_mean(entropy)
        grads = tape.gradient(loss, [self._variables[k] for k in names])
        self._adam_step.assign_add(1)
        t = tf.cast(self._adam_step, tf.float32)
        step = self.learning_rate * tf.sqrt(1 - _ADAM_BETA_2**t) / (1 - _ADAM_BETA_1**t)
        for name, grad in zip(names, grads, strict=True):
            var, m, v = self._variables[name], self._adam_m[name], self._adam_v[name]
            grad = tf.convert_to_tensor(grad)  # embedding gradients come as IndexedSlices
            m.assign(_ADAM_BETA_1 * m + (1 - _ADAM_BETA_1) * grad)
            v.assign(_ADAM_BETA_2 * v + (1 - _ADAM_BETA_2) * tf.square(grad))
            var.assign_sub(step * m / (tf.sqrt(v) + _ADAM_EPSILON))
        return {
            "loss": loss,
            "entropy": tf.reduce_mean(entropy),
            "mean_ratio": tf.reduce_mean(ratio),
            "clip_fraction": tf.reduce_mean(tf.cast(tf.abs(ratio - 1) > self.ppo_clip, tf.float32)),
        }

    # ------------------------------------------------------------ persistence

    def get_state(self):
        """The controller's state apart from its weights, as JSON-serializable data.

        Together with `save_weights` it resumes a search exactly: a new
        `Controller` with the same arguments, given this state and those
        weights, samples and updates as this one would have.

        Returns:
            A dict: the baseline, the counters, the buffered rewards and the
            state of the sampling generator.
        """
        return {
            "version": _STATE_VERSION,
            "num_choices": list(self.num_choices),
            "baseline": self.baseline,
            "num_samples": self.num_samples,
            "num_rewards": self.num_rewards,
            "num_updates": self.num_updates,
            "buffer": [
                {"tokens": list(tokens), "logprob": lp, "reward": r, "advantage": a}
                for tokens, lp, r, a in self._buffer
            ],
            "rng": copy.deepcopy(self._rng.bit_generator.state),
        }

    def set_state(self, state):
        """Restores what `get_state` returned (possibly after a JSON round trip).

        Args:
            state: A dict from `get_state` of a controller over the same steps.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"`state` must be a dict from `Controller.get_state` (version "
                f"{_STATE_VERSION}). Received: state={state!r:.200}"
            )
        if list(state.get("num_choices", [])) != self.num_choices:
            raise ValueError(
                "The state is of a controller over another search space: its "
                f"num_choices={state.get('num_choices')}, this one's {self.num_choices}."
            )
        try:
            buffer = [
                [
                    self._check_tokens(b["tokens"]),
                    float(b["logprob"]),
                    float(b["reward"]),
                    float(b["advantage"]),
                ]
                for b in state["buffer"]
            ]
            rng = copy.deepcopy(state["rng"])
            counters = [int(state[k]) for k in ("num_samples", "num_rewards", "num_updates")]
            baseline = state["baseline"]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"`state` lacks or mangles {error}: it is not from get_state."
            ) from None
        self._rng.bit_generator.state = rng
        self.baseline = None if baseline is None else float(baseline)
        self.num_samples, self.num_rewards, self.num_updates = counters
        self._buffer = buffer

    def save_weights(self, path):
        """Writes the weights and Adam's slots to one `.npz` file, atomically.

        The file is written under a temporary name in the same directory,
        then renamed over `path` (`os.replace`), so a crash leaves either
        the old file or the new one, never half of one.

        Args:
            path: File name ending in `.npz`.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"`path` must end in '.npz'. Received: path={path!r}")
        arrays = {
            "hidden_units": np.array(self.hidden_units),
            "num_choices": np.array(self.num_choices),
            "adam_step": np.array(int(self._adam_step.numpy())),
        }
        for name, var in self._variables.items():
            arrays[name] = var.numpy()
            arrays[f"adam_m/{name}"] = self._adam_m[name].numpy()
            arrays[f"adam_v/{name}"] = self._adam_v[name].numpy()
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        # Through a temporary file and a rename, with the permissions of any new file.
        write_atomic(path, buffer.getvalue())

    def load_weights(self, path):
        """Reads weights and Adam's slots written by `save_weights`.

        Args:
            path: A `.npz` file of a controller with the same steps and
                `hidden_units`.
        """
        with np.load(os.fspath(path), allow_pickle=False) as data:
            found = (int(data["hidden_units"]), data["num_choices"].tolist())
            if found != (self.hidden_units, self.num_choices):
                raise ValueError(
                    f"{path} holds a controller with hidden_units={found[0]}, "
                    f"num_choices={found[1]}; this one has hidden_units="
                    f"{self.hidden_units}, num_choices={self.num_choices}."
                )
            values = {}
            for name in self._variables:
                for key, target in [
                    (name, self._variables),
                    (f"adam_m/{name}", self._adam_m),
                    (f"adam_v/{name}", self._adam_v),
                ]:
                    values[key] = (target[name], data[key])
            adam_step = int(data["adam_step"])
        for var, value in values.values():
            var.assign(value)
        self._adam_step.assign(adam_step)


def _check_steps(steps):
    """Validates the search space; returns it as a tuple of `(kind, tuple(choices))`."""
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ValueError(
            f"`steps` must be a non-empty list of (kind, choices) pairs. Received: steps={steps!r}"
        )
    checked = []
    for t, step in enumerate(steps):
        ok = isinstance(step, (list, tuple)) and len(step) == 2 and isinstance(step[0], str)
        if ok:
            try:
                choices = tuple(step[1])
            except TypeError:
                ok = False
        if not ok or not choices or isinstance(step[1], str):
            raise ValueError(
                f"Each step must be a (kind, choices) pair, kind a string and choices a "
                f"non-empty sequence. Received: steps[{t}]={step!r}"
            )
        checked.append((step[0], choices))
    return tuple(checked)

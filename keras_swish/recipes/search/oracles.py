"""The search strategies as KerasTuner oracles: exhaustive, random, RNN + PPO.

KerasTuner is the engine: an `Oracle` hands out trials (here one candidate
activation each, as the values `{"formula": ..., "tokens": ...}`), stores
every trial on disk (`<search dir>/trial_*/trial.json`, `oracle.json`),
re-runs the trials that were running when a search was killed (and, up to
twice, a trial its worker could not report), and serves
remote workers over gRPC (`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT`; a chief restarted alone leaves the trials its live
workers are training to them: their child folders are locked). What
KerasTuner does not know is the candidate
hygiene of the paper's search, which every oracle here applies before a
trial exists:

- a candidate that is constant, not finite on the probe range or without a
  usable gradient is *rejected*: it gets the lowest reward (0) and no child
  is trained (at β = 1, where a child's β starts; one constant there whose
  gradient for β varies with x, such as `beta * x - x`, is a child: β trains
  it off the constant);
- a candidate equivalent to an earlier one (same outputs on the probe set at
  each β of `EQUIVALENCE_BETAS`) is *collapsed* into it: it reuses that
  trial's reward and is listed with it on the leaderboard. β is trainable
  (per channel) in the paper's search space, so x·σ(βx) and x·σ(x) are
  different children — the first is the paper's best find — while
  max(x, x) and x, or βx₁ + (1 − β)x₂ with x₁ = x₂, are one.

The oracle also prints the search's progress line and keeps the leaderboard
files up to date after every trial (see `report`).
"""

import json
import os
import time

import keras_tuner
import numpy as np

from keras_swish.expressions import hygiene
from keras_swish.recipes.core.config import write_atomic
from keras_swish.recipes.core.run_state import is_locked

OBJECTIVE = "reward"  # the child's validation accuracy (its recipe's monitor)
# β values two candidates must agree at to be one: at β = 1 alone every
# trainable-β candidate would fall into its β = 1 twin and never be trained.
EQUIVALENCE_BETAS = (0.5, 1.0, 2.0)
LOWEST_REWARD = 0.0
# Proposals in a row that bring nothing new before a random or controller
# search counts its space as exhausted (or its policy as converged).
_MAX_STALE_PROPOSALS = 2000
# Proposals in a row of candidates being trained right now before the oracle
# answers IDLE (the worker asks again a second later), and how many of those
# samples wait per trial for its reward (the rest add nothing PPO lacks).
_MAX_WAITING_PROPOSALS = 16
_MAX_WAITING_SAMPLES = 8


def space_config(space):
    return {"units": space.units, "unary": list(space.unary), "binary": list(space.binary)}


class ExpressionOracle(keras_tuner.Oracle):
    """Base oracle: proposals from a subclass, hygiene and collapsing here.

    Args:
        space: The `keras_swish.expressions.SearchSpace` searched.
        max_trials: Children to train at most (None: until the strategy stops).
        seed: Seed of the strategy's random choices.
        on_change: Called with the oracle after every ended trial (the
            leaderboard writer); None for none.
    """

    strategy = None
    stops_when_stale = True  # a sampling strategy; the exhaustive one walks to the end

    def __init__(self, space, max_trials=None, seed=0, on_change=None):
        super().__init__(
            objective=keras_tuner.Objective(OBJECTIVE, "max"),
            max_trials=max_trials,
            seed=seed,
            # A failed child is a result (the lowest reward), never a reason to stop.
            max_consecutive_failed_trials=2**31,
            # A child's own failure is caught in `ChildTuner.run_trial` and scored;
            # a trial ends INVALID only where its worker could not report it (the
            # chief's update raised: a full disk, say). Run it again: its child
            # folder resumes, or reports at once where it finished.
            max_retries_per_trial=2,
        )
        self.space = space
        self.verbose = 0  # KerasTuner's own trial tables; the search prints its progress line
        self.on_change = on_change
        self.representatives = {}  # equivalence key → trial_id of the child trained for it
        self.duplicates = {}  # trial_id → formulas collapsed into it
        self.rejected = []  # {"formula", "reason"}, each formula once
        self._rejected_formulas = set()
        self.started_at = {}  # trial_id → time.time() when handed out
        self.durations = {}  # trial_id → seconds
        self.reward_order = []  # trial_ids in the order their rewards came
        # The search's settings as JSON (`search.comparable_settings`), handed out
        # with every trial: a worker refuses to train a trial of other settings.
        self.settings = None

    # --- proposals ------------------------------------------------------------

    def propose(self):
        """The next `(tokens, Expression)`, or None when the strategy is done."""
        raise NotImplementedError

    def on_reward(self, tokens, reward, meta):
        """A reward for a proposal that did not become a trial, or for a finished trial."""

    def ongoing_trial_ids(self):
        return {trial.trial_id for trial in self.ongoing_trials.values()}

    def populate_space(self, trial_id):
        stale = waiting = 0
        while True:
            proposal = self.propose()
            if proposal is None:
                return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED}
            tokens, expr, meta = proposal
            formula = str(expr)
            try:
                hygiene.check(expr, trainable_beta=True)
            except hygiene.CandidateRejected as rejection:
                if formula not in self._rejected_formulas:
                    self._rejected_formulas.add(formula)
                    self.rejected.append({"formula": formula, "reason": rejection.reason})
                self.on_reward(tokens, LOWEST_REWARD, meta)
                stale += 1
            else:
                key = hygiene.equivalence_key(expr, EQUIVALENCE_BETAS)
                rep = self.representatives.get(key)
                if rep is None:
                    self.representatives[key] = trial_id
                    self.started_at[trial_id] = time.time()
                    self.on_new_trial(trial_id, tokens, meta)
                    values = {"formula": formula, "tokens": _tokens_text(tokens)}
                    if self.settings is not None:
                        values["settings"] = self.settings
                    return {
                        "status": keras_tuner.engine.trial.TrialStatus.RUNNING,
                        "values": values,
                    }
                collapsed = self.duplicates.setdefault(rep, [])
                if formula not in collapsed and formula != self._formula_of(rep):
                    collapsed.append(formula)
                self.on_duplicate(tokens, rep, meta)
                if rep in self.ongoing_trial_ids():
                    waiting += 1  # its reward is still to come: not a sign of the end
                else:
                    stale += 1
            if self.stops_when_stale and waiting >= _MAX_WAITING_PROPOSALS:
                # Only candidates being trained right now come up: wait for their rewards.
                time.sleep(1)
                return {"status": keras_tuner.engine.trial.TrialStatus.IDLE}
            if self.stops_when_stale and stale >= _MAX_STALE_PROPOSALS:
                print(
                    f"search: {stale} proposals in a row were rejected or already tried; "
                    "stopping (the space is exhausted or the policy has converged).",
                    flush=True,
                )
                return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED}

    def on_new_trial(self, trial_id, tokens, meta):
        """A proposal that becomes trial `trial_id`."""

    def on_duplicate(self, tokens, rep_trial_id, meta):
        """A proposal equivalent to trial `rep_trial_id` (which may still be running)."""

    def _formula_of(self, trial_id):
        trial = self.trials.get(trial_id)
        return trial.hyperparameters.values.get("formula") if trial else None

    # --- the oracle's lock ------------------------------------------------------

    # KerasTuner's `synchronized` (keras_tuner/src/engine/oracle.py, 1.4.8) releases
    # the oracle's lock only when the method returns: an exception (a full disk
    # while saving, a strategy's error) leaves it held, and a distributed chief
    # then hangs at the end of the search (its main thread waits on that lock in
    # `exit_chief`) instead of stopping. Each entry point below runs its work in
    # `_locked`, which always returns, and raises the error once the lock is free.

    @keras_tuner.synchronized
    def _locked(self, function, *args, **kwargs):
        """`function(*args, **kwargs)` under the oracle's lock: `(result, error)`."""
        try:
            return function(*args, **kwargs), None
        except BaseException as error:  # re-raised by `_unlocked`, lock released
            return None, error

    def _unlocked(self, function, *args, **kwargs):
        result, error = self._locked(function, *args, **kwargs)
        if error is not None:
            raise error
        return result

    def create_trial(self, tuner_id):
        return self._unlocked(super().create_trial, tuner_id)

    def update_trial(self, trial_id, metrics, step=0):
        return self._unlocked(super().update_trial, trial_id, metrics, step=step)

    def end_trial(self, trial):
        return self._unlocked(self._end_trial, trial)

    # --- trial ends -----------------------------------------------------------

    def _end_trial(self, trial):
        if trial.trial_id in self.reward_order:
            # Ended before: a second run of it (a restarted chief that could not
            # see its worker's lock handed it out again). The first end stands:
            # its reward is the one the strategy learnt from.
            self._release(trial.trial_id)
            self.save()
            return
        super().end_trial(trial)
        trial = self.trials[trial.trial_id]
        if trial.status == "INVALID":
            # Queued to run again (KerasTuner's `_retry`), once even where a
            # restarted chief had queued it already (twice, two workers would get
            # it). Its next run reports afresh: a report that failed on saving left
            # its reward here, and KerasTuner skips the report of a trial that has
            # one (`BaseTuner._run_and_update_trial`).
            self._retry_queue = list(dict.fromkeys(self._retry_queue))
            trial.metrics = type(trial.metrics)()  # KerasTuner's MetricsTracker, empty
            for key in ("error", "worker"):
                trial.hyperparameters.values.pop(key, None)
            self._save_trial(trial)
        if trial.status in ("COMPLETED", "FAILED"):
            # Ended for good: where a restarted chief queued it again, it is not
            # run again.
            self._release(trial.trial_id)
            self._count(trial)
        self.save()
        if self.on_change is not None:
            self.on_change(self)

    def _release(self, trial_id):
        """Takes an ended trial off the retry queue and off the tuner that ran it."""
        self._retry_queue = [t for t in self._retry_queue if t != trial_id]
        for tuner_id, ongoing in list(self.ongoing_trials.items()):
            if ongoing.trial_id == trial_id:
                self.ongoing_trials.pop(tuner_id)

    def _count(self, trial):
        """Enters an ended trial's reward: leaderboard order, duration, the strategy."""
        started = self.started_at.pop(trial.trial_id, None)
        seconds = None
        if trial.metrics.exists("seconds"):
            seconds = trial.metrics.get_last_value("seconds")
        if seconds is None and started is not None:
            seconds = time.time() - started
        if seconds is not None:
            self.durations[trial.trial_id] = float(seconds)
        self.reward_order.append(trial.trial_id)
        self.on_trial_reward(trial, reward_of(trial))

    def on_trial_reward(self, trial, reward):
        """Called once per ended trial with its reward."""

    # --- state ----------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        state["search"] = {
            "strategy": self.strategy,
            "space": space_config(self.space),
            "representatives": self.representatives,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "durations": self.durations,
            "reward_order": self.reward_order,
            **self.strategy_state(),
        }
        return state

    def set_state(self, state):
        if "search" not in state:  # `search.search` refuses it first, writing nothing
            raise SearchMismatch(not_a_search(self._project_dir))
        super().set_state(state)
        search = state["search"]
        if search["strategy"] != self.strategy or search["space"] != space_config(self.space):
            raise SearchMismatch(
                f"{self._project_dir} holds a {search['strategy']} search over "
                f"{_space_text(search['space'])}; this command asks for a {self.strategy} "
                f"search over {_space_text(space_config(self.space))}. Use another --output "
                "or the same settings."
            )
        self.representatives = search["representatives"]
        self.duplicates = search["duplicates"]
        self.rejected = search["rejected"]
        self._rejected_formulas = {r["formula"] for r in self.rejected}
        self.durations = search["durations"]
        self.reward_order = search["reward_order"]
        self.set_strategy_state(search)
        self._held_when_saved = dict(state["ongoing_trials"])  # tuner id → trial id

    def reload(self):
        super().reload()
        # KerasTuner writes a new trial's file before oracle.json: a kill between
        # the two leaves a RUNNING trial the saved state does not know. Run it again.
        known = set(self.start_order)
        for trial_id, trial in sorted(self.trials.items()):
            if trial.status == "RUNNING" and trial_id not in known:
                self.start_order.append(trial_id)
                self._retry_queue.append(trial_id)
                # Its proposal's bookkeeping was not saved either: the same
                # formula proposed again is this trial, not a second child.
                formula = trial.hyperparameters.values["formula"]
                key = hygiene.equivalence_key(formula, EQUIVALENCE_BETAS)
                self.representatives.setdefault(key, trial_id)
        # A trial ended by KerasTuner (its state saved with the trial still
        # ongoing) but not yet counted here when killed is retried by KerasTuner:
        # its child is complete, so it ends again at once and is counted then.

        # KerasTuner queues every trial that was running for any worker to run
        # again: right where the whole search was killed, but a chief restarted
        # alone would hand a trial a live worker is still training to another
        # (two runs of one child folder; the second stops at its lock). A trial
        # whose child folder is locked now stays with the worker that holds it.
        for tuner_id, trial_id in getattr(self, "_held_when_saved", {}).items():
            child = os.path.join(self._get_trial_dir(trial_id), "child")
            if trial_id in self._retry_queue and is_locked(child):
                self._retry_queue = [t for t in self._retry_queue if t != trial_id]
                self.ongoing_trials[tuner_id] = self.trials[trial_id]
                # A tuner holding a trial keeps the chief serving (KerasTuner's
                # exit_chief waits for tuner_ids and ongoing_trials to empty).
                self.tuner_ids.add(tuner_id)
        self._held_when_saved = {}

    def strategy_state(self):
        return {}

    def set_strategy_state(self, state):
        pass

    def save(self):
        # KerasTuner writes oracle.json in place; a kill mid-write would leave
        # a truncated file that cannot be reloaded, so write it atomically.
        write_atomic(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_atomic(path, json.dumps(trial.get_state()))


def not_a_search(folder):
    """The error for a folder whose oracle.json holds another KerasTuner project."""
    return (
        f"{folder} holds a KerasTuner project that is not a keras-swish search (its "
        "oracle.json has no search state). Use another --output."
    )


class SearchMismatch(keras_tuner.errors.FatalError):
    """A search folder this search cannot resume: another strategy's or space's
    search, a KerasTuner project that is not a search, or one missing its files."""


def reward_of(trial):
    """A trial's reward: its child's validation accuracy; 0 for a failed child."""
    if trial.status != "COMPLETED" or trial.score is None or not np.isfinite(trial.score):
        return LOWEST_REWARD
    return float(trial.score)


def _tokens_text(tokens):
    return ",".join(str(int(t)) for t in tokens)


def tokens_of(text):
    return [int(t) for t in text.split(",")] if text else []


def _space_text(config):
    return f"{config['units']} unit(s), unary {config['unary']}, binary {config['binary']}"


def _radices(space):
    return [len(choices) for _, choices in space.steps()]


class ExhaustiveOracle(ExpressionOracle):
    """Every candidate of the space, in a fixed (lexicographic) order.

    The paper's strategy for one core unit: "keeps a list of functions sorted
    by validation accuracy" — the leaderboard.
    """

    strategy = "exhaustive"
    stops_when_stale = False
    limit = 10**6  # candidates; larger spaces are for the random or RNN search

    def __init__(self, space, max_trials=None, seed=0, on_change=None):
        super().__init__(space, max_trials=max_trials, seed=seed, on_change=on_change)
        self.cursor = 0  # index of the next candidate in the fixed order

    def propose(self):
        radices = _radices(self.space)
        if self.cursor >= self.space.size:
            return None
        index, tokens = self.cursor, []
        for radix in reversed(radices):
            index, token = divmod(index, radix)
            tokens.append(token)
        tokens.reverse()
        self.cursor += 1
        return tokens, self.space.decode(tokens), None

    def strategy_state(self):
        return {"cursor": self.cursor}

    def set_strategy_state(self, state):
        self.cursor = state["cursor"]


class RandomOracle(ExpressionOracle):
    """Candidates drawn uniformly, one component at a time, from a seeded generator."""

    strategy = "random"

    def __init__(self, space, max_trials=None, seed=0, on_change=None):
        super().__init__(space, max_trials=max_trials, seed=seed, on_change=on_change)
        self.rng = np.random.default_rng(seed)

    def propose(self):
        tokens = [int(self.rng.integers(r)) for r in _radices(self.space)]
        return tokens, self.space.decode(tokens), None

    def strategy_state(self):
        return {"rng": self.rng.bit_generator.state}

    def set_strategy_state(self, state):
        self.rng.bit_generator.state = state["rng"]


class ControllerOracle(ExpressionOracle):
    """The paper's RNN controller, trained with PPO on the children's rewards.

    Every proposal is a sample of the controller; its reward (the child's
    validation accuracy, the reused one of an equivalent candidate, or 0 for
    a rejected candidate) goes back to the controller, which runs a PPO update
    whenever a batch of rewards has arrived, in any order. The controller's
    weights and optimizer slots are saved beside `oracle.json`
    (`controller-N.npz` after N updates) whenever the oracle saves.
    """

    strategy = "rnn"

    def __init__(self, space, max_trials=None, seed=0, on_change=None, controller=None):
        super().__init__(space, max_trials=max_trials, seed=seed, on_change=on_change)
        from keras_swish.recipes.search.controller import Controller

        self.controller = controller or Controller(self.space.steps(), seed=seed)
        self.pending = {}  # trial_id → [tokens, logprob]
        self.waiting = {}  # trial_id still running → [[tokens, logprob], ...] collapsed into it
        self.history = []  # one reward per controller sample, in order (the reward plot)

    def propose(self):
        ((tokens, logprob),) = self.controller.sample(1)
        tokens = [int(t) for t in tokens]
        return tokens, self.space.decode(tokens), float(logprob)

    def on_new_trial(self, trial_id, tokens, logprob):
        self.pending[trial_id] = [tokens, logprob]

    def on_reward(self, tokens, reward, logprob):
        self._give(tokens, logprob, reward)

    def on_duplicate(self, tokens, rep_trial_id, logprob):
        trial = self.trials.get(rep_trial_id)
        if trial is not None and trial.status in ("COMPLETED", "FAILED"):
            self._give(tokens, logprob, reward_of(trial))
        else:
            waiting = self.waiting.setdefault(rep_trial_id, [])
            if len(waiting) < _MAX_WAITING_SAMPLES:
                waiting.append([tokens, logprob])

    def on_trial_reward(self, trial, reward):
        tokens, logprob = self.pending.pop(trial.trial_id, (None, None))
        if tokens is not None:
            self._give(tokens, logprob, reward)
        for tokens, logprob in self.waiting.pop(trial.trial_id, []):
            self._give(tokens, logprob, reward)

    def _give(self, tokens, logprob, reward):
        self.controller.record(tokens, logprob, reward)
        self.history.append(float(reward))

    def strategy_state(self):
        return {
            "controller": self.controller.get_state(),
            "weights": self._weights_name(),
            "pending": self.pending,
            "waiting": self.waiting,
            "history": self.history,
        }

    def set_strategy_state(self, state):
        self.controller.set_state(state["controller"])
        path = os.path.join(self._project_dir, state["weights"])
        if not os.path.exists(path):
            raise SearchMismatch(
                f"{path} is missing: oracle.json names it as the RNN controller's weights "
                "after its updates, and the search cannot resume without them. Restore "
                "the file, or start the search again in another --output."
            )
        self.controller.load_weights(path)
        self.pending = state["pending"]
        self.waiting = state["waiting"]
        self.history = state["history"]

    def save(self):
        # The weights after N PPO updates are `controller-N.npz`, written (atomically)
        # before the oracle.json that names them; older ones go after it. A kill at
        # any point leaves oracle.json naming weights that match its controller
        # state. Written every time: a file of that name left by a killed run may
        # hold the weights of other rewards.
        name = self._weights_name()
        path = os.path.join(self._project_dir, name)
        self.controller.save_weights(path)
        super().save()
        for old in os.listdir(self._project_dir):
            if old.startswith("controller-") and old.endswith(".npz") and old != name:
                os.remove(os.path.join(self._project_dir, old))

    def _weights_name(self):
        return f"controller-{self.controller.num_updates}.npz"


STRATEGIES = {
    "exhaustive": ExhaustiveOracle,
    "random": RandomOracle,
    "rnn": ControllerOracle,
}

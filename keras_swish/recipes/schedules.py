"""Learning-rate schedules of the reference recipes."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_swish")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then `peak · decay_rate^(step / decay_steps)`.

    The decay counts from step 0 (as in TF Model Garden's image recipes), is
    staircased by default, and starts to apply once warm-up ends.

    Args:
        peak: Learning rate at the end of warm-up.
        warmup_steps: Steps of linear warm-up from 0 (0 for none).
        decay_steps: Steps per decay period.
        decay_rate: Factor per decay period.
        staircase: Decay in whole periods.
    """

    def __init__(self, peak, warmup_steps, decay_steps, decay_rate, staircase=True):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = max(1, int(decay_steps))
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        periods = step / self.decay_steps
        if self.staircase:
            periods = ops.floor(periods)
        decayed = self.peak * ops.power(self.decay_rate, periods)
        if self.warmup_steps <= 0:
            return decayed
        warm = self.peak * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }

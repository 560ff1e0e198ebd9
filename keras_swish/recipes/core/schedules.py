"""Learning-rate schedules of the reference recipes, and a printout of them."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_swish")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Exponential decay from step 0 whose first steps are a linear warm-up.

    `peak · decay_rate^(step / decay_steps)` (whole periods when
    `staircase`), counted from step 0; during the first `warmup_steps` the
    rate rises linearly from 0 to the decayed value at `warmup_steps`. This
    is TF Model Garden's `LinearWarmup` over `ExponentialDecayWithOffset`
    (official/modeling/optimization/lr_schedule.py: "warmup overrides the
    learning rate schedule by the number of warmup steps").

    Args:
        peak: Learning rate of the decay at step 0.
        warmup_steps: Steps of linear warm-up from 0 (0 for none).
        decay_steps: Steps per decay period.
        decay_rate: Factor per decay period.
        staircase: Decay in whole periods.

    Example:

    >>> schedule = WarmupExponentialDecay(1.0, warmup_steps=10, decay_steps=10, decay_rate=0.5)
    >>> [round(float(schedule(s)), 3) for s in (0, 5, 10, 19, 20)]
    [0.0, 0.25, 0.5, 0.5, 0.25]
    """

    def __init__(self, peak, warmup_steps, decay_steps, decay_rate, staircase=True):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = max(1, int(decay_steps))
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def _decayed(self, step):
        periods = step / self.decay_steps
        if self.staircase:
            periods = ops.floor(periods)
        return self.peak * ops.power(self.decay_rate, periods)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decayed = self._decayed(step)
        if self.warmup_steps <= 0:
            return decayed
        end = self._decayed(ops.cast(self.warmup_steps, "float32"))
        warm = end * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def schedule_points(schedule, total_steps, fractions=FRACTIONS):
    """`[(fraction, step, learning rate)]` of `schedule` over `total_steps` steps.

    The learning rate at fraction f is the one of step round(f · total) −
    for f = 1 the last step trained (total − 1).
    """
    points = []
    for fraction in fractions:
        step = min(int(round(fraction * total_steps)), max(total_steps - 1, 0))
        rate = schedule(step) if callable(schedule) else schedule
        points.append((fraction, step, float(ops.convert_to_numpy(rate))))
    return points


def describe_schedule(schedule, total_steps, steps_per_pass):
    """Lines that show a run's learning rate before it starts.

    Args:
        schedule: A float or a `LearningRateSchedule`.
        total_steps: Optimizer steps the run takes (epochs × steps per epoch).
        steps_per_pass: Steps of one pass over the training data (None:
            not known before the data is read; the passes are left out).
    """
    points = schedule_points(schedule, total_steps)
    peak = max(rate for _, _, rate in points) or 1.0
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        # The true peak can fall between the printed points (end of warm-up).
        stride = max(1, total_steps // 2000)
        rates = {s: float(ops.convert_to_numpy(schedule(s))) for s in range(0, total_steps, stride)}
        top = max(rates, key=rates.get, default=0)
        near = range(max(0, top - stride), min(total_steps, top + stride), max(1, stride // 100))
        rates.update({s: float(ops.convert_to_numpy(schedule(s))) for s in near})
        peak = max([peak, *rates.values()])
    if steps_per_pass is None:
        lines = [f"Learning rate over {total_steps:,} steps, peak {peak:.4g}:"]
    else:
        lines = [
            f"Learning rate over {total_steps:,} steps "
            f"({total_steps / max(steps_per_pass, 1):,.1f} passes over the training data "
            f"of {steps_per_pass:,} steps), peak {peak:.4g}:"
        ]
    for fraction, step, rate in points:
        passes = "" if steps_per_pass is None else f"  pass {step / max(steps_per_pass, 1):>7.1f}"
        share = f"({rate / peak:.2%} of peak)"
        lines.append(f"  {fraction:>4.0%}  step {step:>9,}{passes}  lr {rate:.4g}  {share}")
    return lines

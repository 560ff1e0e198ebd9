"""BetaMonitor: TensorBoard summaries of the learned β while a model trains."""

import importlib.util
import numbers
import os
import warnings

import keras
import numpy as np

from keras_swish.callbacks import betas as betas_lib
from keras_swish.callbacks import chief as chief_lib
from keras_swish.callbacks import plots
from keras_swish.callbacks import probe as probe_lib

SUBDIR = "beta"


def _tensorboard_installed():
    return importlib.util.find_spec("tensorboard") is not None


def _tensorflow():
    """TensorFlow for `tf.summary`, kept off the GPUs of JAX or PyTorch."""
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow's devices are already initialised.
            pass
    return tf


def _statistics(values):
    values = np.asarray(values, np.float64)
    return {
        "mean": values.mean(),
        "std": values.std(),
        "min": values.min(),
        "max": values.max(),
    }


class BetaMonitor(keras.callbacks.Callback):
    """Writes the learned β of every β layer to TensorBoard while training.

    The β layers are the `SwishBeta` layers and the `ExpressionActivation`
    layers whose formula uses `beta` (an ExpressionActivation without `beta`
    has nothing to learn and is left out), whether standalone, made by
    `activation="swish_beta"` or `activation="expr:<formula>"` inside Dense,
    Conv or recurrent layers, or inside nested models.

    At the end of every epoch (or every `update_freq` training steps) it
    writes, to the run `<log_dir>/beta`:

    - `beta/all`: a histogram of every β in the model (the paper's Fig. 7);
    - `beta/mean`, `beta/std`, `beta/min`, `beta/max`: scalars over all β;
    - `beta_layer/<name>`: a histogram per β layer, and scalars
      `beta_layer/<name>/mean` (and `std`, `min`, `max`). `<name>` is the
      path of the layer's β variable without `/beta`, such as
      `dense/swish_beta`, `lstm/lstm_cell/recurrent_swish_beta` or
      `dense_1/expression_activation` (in a `Sequential` model after its
      name: `sequential/dense/swish_beta`);
    - `beta/curves`: an image of each layer's own function on [−6, 6] at
      the β quantiles (min, 10 %, 50 %, 90 %, max) of the layers computing
      it, with ReLU: f(x) = x·σ(βx) (and x/2) for SwishBeta, the formula
      for an ExpressionActivation; one panel per distinct function;
    - with a `probe` batch, the paper's Fig. 6: `bump/share` and
      `bump_layer/<name>/share`, the share of each β layer's inputs in
      −5 ≤ x ≤ 0, and histograms of those inputs, `bump/inputs` and
      `bump_layer/<name>`.

    It also keeps `<log_dir>/beta/betas.json`, the latest β of every layer
    (and each ExpressionActivation's formula), which
    `keras-swish beta-report LOG_DIR` reads.

    The `beta` subdirectory is its own TensorBoard run, so it sits beside
    `keras.callbacks.TensorBoard(log_dir)` (runs `train` and `validation`)
    without either overwriting the other. Steps come from training itself,
    not from a counter of this callback: the epoch number (so pass
    `initial_epoch` when resuming, as for TensorBoard), or with an integer
    `update_freq` the optimizer's iteration count (restored with the
    optimizer's state), read when `fit` starts and ends and counted in
    between. Only the chief writes: under `MirroredStrategy` the
    one process, under `MultiWorkerMirroredStrategy` the chief task (or
    worker 0). A model without any β layer gets one warning and no summaries.

    Summaries are written with `tf.summary` from NumPy values on the CPU, so
    BetaMonitor works with every Keras backend when TensorFlow and
    TensorBoard are installed (keras-swish depends on both). Under JAX or
    PyTorch it hides the GPUs from TensorFlow (`tf.config.set_visible_devices`)
    so that TensorFlow does not reserve their memory.

    Args:
        log_dir: The run's log directory, the same one you may give
            `keras.callbacks.TensorBoard`.
        update_freq: `"epoch"` (default) to write after every epoch, at
            step = epoch; or a positive int N to write every N training
            steps and at the end of training, at step = optimizer
            iterations (`"batch"` is 1). Keep one kind per log dir: both
            share TensorBoard's step axis.
        probe: Optional small, fixed batch of model inputs (what `model(x)`
            takes: an array, or a list or dict of arrays). When given, the
            inputs of every β layer on this batch (one eager forward pass
            in inference mode per summary) are summarised too. Recurrent
            cells count every call of their activation, including the one
            Keras makes on the first time step to set up the loop.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)),
    ...                           keras.layers.Dense(8, activation="swish_beta"),
    ...                           keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> x, y = np.ones((16, 4)), np.ones((16, 1))
    >>> log_dir = tempfile.mkdtemp()
    >>> monitor = keras_swish.callbacks.BetaMonitor(log_dir, probe=x[:8])
    >>> _ = model.fit(x, y, epochs=2, callbacks=[monitor], verbose=0)
    >>> sorted(os.listdir(os.path.join(log_dir, "beta")))[0]
    'betas.json'

    A formula with `beta` is followed the same way, its curves drawn from
    the formula:

    >>> model = keras.Sequential([
    ...     keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="expr:max(x, sigmoid(beta * x))"),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> _ = model.fit(x, y, epochs=1, callbacks=[
    ...     keras_swish.callbacks.BetaMonitor(tempfile.mkdtemp())], verbose=0)

    Then `tensorboard --logdir LOG_DIR`, or `keras-swish beta-report LOG_DIR`.
    """

    def __init__(self, log_dir, update_freq="epoch", probe=None):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(
                "`log_dir` must be a non-empty path (str or os.PathLike). "
                f"Received: log_dir={log_dir!r}"
            )
        if update_freq == "batch":
            update_freq = 1
        valid_int = isinstance(update_freq, numbers.Integral) and not isinstance(update_freq, bool)
        if update_freq != "epoch" and not (valid_int and update_freq > 0):
            raise ValueError(
                '`update_freq` must be "epoch", "batch" or a positive int. '
                f"Received: update_freq={update_freq!r}"
            )
        if not _tensorboard_installed():
            # tf.summary.histogram, scalar and image live in that package.
            raise ImportError(
                "BetaMonitor writes with tf.summary, which needs the `tensorboard` "
                "package: pip install tensorboard"
            )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq if update_freq == "epoch" else int(update_freq)
        self.probe = probe
        self._writer = None
        self._warned = False
        self._chief = True
        self._last_step = None
        self._seen_step = 0
        self._epoch_start = 0
        if self.update_freq != "epoch":
            # Only then: a batch hook turns off Keras's asynchronous dispatch.
            self.on_train_batch_end = self._on_train_batch_end

    @property
    def write_dir(self):
        """The directory this callback writes to: `<log_dir>/beta`."""
        return os.path.join(self.log_dir, SUBDIR)

    def on_train_begin(self, logs=None):
        strategy = getattr(self.model, "distribute_strategy", None)
        self._chief = chief_lib.is_chief(strategy)
        self._last_step = None
        if not self._chief:
            return
        if self.update_freq != "epoch":
            self._seen_step = self._iterations()
        named = betas_lib.find_beta_layers(self.model)
        if not named:
            if self.model.built:
                self._warn_no_layers()
            return
        if self.probe is not None:
            self._capture(named)  # Fails now, not after an epoch, on a bad probe.

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._seen_step

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._write(int(epoch))

    def _on_train_batch_end(self, batch, logs=None):
        if not self._chief:
            return
        # Counted from the optimizer's step at the start of `fit`, not read from
        # it: on JAX, `self.model` syncs the whole training state into the model
        # (Keras's Callback.model), which every batch would slow training down.
        # `batch` is the epoch's last step so far (0-based; several steps per
        # callback with steps_per_execution > 1).
        step = self._epoch_start + int(batch) + 1
        # Crossed a multiple of N.
        crossed = step // self.update_freq > self._seen_step // self.update_freq
        self._seen_step = step
        if crossed:
            self._write(step)

    def on_train_end(self, logs=None):
        if self.update_freq != "epoch" and self._chief:
            step = self._iterations()
            if step != self._last_step:
                self._write(step)  # The final β, between two multiples of N.
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _iterations(self):
        return int(betas_lib.to_numpy(self.model.optimizer.iterations))

    def _warn_no_layers(self):
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"BetaMonitor: model {self.model.name!r} has no SwishBeta layer "
                "and no ExpressionActivation with `beta` (use "
                'activation="swish_beta", keras_swish.SwishBeta, or a formula '
                'with beta such as activation="expr:x * sigmoid(beta * x)"); '
                "no β summaries are written.",
                UserWarning,
                stacklevel=2,
            )

    def _capture(self, named):
        try:
            return probe_lib.capture_inputs(self.model, named, self.probe)
        except Exception as error:
            raise ValueError(
                "BetaMonitor could not run the model on `probe`; it must be a "
                "batch of model inputs, as `model(probe)` takes. "
                f"Received: probe of type {type(self.probe).__name__}. "
                f"Error: {error}"
            ) from error

    def _write(self, step):
        if not self._chief:
            return
        named = betas_lib.find_beta_layers(self.model)
        if not named:
            self._warn_no_layers()
            return
        layers = betas_lib.betas_of(named)
        inputs = self._capture(named) if self.probe is not None else None
        tf = _tensorflow()
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.write_dir)
        # record_if(True): Keras's TensorBoard callback may have pushed its own
        # record_if condition (update_freq=N) around the training loop. The
        # values are NumPy arrays already: summarise them on the CPU.
        with (
            tf.device("/cpu:0"),
            tf.summary.record_if(True),
            self._writer.as_default(step=step),
        ):
            self._write_betas(tf, layers, step)
            if inputs is not None:
                self._write_bump(tf, inputs)
        self._writer.flush()
        betas_lib.write_snapshot(layers, self.write_dir, step)
        self._last_step = step

    def _write_betas(self, tf, layers, step):
        values = betas_lib.all_values(layers)
        tf.summary.histogram("beta/all", values)
        for stat, value in _statistics(values).items():
            tf.summary.scalar(f"beta/{stat}", value)
        for layer in layers:
            tf.summary.histogram(f"beta_layer/{layer.name}", layer.values.reshape(-1))
            for stat, value in _statistics(layer.values).items():
                tf.summary.scalar(f"beta_layer/{layer.name}/{stat}", value)
        figure = plots.curves_figure(layers, step=step)
        tf.summary.image("beta/curves", plots.to_rgb(figure)[None])

    def _write_bump(self, tf, inputs):
        every = [v for v in inputs.values() if v.size]
        if not every:
            return
        every = np.concatenate(every)
        tf.summary.scalar("bump/share", probe_lib.bump_share(every))
        tf.summary.histogram("bump/inputs", every)
        for name, values in inputs.items():
            if values.size:
                tf.summary.scalar(f"bump_layer/{name}/share", probe_lib.bump_share(values))
                tf.summary.histogram(f"bump_layer/{name}", values)

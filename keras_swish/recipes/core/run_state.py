"""A run's resume state: what has been trained, committed by one atomic write.

Keras's `BackupAndRestore` deletes its backup when `fit` returns, before the
final evaluation and `final.keras`; `ModelCheckpoint(save_best_only=True)`
forgets the best value when a run resumes. Neither keeps a run whole through
a kill at any moment, so the runner keeps its own state in `<run>/state/`:

    state/state.json              the commit record: epochs done, best so
                                  far, per-epoch history, sessions
    state/epoch-E.weights.h5      weights and optimizer state after epoch E (the
                                  random-number generators' states — dropout's
                                  — which Keras does not save, are in state.json)
    state/best-E.keras            a new best model, until moved to best.keras
    state/average-E.h5            the model's weights after epoch E, for checkpoint
                                  averaging (`train.average_last` N): those of
                                  the last N committed epochs are kept

At the end of epoch E the runner (1) writes `epoch-E.weights.h5` and, when
E is the best so far, `best-E.keras`, and syncs them to the disk; (2) writes
`state.json` through a temporary file and a rename, synced — the commit (so
that after a lost machine no commit points to a file the disk lost); (3) moves `best-E.keras` to
`<run>/best.keras`, rewrites `metrics.json` and deletes the previous
checkpoint (and the averaging file that left the window). A kill
before (2) leaves files no record points to: they are
deleted on resume and epoch E is trained again. A kill after (2) is rolled
forward on resume: the pending best model is moved into place and
`metrics.json` rewritten. So a resumed run never redoes a committed epoch,
never loses the best model, and never forgets the history.
"""

import errno
import json
import os
import re
import shutil
import time
import warnings

from keras_swish.errors import UsageError
from keras_swish.files import fsync_path, json_text
from keras_swish.recipes.core import faults
from keras_swish.recipes.core.config import write_atomic

STATE_DIR = "state"
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.weights\.h5$")
_PENDING_BEST = re.compile(r"^best-(\d+)\.keras$")
_AVERAGE = re.compile(r"^average-(\d+)\.h5$")


def _generator_states(model):
    """The state variables of the model's `keras.random.SeedGenerator`s, in order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def optimizer_iterations(model):
    """The model's optimizer step counter, as an int."""
    from keras import ops

    return int(ops.convert_to_numpy(model.optimizer.iterations))


def read_json(path):
    """The JSON in `path`, or None if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


LOCK_NAME = ".lock"


class RunFolderInUse(UsageError):
    """Another process holds a run folder's `RunLock` (`output`, the holder's pid `holder`)."""

    output = holder = None


class RunLock:
    """An exclusive lock on a run folder for this process (`<run>/.lock`).

    An advisory `flock`: the operating system drops it when its process
    ends, however it ends (a `kill -9` too), so a stale lock cannot block a
    rerun. Where `fcntl` is missing (Windows) nothing is locked; where the
    file system has no locks (NFS without its lock daemon, Lustre mounted
    without them) a warning says so and nothing is locked.

    Args:
        output: The run folder (made if missing).

    Raises:
        RunFolderInUse: Another process holds the folder (its pid is named).
    """

    def __init__(self, output):
        os.makedirs(output, exist_ok=True)
        self.path = os.path.join(output, LOCK_NAME)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            import fcntl
        except ImportError:  # no flock on this platform
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            busy = RunFolderInUse(
                f"Run folder {output} is in use by another process (pid {holder}). Wait for "
                "it to finish or stop it, then run the same command again."
            )
            busy.output, busy.holder = output, holder
            raise busy from None
        except OSError as error:  # a file system without locks: NFS without lockd, Lustre
            if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(self._fd)
                self._fd = None
                raise
            warnings.warn(
                f"Cannot lock run folder {output} ({error.strerror}): its file system has no "
                "locks. Make sure that no other process writes to it at the same time.",
                stacklevel=2,
            )
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None


def is_locked(output):
    """Whether a process holds `output`'s `RunLock` now (False where that cannot be known).

    A folder without a lock file, a platform without `flock` or a file system
    without locks reads as not held. A free lock is taken for an instant to
    find that out (a `RunLock` made in that instant raises `RunFolderInUse`).
    The process asking counts as another if it holds the lock itself (`flock`
    locks an open file).
    """
    try:  # read-only: flock needs no more, and a chief of another user can read
        fd = os.open(os.path.join(output, LOCK_NAME), os.O_RDONLY)
    except OSError:  # no lock file: never locked
        return False
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except (ImportError, OSError):
        return False
    finally:
        os.close(fd)  # and with it the lock this call took
    return False


class RunState:
    """The committed state of the run in `output`.

    Args:
        output: The run folder.
        write: Whether this process writes (the chief); others only read.
    """

    def __init__(self, output, write=True):
        self.output = output
        self.dir = os.path.join(output, STATE_DIR)
        self.write = write
        path = os.path.join(self.dir, "state.json")
        record = read_json(path)
        if record is None and os.path.exists(path):
            # Never taken for "no state": that would delete the checkpoints and
            # train from epoch 1 over the run's best model.
            raise RuntimeError(
                f"{path} exists but cannot be read as JSON (a disk fault?). Nothing was "
                f"changed. Restore it, or move {self.dir} aside to train the run again "
                "from epoch 1."
            )
        self.record = record or {
            "epoch": 0,
            "checkpoint": None,
            "best": None,
            "history": [],
            "sessions": [],
        }

    @property
    def epoch(self):
        """Epochs committed (0: none)."""
        return int(self.record["epoch"])

    @property
    def best(self):
        """`{"epoch", "monitor", "value"}` of the best epoch so far, or None."""
        return self.record["best"]

    @property
    def history(self):
        return self.record["history"]

    @property
    def checkpoint(self):
        """Path of the committed weights, or None before the first epoch."""
        name = self.record["checkpoint"]
        return os.path.join(self.dir, name) if name else None

    def recover(self):
        """Rolls a committed epoch forward and deletes what no commit points to.

        Returns:
            True if `metrics.json` must be rewritten (a commit was rolled forward).
        """
        if not self.write:
            return False
        # A kill inside `write_atomic` or `model.save` leaves its temporary file
        # in the run folder; one while training a vocabulary, a folder.
        if os.path.isdir(self.output):
            for name in os.listdir(self.output):
                if name.startswith(".tmp-"):
                    path = os.path.join(self.output, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.remove(path)
        if not os.path.isdir(self.dir):
            return False
        rolled = False
        best = self.best
        for name in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, name)
            pending = _PENDING_BEST.match(name)
            checkpoint = _CHECKPOINT.match(name)
            average = _AVERAGE.match(name)
            if pending and best and int(pending.group(1)) == best["epoch"]:
                os.replace(path, os.path.join(self.output, "best.keras"))
                fsync_path(self.output)
                rolled = True
            elif (
                pending
                or (checkpoint and name != self.record["checkpoint"])
                or (average and int(average.group(1)) > self.epoch)
            ):
                os.remove(path)  # written for an epoch that was never committed
            elif name.startswith(".tmp-"):
                os.remove(path)
        return rolled

    def start_session(self, epoch, steps_per_pass=None, steps=None):
        """Notes that a session starts at epoch `epoch` (0-based) and saves the note.

        `steps_per_pass` and `steps` (per epoch) are kept for the schedule check
        of a later `--epochs` change, before `metrics.json` has them.
        """
        self.record["sessions"].append(
            {"started_at_epoch": epoch + 1, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )
        if steps_per_pass is not None:
            self.record.update(steps_per_pass=int(steps_per_pass), steps_per_epoch=int(steps))
        self.save()

    def commit_epoch(self, model, epoch, entry, monitor, average_last=0):
        """Saves and commits epoch `epoch` (1-based) with its metrics `entry`.

        Args:
            model: The model after the epoch.
            epoch: The epoch just finished, counting from 1.
            entry: Its metrics (a dict with `monitor` among them).
            monitor: The validation metric that picks the best model.
            average_last: Checkpoint averaging keeps the weights of the last
                this many committed epochs (0: none). A window that rolls
                with every epoch: a run stopped early and taken back to the
                epochs it trained has them too.

        Returns:
            Whether this epoch is the best so far.
        """
        value = entry.get(monitor)
        best = self.best
        improved = value is not None and value == value and (best is None or value > best["value"])
        if not self.write:  # the chief commits; this worker keeps count for its messages
            self.record["history"] = [e for e in self.history if e["epoch"] < epoch] + [entry]
            self.record["epoch"] = epoch
            if improved:
                self.record["best"] = {"epoch": epoch, "monitor": monitor, "value": value}
            return improved
        os.makedirs(self.dir, exist_ok=True)
        checkpoint = f"epoch-{epoch}.weights.h5"
        model.save_weights(os.path.join(self.dir, checkpoint))
        fsync_path(os.path.join(self.dir, checkpoint))
        if improved:
            model.save(os.path.join(self.dir, f"best-{epoch}.keras"))
            fsync_path(os.path.join(self.dir, f"best-{epoch}.keras"))
        if average_last:
            save_model_weights(model, os.path.join(self.dir, f"average-{epoch}.h5"))
        faults.point("epoch_saved", epoch)
        previous = self.record["checkpoint"]
        self.record["history"] = [e for e in self.history if e["epoch"] < epoch] + [entry]
        self.record.update(
            epoch=epoch,
            checkpoint=checkpoint,
            generators=[v.numpy().tolist() for v in _generator_states(model)],
            optimizer_iterations=optimizer_iterations(model),
        )
        if improved:
            self.record["best"] = {"epoch": epoch, "monitor": monitor, "value": value}
        self.save()  # the commit
        faults.point("epoch_committed", epoch)
        if improved:
            os.replace(
                os.path.join(self.dir, f"best-{epoch}.keras"),
                os.path.join(self.output, "best.keras"),
            )
            fsync_path(self.output)
        if previous and previous != checkpoint:
            try:
                os.remove(os.path.join(self.dir, previous))
            except FileNotFoundError:
                pass
        self.prune_averages(average_last)
        return improved

    def prune_averages(self, average_last):
        """Deletes the averaging files of epochs before the last `average_last` committed.

        After each commit, and again in the final stage (a kill between a
        commit and this leaves one behind).
        """
        for kept in self.averaged_epochs():
            if kept <= self.epoch - average_last:
                os.remove(os.path.join(self.dir, f"average-{kept}.h5"))

    def averaged_epochs(self, first=1):
        """The committed epochs from `first` on whose weights are kept for averaging."""
        if not os.path.isdir(self.dir):
            return []
        epochs = (_AVERAGE.match(name) for name in os.listdir(self.dir))
        return sorted(e for e in (int(m.group(1)) for m in epochs if m) if first <= e <= self.epoch)

    def average_into(self, model, first):
        """Sets `model`'s weights to the mean of the weights kept from epoch `first` on.

        Float variables get the mean (in float64, cast back), BatchNorm's
        moving statistics too (SWA would recompute them with a pass over the
        training data; the Transformer has none); any others the last epoch's
        values.

        Returns:
            The epochs averaged (an empty list leaves `model` as it was).
        """
        epochs = self.averaged_epochs(first)
        if not epochs:
            return []
        import numpy as np

        total = None
        for epoch in epochs:
            values = load_model_weights(model, os.path.join(self.dir, f"average-{epoch}.h5"))
            if total is None:
                total = [v.astype(np.float64) if _is_float(v) else v for v in values]
            else:
                total = [t + v if _is_float(v) else v for t, v in zip(total, values, strict=True)]
        for variable, value in zip(model.weights, total, strict=True):
            if _is_float(value):
                value = value / len(epochs)
            variable.assign(value.astype(variable.dtype))
        return epochs

    def restore(self, model):
        """Loads the committed weights, optimizer and generator states into `model`.

        The model's optimizer must be built. Restoring the generators too makes
        a resumed run draw the dropout masks the uninterrupted run would have.
        """
        model.load_weights(self.checkpoint)
        saved = self.record.get("generators") or []
        variables = _generator_states(model)
        if len(saved) == len(variables):
            for variable, value in zip(variables, saved, strict=True):
                variable.assign(value)

    def save(self):
        if self.write:
            os.makedirs(self.dir, exist_ok=True)
            write_atomic(os.path.join(self.dir, "state.json"), json_text(self.record, indent=2))


def _is_float(array):
    import numpy as np

    return np.issubdtype(array.dtype, np.floating)


# `model.save_weights` writes the optimizer's state too (Adam: twice the
# weights); averaging needs the model's variables only. So they are written
# here with h5py (a Keras dependency), one dataset each, in `model.weights`
# order (the same for the same architecture; the variables' paths are not:
# Keras numbers auto-named layers per process, so a resumed session's may
# differ), with their names (`kernel`, `gamma`: the paths' last parts) and
# shapes checked on reading.
def save_model_weights(model, path):
    """Writes `model`'s variables (no optimizer state) to the HDF5 file `path`, synced."""
    import h5py
    from keras import ops

    with h5py.File(path, "w") as f:
        for index, variable in enumerate(model.weights):
            value = ops.convert_to_numpy(variable)
            if str(value.dtype) == "bfloat16":  # not an HDF5 type: exact in float32
                value = value.astype("float32")
            dataset = f.create_dataset(str(index), data=value)
            dataset.attrs["path"] = variable.path
    fsync_path(path)


def load_model_weights(model, path):
    """The arrays `save_model_weights` wrote, in `model.weights` order.

    Raises:
        RuntimeError: The file holds another model's variables.
    """
    import h5py

    with h5py.File(path, "r") as f:
        values = [f[str(i)][()] for i in range(len(f))]
        paths = [f[str(i)].attrs["path"] for i in range(len(f))]
    weights = model.weights
    if len(values) != len(weights):
        raise RuntimeError(
            f"{path} holds {len(values)} variables, this run's model {len(weights)}: the "
            "weights of another model."
        )
    for value, saved, variable in zip(values, paths, weights, strict=True):
        name = saved.rsplit("/", 1)[-1]
        if name != variable.name or tuple(value.shape) != tuple(variable.shape):
            raise RuntimeError(
                f"{path} holds the weights of another model: {saved} has shape "
                f"{tuple(value.shape)}, this run's {variable.path} {tuple(variable.shape)}."
            )
    return values

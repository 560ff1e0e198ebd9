"""Named points where a test can kill the runner, to prove a run survives it.

`KERAS_SWISH_KILL_AT=POINT` (or `POINT:EPOCH`) makes the process SIGKILL
itself when it reaches that point (of that epoch): no cleanup, no `finally`,
exactly what `kill -9` or a lost machine does. Unset — always, outside
tests — every point is a no-op. The points, in the order a run meets them:

- `configured` — every input is checked and `config.yaml` written (a longer
  run: rewritten with the new epochs), the model not yet built;
- `epoch_saved:E` — epoch E's checkpoint (and best model, if better) are
  written, the commit record not yet;
- `epoch_committed:E` — epoch E is committed, `best.keras` and
  `metrics.json` not yet updated;
- `final_evaluation` — training is done, the best model is being evaluated;
- `saving_final` — `final.keras` is written to a temporary file, not yet
  renamed;
- `averaging` — `final.keras` is in place; the last epochs' weights are
  being averaged (runs with `train.average_last`);
- `saving_averaged` — `averaged.keras` is written to a temporary file, not
  yet renamed;
- `before_complete` — `final.keras` (and `averaged.keras`) are in place,
  `metrics.json` is not yet marked complete.
"""

import os
import signal

KILL_ENV = "KERAS_SWISH_KILL_AT"


def point(name, epoch=None):
    """Kills this process if `KERAS_SWISH_KILL_AT` names this point."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    if wanted == name or (epoch is not None and wanted == f"{name}:{epoch}"):
        os.kill(os.getpid(), signal.SIGKILL)

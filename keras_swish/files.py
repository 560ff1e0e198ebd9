"""Writing files whole: what a kill or a lost machine cannot leave half-written.

Not public API. Used by the callbacks (`betas.json`, plots) and the training
side (configs, metrics, the run state) alike.
"""

import json
import math
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path):
    """Flushes a file's (or a folder's: its entries') data to the disk.

    Folders: a rename is durable only once its folder is synced. Where a
    platform cannot open a folder for that (Windows), this does nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


def write_atomic(path, data):
    """Writes `data` (str or bytes) to `path` through a temporary file and a rename.

    A kill at any moment leaves either the old file or the new one, never a
    part of it, and a lost machine one or the other once this returns (the
    file and its folder are synced). The file gets the permissions any new
    file gets (0666 less the umask), not the 0600 of a temporary file, so a
    shared run folder stays readable by a team.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13 (no 0600 there)
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_path(directory)


def json_text(value, indent=None):
    """`value` as standard JSON: a NaN or infinite float is written `null`.

    `json.dumps` writes them as bare `NaN` / `Infinity`, which Python reads
    back but JSON itself (JavaScript, many tools) does not: a diverged run's
    losses made its `metrics.json` unreadable there.
    """

    def finite(item):
        if isinstance(item, float):
            return item if math.isfinite(item) else None
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(v) for v in item]
        return item

    return json.dumps(finite(value), indent=indent, allow_nan=False)

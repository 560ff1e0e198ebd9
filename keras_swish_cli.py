"""The `keras-swish` console script: quiet TensorFlow, then `keras_swish.cli.main`.

Importing `keras_swish` imports Keras and so TensorFlow, whose shared
libraries print a dozen C++ log lines as they load (oneDNN, CUDA probing,
"E0000 ... failed call to cuInit" on a machine without a GPU) — before absl
reads any setting, so TF_CPP_MIN_LOG_LEVEL alone cannot hide them. This
module lives outside the package so that it runs before that import: it
imports TensorFlow with file descriptor 2 pointed at a temporary file (replayed
if the import fails) and sets TF_CPP_MIN_LOG_LEVEL=3 for what follows.
`keras-swish --verbose ...`, or a TF_CPP_MIN_LOG_LEVEL of the user's own,
shows everything.
"""

import os
import sys
import tempfile


def wants_tf_logs(argv):
    """Whether `--verbose` comes before the command (`train --verbose N` is Keras's)."""
    for arg in argv:
        if arg == "--verbose":
            return True
        if not arg.startswith("-"):
            return False
    return False


_OURS = "KERAS_SWISH_QUIET_TF"  # marks a TF_CPP_MIN_LOG_LEVEL set here, not by the user


def import_tensorflow_quietly():
    """Imports TensorFlow with its C++ start-up lines hidden; replays them on failure."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_OURS] = "1"  # the runs `compare` and `launch` start stay quiet too
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
                raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    users_level = "TF_CPP_MIN_LOG_LEVEL" in os.environ and os.environ.get(_OURS) != "1"
    if not wants_tf_logs(argv) and not users_level:
        try:
            import_tensorflow_quietly()
        except ImportError:
            pass  # the replayed lines and keras_swish's own import say what is wrong
    from keras_swish.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())

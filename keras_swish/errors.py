"""The one error type the command line turns into a usage message."""


class UsageError(ValueError):
    """Bad input from the user: a config value, a path, a data spec.

    `keras-swish` prints its message on one line and exits with status 2.
    Every other exception keeps its traceback: it is a bug, or a failure
    deep inside Keras or TensorFlow that the message alone would hide.
    """

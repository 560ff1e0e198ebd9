"""Test setup shared by every test module.

The Keras backend comes from KERAS_BACKEND (default: tensorflow). Tests marked
`all_backends` are the backend-agnostic core; `tests/test_backends.py` runs
them again under JAX and PyTorch in subprocesses.

Under TensorFlow the one physical CPU is split into two logical devices
before TensorFlow starts, so that MirroredStrategy can be tested on one CPU.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu,
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )

import keras_swish  # noqa: E402,F401  (registers "swish_beta")


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts with Keras's default dtype policy and fresh names."""
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    yield
    keras.config.set_dtype_policy("float32")

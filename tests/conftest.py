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


# The files that run longest (seconds in the last `-n 2` run), first: pytest-xdist
# (the README's `-n 2`) hands out whole files in collection order, so the two
# workers end together instead of one running a 6-minute file while the other
# idles. Without `-n` only the order changes. Tests must not depend on it.
_LONGEST_FIRST = (
    "recipes/test_inception_resnet_v2.py",  # ~430 s
    "test_multi_worker.py",  # ~425 s
    "recipes/test_runner.py",  # ~370 s
    "search/test_search.py",  # ~360 s
    "recipes/test_transformer_nmt_cli.py",  # ~290 s
    "test_backends.py",  # ~240 s, JAX and PyTorch subprocesses side by side
    "recipes/test_compare.py",  # ~230 s
    "recipes/test_cli.py",  # ~160 s
    "recipes/test_cifar.py",  # ~140 s
    "search/test_expr_recipes.py",  # ~115 s
)


def pytest_collection_modifyitems(config, items):
    tests = os.path.dirname(os.path.abspath(__file__))
    rank = {os.path.join(tests, *name.split("/")): i for i, name in enumerate(_LONGEST_FIRST)}
    stale = [path for path in rank if not os.path.isfile(path)]
    if stale:  # a renamed file would silently lose its place
        raise pytest.UsageError(f"tests/conftest.py _LONGEST_FIRST names missing files: {stale}")
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))  # stable: the rest as found

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

# The longest test files first, by their seconds in one clean-clone `pytest -n 2
# --durations=150` run (2026-12-05, session 17; rounded). Under `--dist loadfile` a file runs
# whole on one worker: pytest-xdist's default order (most tests first) put these
# files of few, long tests last, where one of them could leave the other worker
# idle at the end. Longest first (LPT), the short files fill in at the end. Files
# not listed (each under a minute) keep their order after these;
# `--no-loadscope-reorder` (pyproject.toml) keeps this order.
_FILE_SECONDS = {
    "tests/test_multi_worker.py": 1130,
    "tests/recipes/test_runner.py": 760,
    "tests/recipes/test_inception_resnet_v2.py": 700,
    "tests/search/test_search.py": 570,
    "tests/test_backends.py": 450,
    "tests/recipes/test_transformer_nmt_cli.py": 340,
    "tests/recipes/test_cli.py": 320,
    "tests/recipes/test_averaging.py": 320,
    "tests/recipes/test_compare.py": 200,
    "tests/recipes/test_cifar.py": 190,
    "tests/recipes/test_portability.py": 170,
    "tests/search/test_expr_recipes.py": 130,
    "tests/recipes/test_transformer_nmt.py": 50,
    "tests/recipes/test_data.py": 20,
}


def pytest_collection_modifyitems(config, items):
    # A stable sort: each file's tests keep their order.
    items.sort(key=lambda item: -_FILE_SECONDS.get(item.nodeid.split("::")[0], 0))


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts with Keras's default dtype policy and fresh names."""
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    yield
    keras.config.set_dtype_policy("float32")

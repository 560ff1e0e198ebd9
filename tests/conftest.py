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
# --durations=120` run (2026-12-05; rounded). Under `--dist loadfile` a file runs
# whole on one worker: pytest-xdist's default order (most tests first) put these
# files of few, long tests last, where one of them could leave the other worker
# idle at the end. Longest first (LPT), the short files fill in at the end. Files
# not listed (each under a minute) keep their order after these;
# `--no-loadscope-reorder` (pyproject.toml) keeps this order.
_FILE_SECONDS = {
    "tests/test_multi_worker.py": 870,
    "tests/recipes/test_runner.py": 710,
    "tests/recipes/test_inception_resnet_v2.py": 500,
    "tests/search/test_search.py": 490,
    "tests/test_backends.py": 390,
    "tests/recipes/test_transformer_nmt_cli.py": 330,
    "tests/recipes/test_averaging.py": 280,
    "tests/recipes/test_portability.py": 270,
    "tests/recipes/test_cli.py": 270,
    "tests/recipes/test_compare.py": 230,
    "tests/recipes/test_cifar.py": 200,
    "tests/search/test_expr_recipes.py": 150,
    "tests/recipes/test_data.py": 50,
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

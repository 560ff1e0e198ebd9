"""Every public class and function has a docstring example, and every example runs.

The public API is what `keras_swish`, `keras_swish.expressions` and
`keras_swish.callbacks` list in `__all__`. Examples run as `doctest` would in
their own module, with `keras`, `keras_swish`, `np` and `tempfile` at hand.
"""

import doctest
import inspect
import sys
import tempfile

import keras
import numpy as np
import pytest

import keras_swish
import keras_swish.callbacks
import keras_swish.callbacks.betas
import keras_swish.expressions
from keras_swish.recipes.models import auxiliary, transformer


def _public():
    """(qualified name, object) of every public class, function and module, once each.

    Constants (`UNARY`, `__version__`, ...) have no docstring of their own."""
    found = {}
    for module in (keras_swish, keras_swish.expressions, keras_swish.callbacks):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
                found.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
    # Modules whose own functions have examples, though not listed in `__all__`.
    for module in (keras_swish.callbacks.betas, auxiliary, transformer):
        found.setdefault(id(module), (module.__name__, module))
    return sorted(found.values(), key=lambda item: item[0])


def _tests(qualified, obj):
    home = sys.modules.get(getattr(obj, "__module__", None) or "")
    globs = dict(vars(obj if inspect.ismodule(obj) else home))
    globs.update(keras=keras, keras_swish=keras_swish, np=np, tempfile=tempfile)
    return doctest.DocTestFinder(recurse=True).find(obj, name=qualified, globs=globs)


@pytest.fixture(autouse=True)
def _names_registered_by_examples_are_removed():
    """`register_activation`'s example registers "my_act": not for later tests."""
    from keras_swish import activations

    before = dict(activations._REGISTRY)
    yield
    activations._REGISTRY.clear()
    activations._REGISTRY.update(before)


@pytest.mark.parametrize("qualified, obj", _public(), ids=[q for q, _ in _public()])
def test_public_examples_run(qualified, obj):
    tests = _tests(qualified, obj)
    if not inspect.ismodule(obj):
        own = [t for t in tests if t.name == qualified]
        assert own and own[0].examples, f"{qualified} has no example in its docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

import keras_swish
from keras_swish import ExpressionActivation, SwishBeta, expression_activation
from keras_swish.expressions.formula import FormulaError, parse
from keras_swish.recipes.models import activations as recipe_activations
from tests.backend_utils import to_numpy, value_and_grads
from tests.layer_contract import check_layer_contract

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTILE = "__import__('os').system('echo pwned')"


@pytest.mark.all_backends
@pytest.mark.parametrize(
    "kwargs, input_shape, weight_shapes",
    [
        ({"formula": "x * sigmoid(beta * x)"}, (4, 5, 5, 3), [(3,)]),
        (
            {"formula": "beta * x + (1 - beta) * sin(x)", "shared_axes": [1, 2, 3]},
            (4, 5, 5, 3),
            [()],
        ),
        ({"formula": "min(x, sin(x))"}, (3, 8), []),
    ],
)
def test_layer_contract(kwargs, input_shape, weight_shapes):
    check_layer_contract(ExpressionActivation, kwargs, input_shape, weight_shapes)


@pytest.mark.all_backends
def test_swish_formula_matches_swish_beta_values_and_gradients():
    rng = np.random.default_rng(3)
    x = rng.normal(scale=3.0, size=(4, 3, 5)).astype("float32")
    beta = rng.uniform(-1.0, 3.0, size=(5,)).astype("float32")
    expr = parse("sigmoid(beta * x) * x")
    out, (dx, dbeta) = value_and_grads(lambda x, b: expr.evaluate(x, b), x, beta)
    ref, (ref_dx, ref_dbeta) = value_and_grads(keras_swish.swish, x, beta)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dbeta, ref_dbeta, rtol=1e-4, atol=1e-4)

    layer, swish = ExpressionActivation("x * sigmoid(beta * x)"), SwishBeta()
    layer.build(x.shape)
    swish.build(x.shape)
    layer.beta.assign(beta)
    swish.beta.assign(beta)
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(swish(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.all_backends
def test_layer_values_match_numpy():
    rng = np.random.default_rng(4)
    x = rng.uniform(-4, 4, size=(6, 4, 3)).astype("float32")
    references = {
        "max(x, sigmoid(x))": lambda x, b: np.maximum(x, 1 / (1 + np.exp(-x))),
        "cos(x) - x": lambda x, b: np.cos(x) - x,
        "x * asinh(x) ** 2": lambda x, b: x * np.arcsinh(x) ** 2,
        "exp(-(beta * abs(x - atan(x))))": lambda x, b: np.exp(-b * np.abs(x - np.arctan(x))),
        "x / (eps + beta + x ** 2)": lambda x, b: x / (1e-5 + b + x**2),
    }
    for formula, reference in references.items():
        layer = ExpressionActivation(formula, shared_axes=[1])
        layer.build(x.shape)
        beta = rng.uniform(0.5, 2.0, size=(3,)).astype("float32")
        if layer.expression.uses_beta:
            assert tuple(layer.beta.shape) == (3,)
            layer.beta.assign(beta)
        else:
            assert not layer.weights
        expected = reference(x.astype("float64"), beta.astype("float64"))
        y = to_numpy(layer(x))
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5, err_msg=formula)


@pytest.mark.all_backends
def test_beta_on_a_middle_axis():
    x = np.random.default_rng(5).normal(size=(2, 3, 4)).astype("float32")
    layer = ExpressionActivation("beta * x", shared_axes=[2])
    layer.build(x.shape)
    layer.beta.assign(np.array([1.0, 2.0, 3.0], "float32"))
    np.testing.assert_allclose(to_numpy(layer(x)), x * np.array([1, 2, 3])[None, :, None])


@pytest.mark.all_backends
def test_as_the_activation_of_keras_layers():
    x = np.random.default_rng(6).normal(size=(3, 6)).astype("float32")
    act = expression_activation("max(x, sigmoid(x))")
    dense = keras.layers.Dense(4, activation=act)
    y = to_numpy(dense(x))
    kernel, bias = (to_numpy(w) for w in dense.weights)
    z = x @ kernel + bias
    np.testing.assert_allclose(y, np.maximum(z, 1 / (1 + np.exp(-z))), rtol=1e-5, atol=1e-6)

    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="expr:x * sigmoid(beta * x)")(inputs)
    outputs = keras.layers.Dense(2, activation="expr:x * sigmoid(beta * x)")(hidden)
    model = keras.Model(inputs, outputs)
    betas = [w for w in model.weights if w.name == "beta"]
    assert [tuple(b.shape) for b in betas] == [(5,), (2,)]  # one β per use, built with it
    assert model.count_params() == 6 * 5 + 5 + 5 + 5 * 2 + 2 + 2
    first = keras.activations.get("expr:sin(x) + x")
    assert isinstance(first, ExpressionActivation) and first.formula == "x + sin(x)"
    assert keras.activations.get("expr:sin(x) + x") is not first
    with pytest.raises(FormulaError, match="position 2"):
        keras.activations.get("expr:os.system")


@pytest.mark.all_backends
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_inputs(dtype):
    x = np.linspace(-4, 4, 24, dtype="float32").reshape(2, 12)
    layer = ExpressionActivation("x * sigmoid(beta * x) + 0.1 * sin(x)", dtype=dtype)
    y = layer(keras.ops.cast(x, dtype))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    assert keras.backend.standardize_dtype(layer.beta.dtype) == dtype
    expected = parse(layer.formula).numpy(x)
    np.testing.assert_allclose(to_numpy(keras.ops.cast(y, "float32")), expected, atol=0.1)


@pytest.mark.all_backends
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_beta_stays_float32_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(4, activation="expr:max(x, beta * sin(x))")(inputs)
    model = keras.Model(inputs, outputs)
    (beta,) = [w for w in model.weights if w.name == "beta"]
    assert keras.backend.standardize_dtype(beta.dtype) == "float32"
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 6)), np.ones((8, 4)), verbose=0)
    assert keras.backend.standardize_dtype(beta.dtype) == "float32"
    assert np.all(np.isfinite(to_numpy(beta)))


def _model():
    rng = np.random.default_rng(7)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(4, activation="expr:sigmoid(beta * x) * x")(inputs)
    hidden = ExpressionActivation("min(x, sin(x))")(hidden)
    outputs = ExpressionActivation("exp(-(beta * (x - cos(x)) ** 2))", name="bump")(hidden)
    model = keras.Model(inputs, outputs)
    for w in model.weights:
        if w.name == "beta":
            w.assign(rng.uniform(0.5, 2.0, size=w.shape).astype("float32"))
    return model


@pytest.mark.all_backends
def test_keras_file_round_trip_in_a_fresh_process(tmp_path):
    model = _model()
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.random.default_rng(8).normal(size=(3, 5)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import json, keras, numpy as np, keras_swish
        from tests.backend_utils import to_numpy
        m = keras.models.load_model({str(path)!r}, safe_mode=True)
        np.save({str(tmp_path / "y.npy")!r}, to_numpy(m(np.load({str(tmp_path / "x.npy")!r}))))
        betas = {{w.path: to_numpy(w).tolist() for w in m.weights if w.name == "beta"}}
        print(json.dumps(betas))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    betas = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {w.path: to_numpy(w) for w in model.weights if w.name == "beta"}
    assert betas.keys() == expected.keys() and len(betas) == 2
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(betas[key], "float32"), value)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), to_numpy(model(x)))


def test_config_stores_the_canonical_formula():
    layer = ExpressionActivation("sigmoid(beta*x)*x", beta_initializer=0.5, shared_axes=2)
    config = layer.get_config()
    assert config["formula"] == "x * sigmoid(beta * x)" and config["shared_axes"] == [2]
    again = ExpressionActivation.from_config(config)
    assert again.expression == layer.expression and again.get_config() == config
    assert keras.saving.get_registered_name(ExpressionActivation) == (
        "keras_swish>ExpressionActivation"
    )
    with pytest.raises(FormulaError):
        ExpressionActivation.from_config({**config, "formula": HOSTILE})


@pytest.mark.parametrize("safe_mode", [True, False])
def test_a_keras_file_with_a_hostile_formula_does_not_load(tmp_path, safe_mode):
    keras.Sequential([keras.Input((3,)), ExpressionActivation("max(x, sigmoid(x))")]).save(
        tmp_path / "good.keras"
    )
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(tmp_path / "good.keras") as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert "max(x, sigmoid(x))" in text
                data = text.replace("max(x, sigmoid(x))", HOSTILE).encode()
            dst.writestr(item, data)
    with pytest.raises(Exception) as info:  # noqa: B017
        keras.models.load_model(bad, safe_mode=safe_mode)
    chain, error = [], info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, FormulaError) for e in chain), repr(info.value)
    assert not (tmp_path / "pwned").exists()


def test_public_names():
    for name in ("ExpressionActivation", "expression_activation", "expressions"):
        assert name in keras_swish.__all__ and hasattr(keras_swish, name)
    assert keras_swish.expressions.parse("x") == parse("x")


def test_recipe_activations_accept_formulas():
    recipe_activations.check_activation("expr:max(x, sigmoid(x))")
    recipe_activations.check_activation("relu")
    with pytest.raises(ValueError, match=r"position 4(.|\n)*Allowed: x, beta, eps") as info:
        recipe_activations.check_activation("expr:x * foo(x)")
    assert not isinstance(info.value, FormulaError)
    with pytest.raises(ValueError, match="Choose one of: relu"):
        recipe_activations.check_activation("expression")
    assert recipe_activations.is_piecewise_linear("expr:max(x, 0)") is False
    assert recipe_activations.is_piecewise_linear("relu") is True
    layer = recipe_activations.activation_layer("expr:cos(x) - x", layer_name="act_3")
    assert isinstance(layer, ExpressionActivation)
    assert layer.name == "act_3" and layer.formula == "cos(x) - x"


def test_activation_slug():
    slug = recipe_activations.activation_slug
    assert slug("relu") == "relu" and slug("swish_beta") == "swish_beta"
    assert re.fullmatch(r"expr-max_x_sigmoid_x-[0-9a-f]{8}", slug("expr:max(x, sigmoid(x))"))
    assert slug("expr:max(sigmoid(x),x)") == slug("expr:max(x, sigmoid(x))")
    assert slug("expr:x - sin(x)") != slug("expr:x + sin(x)")
    long = "expr:" + " + ".join(f"{i}.5 * sin(x)" for i in range(40))
    for name in ("expr:x * sigmoid(beta * x)", "expr:x / (eps + 0.5 * x ** 2)", long):
        value = slug(name)
        assert len(value) <= 60 and re.fullmatch(r"[A-Za-z0-9_.-]+", value), value
        assert value.startswith("expr-")
    with pytest.raises(ValueError):
        slug("expr:x ^ 2")
    with pytest.raises(ValueError):
        slug("no_such_activation")

"""BetaMonitor and beta_report with ExpressionActivation: every layer with a β.

An ExpressionActivation whose formula uses `beta` is a β layer beside
SwishBeta: its β is summarised, snapshotted and reported, and the curves
picture draws its own formula (Expression.numpy at its β), not x·σ(βx). An
ExpressionActivation without `beta` has no β and is not listed.
"""

import json
import os
import warnings

import keras
import numpy as np
import pytest

import keras_swish
from keras_swish.callbacks import BetaMonitor, beta_report, plots
from keras_swish.callbacks import betas as betas_lib
from keras_swish.expressions import parse
from tests.callbacks.helpers import read_events

FORMULA = "max(x, sigmoid(beta * x))"
NO_BETA = "max(x, sigmoid(x))"
STATS = ("mean", "std", "min", "max")
EXPR_NAME = "mixed/expression_activation"  # The standalone layer below.
SWISH_NAME = "mixed/fc/swish_beta"


def mixed_model():
    """An ExpressionActivation with β, one without, and a SwishBeta."""
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6),
            keras_swish.ExpressionActivation(FORMULA),
            keras.layers.Dense(5, activation=f"expr:{NO_BETA}", name="plain"),
            keras.layers.Dense(3, activation="swish_beta", name="fc"),
            keras.layers.Dense(1),
        ],
        name="mixed",
    )
    model.compile(keras.optimizers.SGD(0.2), "mse")
    return model


def mixed_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)).astype("float32") * 2.0
    y = rng.normal(size=(16, 1)).astype("float32")
    return x, y


def trained(log_dir):
    keras.utils.set_random_seed(1)
    model = mixed_model()
    x, y = mixed_data()
    monitor = BetaMonitor(log_dir, probe=x[:4])
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[monitor], verbose=0)
    named = dict(betas_lib.find_beta_layers(model))
    actual = {
        name: betas_lib.to_numpy(layer.beta).astype(np.float32) for name, layer in named.items()
    }
    return model, named, actual


def final(events, tag):
    return events[tag][-1][1]


@pytest.mark.all_backends
def test_monitor_summarises_expression_and_swish_beta(tmp_path):
    model, named, actual = trained(tmp_path)
    # The formula without beta is no β layer; the two others are, by type.
    assert list(named) == [EXPR_NAME, SWISH_NAME]
    assert isinstance(named[EXPR_NAME], keras_swish.ExpressionActivation)
    assert isinstance(named[SWISH_NAME], keras_swish.SwishBeta)
    assert actual[EXPR_NAME].shape == (6,) and actual[SWISH_NAME].shape == (3,)
    for name, beta in actual.items():
        assert np.abs(beta - 1.0).max() > 1e-4, name  # Trained away from 1.

    events = read_events(str(tmp_path / "beta"))
    layer_tags = {t for t in events if t.startswith(("beta_layer/", "bump_layer/"))}
    assert {t.split("/")[1] for t in layer_tags} == {"mixed"}
    assert {f"beta_layer/{EXPR_NAME}", f"beta_layer/{SWISH_NAME}"} <= layer_tags
    assert not any("plain" in tag for tag in events)
    assert f"bump_layer/{EXPR_NAME}/share" in events
    for tag, values in events.items():
        assert [step for step, _ in values] == [0, 1], tag

    for name, beta in actual.items():
        histogram = final(events, f"beta_layer/{name}")  # [bucket, (left, right, count)]
        assert histogram[:, 2].sum() == beta.size, name
        np.testing.assert_allclose(histogram[0, 0], beta.min(), rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(histogram[-1, 1], beta.max(), rtol=1e-6, err_msg=name)
        for stat in STATS:
            np.testing.assert_allclose(
                final(events, f"beta_layer/{name}/{stat}"),
                getattr(np, stat)(beta.astype(np.float64)),
                rtol=1e-6,
                atol=1e-7,
                err_msg=f"{name}/{stat}",
            )
    every = np.concatenate([actual[EXPR_NAME], actual[SWISH_NAME]])
    assert final(events, "beta/all")[:, 2].sum() == every.size == 9
    np.testing.assert_allclose(final(events, "beta/min"), every.min(), rtol=1e-6)
    np.testing.assert_allclose(final(events, "beta/max"), every.max(), rtol=1e-6)
    np.testing.assert_allclose(final(events, "beta/mean"), every.mean(dtype=np.float64), rtol=1e-6)

    # The snapshot: exact β, and the formula of the expression layer only.
    with open(tmp_path / "beta" / "betas.json") as f:
        entries = {e["name"]: e for e in json.load(f)["layers"]}
    assert entries[EXPR_NAME]["formula"] == FORMULA
    assert "formula" not in entries[SWISH_NAME]
    step, layers = betas_lib.read_snapshot(tmp_path / "beta" / "betas.json")
    assert step == 1
    assert [(layer.name, layer.formula) for layer in layers] == [
        (EXPR_NAME, FORMULA),
        (SWISH_NAME, None),
    ]
    for layer in layers:
        np.testing.assert_array_equal(layer.values, actual[layer.name])


@pytest.mark.all_backends
def test_curves_draw_each_layers_own_function(tmp_path):
    model, _, actual = trained(tmp_path)
    layers = betas_lib.read_betas(model)
    groups = plots.curve_groups(layers)
    assert [(g.function, g.layers, g.swish) for g in groups] == [
        (FORMULA, (EXPR_NAME,), False),
        ("x * sigmoid(beta * x)", (SWISH_NAME,), True),
    ]
    expression, swish = groups
    x = np.linspace(-6.0, 6.0, 601)
    np.testing.assert_array_equal(expression.x, x)
    for group, name in ((expression, EXPR_NAME), (swish, SWISH_NAME)):
        quantiles = np.quantile(actual[name].astype(np.float64), plots.QUANTILES)
        np.testing.assert_allclose(group.betas, quantiles, rtol=1e-12)
        assert group.betas[0] < group.betas[-1]  # Several distinct β.
    for beta, curve in zip(expression.betas, expression.curves, strict=True):
        np.testing.assert_array_equal(curve, parse(FORMULA).numpy(x, beta=beta))
        # Not the Swish: max(x, σ(βx)) is σ(βx) > 0 for x ≪ 0.
        assert curve[0] > 0.0
    swish_formula = parse("x * sigmoid(beta * x)")
    for beta, curve in zip(swish.betas, swish.curves, strict=True):
        np.testing.assert_allclose(curve, swish_formula.numpy(x, beta=beta), atol=1e-12)

    # The figure draws exactly these curves, one panel per function.
    figure = plots.curves_figure(layers, step=7)
    assert figure.get_suptitle() == "Learned activation curves (step 7)"
    panels = figure.get_axes()
    assert len(panels) == 2
    assert "Swish" not in panels[0].get_title() and FORMULA in panels[0].get_title()
    for axes, group in zip(panels, groups, strict=True):
        drawn = {line.get_label(): line.get_ydata() for line in axes.get_lines()}
        for label, beta, curve in zip(group.labels, group.betas, group.curves, strict=True):
            np.testing.assert_array_equal(drawn[f"{label}: β = {beta:.4g}"], curve)
    assert "x/2 (β = 0)" not in [line.get_label() for line in panels[0].get_lines()]
    assert plots.to_rgb(figure).shape == (500, 800, 3)


def test_curves_of_one_formula_and_of_swish_alone():
    beta = np.array([0.25, 0.5, 1.0, 2.0, 4.0], np.float32)
    layer = betas_lib.LayerBetas("act", beta, "x / beta + cos(x)")
    (group,) = plots.curve_groups([layer])
    np.testing.assert_array_equal(
        group.betas, np.quantile(beta.astype(np.float64), plots.QUANTILES)
    )
    for b, curve in zip(group.betas, group.curves, strict=True):
        np.testing.assert_array_equal(curve, parse("x / beta + cos(x)").numpy(group.x, beta=b))
    figure = plots.curves_figure([layer], step=2)
    (axes,) = figure.get_axes()
    assert axes.get_title() == "Learned activation curves (step 2)"
    assert "Swish" not in axes.get_ylabel() and "cos(x)" in axes.get_ylabel()

    # An ExpressionActivation of the Swish formula joins the SwishBeta group.
    swishes = [
        betas_lib.LayerBetas("a", np.array([1.0, 2.0], np.float32)),
        betas_lib.LayerBetas("b", np.array([3.0], np.float32), "x * sigmoid(beta * x)"),
    ]
    (group,) = plots.curve_groups(swishes)
    assert group.swish and group.layers == ("a", "b")
    assert plots.curves_title(swishes, 5) == "Learned Swish curves (step 5)"
    # Bare β values are SwishBeta, as before.
    (group,) = plots.curve_groups(np.array([[0.5, 1.5]]))
    assert group.swish
    assert plots.curves_figure(np.array([1.0])).get_axes()[0].get_title() == (
        "Learned Swish curves"
    )


def test_a_pole_in_the_formula_is_drawn_as_gaps():
    layer = betas_lib.LayerBetas("act", np.array([1.0], np.float32), "x / (beta * x)")
    (group,) = plots.curve_groups([layer])
    assert np.isnan(group.curves[:, 300]).all()  # x = 0
    assert np.isfinite(np.delete(group.curves, 300, axis=1)).all()
    plots.to_rgb(plots.curves_figure([layer]))


@pytest.mark.all_backends
def test_formula_without_beta_is_no_beta_layer(tmp_path):
    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation=f"expr:{NO_BETA}"),
            keras_swish.ExpressionActivation("x * sigmoid(x)"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    assert betas_lib.find_beta_layers(model) == []
    assert not any(betas_lib.is_beta_layer(layer) for layer in model._flatten_layers())
    x, y = mixed_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, callbacks=[BetaMonitor(tmp_path)], verbose=0)
    messages = [str(w.message) for w in caught if "BetaMonitor" in str(w.message)]
    assert len(messages) == 1
    for words in ("no SwishBeta layer", "ExpressionActivation", '"swish_beta"', "SwishBeta"):
        assert words in messages[0]
    assert "formula" in messages[0] and "beta" in messages[0]
    assert not (tmp_path / "beta").exists()
    with pytest.raises(ValueError, match="has no SwishBeta layer and no ExpressionActivation"):
        beta_report(model, tmp_path / "out")


def test_report_reads_formulas_from_model_file_and_snapshot(tmp_path):
    model, _, actual = trained(tmp_path / "run")
    path = str(tmp_path / "model.keras")
    model.save(path)
    from_file = beta_report(path, tmp_path / "file")
    from_run = beta_report(str(tmp_path / "run"), tmp_path / "snap")
    assert from_run.step == 1
    # A reloaded Sequential's variable paths lose the model name (Keras's
    # paths, as for SwishBeta): compare in layer order.
    assert [row["layer"] for row in from_run.rows()] == [EXPR_NAME, SWISH_NAME]
    for report in (from_file, from_run):
        assert [layer.formula for layer in report.layers] == [FORMULA, None]
        for layer, name in zip(report.layers, (EXPR_NAME, SWISH_NAME), strict=True):
            np.testing.assert_array_equal(layer.values, actual[name])
        assert os.path.isfile(report.curves_png)


def test_snapshot_round_trip_and_bad_formula(tmp_path):
    layers = [
        betas_lib.LayerBetas("s", np.array([1.5], np.float32)),
        betas_lib.LayerBetas("e", np.array([[0.5, 2.0]], np.float32), "sigmoid(beta * x) * x"),
    ]
    path = betas_lib.write_snapshot(layers, tmp_path, 4)
    step, read = betas_lib.read_snapshot(path)
    assert step == 4
    assert [(b.name, b.formula, b.values.shape) for b in read] == [
        ("s", None, (1,)),
        ("e", "x * sigmoid(beta * x)", (1, 2)),  # Canonical, by the safe parser.
    ]
    with open(path) as f:
        data = json.load(f)
    assert data["format"] == "keras_swish.betas/1"
    assert set(data["layers"][0]) == {"name", "shape", "beta"}  # SwishBeta: as before
    data["layers"][1]["formula"] = "__import__('os').system('true')"
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match="not a β snapshot"):
        betas_lib.read_snapshot(path)

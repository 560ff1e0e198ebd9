"""keras_swish.recipes.data."""

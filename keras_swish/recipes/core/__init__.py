"""keras_swish.recipes.core."""

"""keras_swish.recipes.models."""

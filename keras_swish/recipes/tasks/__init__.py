"""keras_swish.recipes.tasks."""

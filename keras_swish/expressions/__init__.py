"""The paper's activation-search space as Keras objects.

- `formula`: the AST, the safe parser (`parse`) and `Expression`;
- `space`: the unary and binary sets and `SearchSpace` (core units);
- `hygiene`: rejecting unusable candidates and collapsing equivalent ones;
- `layer`: `ExpressionActivation`, a serializable layer for any formula.
"""

from keras_swish.expressions import formula, hygiene, space
from keras_swish.expressions.formula import Expression, FormulaError, parse
from keras_swish.expressions.hygiene import (
    CandidateRejected,
    check,
    collapse,
    equivalence_key,
)
from keras_swish.expressions.layer import ExpressionActivation, expression_activation
from keras_swish.expressions.space import BINARY, UNARY, SearchSpace

__all__ = [
    "BINARY",
    "CandidateRejected",
    "Expression",
    "ExpressionActivation",
    "FormulaError",
    "SearchSpace",
    "UNARY",
    "check",
    "collapse",
    "equivalence_key",
    "expression_activation",
    "formula",
    "hygiene",
    "parse",
    "space",
]

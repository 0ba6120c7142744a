"""Tasks: what a predictor is trained to do, and how it is scored."""

from weightspace.tasks.generalization import (
    GeneralizationConfig,
    build_predictor,
    evaluate,
    load_any_zoo,
    run_generalization,
)
from weightspace.tasks.metrics import (
    accuracy,
    confusion_matrix,
    kendall_tau,
    mae,
    r2,
    regression_metrics,
)

__all__ = [
    "GeneralizationConfig",
    "accuracy",
    "build_predictor",
    "confusion_matrix",
    "evaluate",
    "kendall_tau",
    "load_any_zoo",
    "mae",
    "r2",
    "regression_metrics",
    "run_generalization",
]

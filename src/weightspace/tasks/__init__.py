"""Tasks: what a model on weights is trained to do, and how it is scored.

:mod:`~weightspace.tasks.base` says what a task is, :mod:`~weightspace.tasks.runner` runs any
task, :mod:`~weightspace.tasks.registry` lists them; one module per task
(:mod:`~weightspace.tasks.generalization`, :mod:`~weightspace.tasks.inr_classification`).
"""

from weightspace.tasks.base import Items, Task, TaskConfig
from weightspace.tasks.generalization import GeneralizationConfig, run_generalization
from weightspace.tasks.inr_classification import InrClassifyConfig, run_inr_classification
from weightspace.tasks.metrics import (
    accuracy,
    confusion_matrix,
    kendall_tau,
    mae,
    per_class_accuracy,
    r2,
    regression_metrics,
)
from weightspace.tasks.registry import TASKS, register

__all__ = [
    "TASKS",
    "GeneralizationConfig",
    "InrClassifyConfig",
    "Items",
    "Task",
    "TaskConfig",
    "accuracy",
    "confusion_matrix",
    "kendall_tau",
    "mae",
    "per_class_accuracy",
    "r2",
    "register",
    "regression_metrics",
    "run_generalization",
    "run_inr_classification",
]

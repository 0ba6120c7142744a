"""A template for tasks that put networks into classes.

:class:`ClassificationTask` supplies what every such task does alike: the classes saved in
``RUN/config.json``, labels checked against them, cross-entropy (on augmented training batches
if the task says so), validation accuracy, and the test scores with a confusion matrix and a
predictions file. A subclass loads its data, builds its model and may pick an augmentation.

Its data has, beside the :mod:`~weightspace.tasks.base` protocol, ``labels`` (``(N,)`` ints),
``num_classes``, ``metadata`` (one dict per network) and optionally ``info["classes"]`` (names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace import viz
from weightspace.tasks import runner
from weightspace.tasks.base import Items, Task
from weightspace.tasks.inputs import Augmentation, AugmentedLoss
from weightspace.tasks.metrics import accuracy, classification_metrics
from weightspace.train.loop import predict

__all__ = ["ClassificationTask", "check_labels"]


def check_labels(data: Any, num_classes: int, where: str) -> None:
    """Refuse labels outside ``0..num_classes - 1``, naming the network (and its file)."""
    bad = ((data.labels < 0) | (data.labels >= num_classes)).nonzero().flatten()
    if len(bad):
        j = int(bad[0])
        row = data.metadata[j]
        origin = f" ({row['path']})" if "path" in row else ""
        raise ValueError(
            f"{where}: INR {row.get('index', j)}{origin} has label {int(data.labels[j])}, "
            f"outside the classes 0..{num_classes - 1}"
        )


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels.long())


class ClassificationTask(Task):
    """Classify networks; select on validation accuracy; score accuracy per class."""

    metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    required: ClassVar[tuple[str, ...]] = ("num_classes", "classes")

    def augmentation(self) -> Augmentation | list[Augmentation] | None:
        """The random copies to train on, function-preserving or not (``None``: none)."""
        return None

    def describe(self, data: Any, where: str) -> dict[str, Any]:
        k = data.num_classes
        if k < 2:
            raise ValueError(f"{self.noun} {where!r} hold {k} class(es); need at least 2")
        check_labels(data, k, where)
        names = [str(c) for c in data.info.get("classes") or []]
        return {"num_classes": k, "classes": names if len(names) == k else list(map(str, range(k)))}

    def check_compatible(self, data: Any, where: str, run: Path) -> None:
        classes, known = self.settings["classes"], data.info.get("classes")
        if known and [str(c) for c in known] != classes:
            raise ValueError(
                f"{self.noun} {where!r} have classes {list(known)}, but the classifier in "
                f"{str(run)!r} was trained on classes {classes}"
            )
        check_labels(data, len(classes), where)

    def items(self, part: Any, *, train: bool) -> Items:
        return Items(part.features, part.labels)

    def objective(self) -> AugmentedLoss:
        return AugmentedLoss(_cross_entropy, self.augmentation())

    def metric_fn(self, logits: Tensor, labels: Tensor) -> float:
        return accuracy(logits, labels)

    def score(self, model: nn.Module, test: Any, title: str, out: Path | None) -> dict[str, Any]:
        """:func:`~weightspace.tasks.metrics.classification_metrics` of the test split; writes
        ``confusion.png`` and ``predictions.csv`` (index, label, predicted)."""
        items = Items(test.features, test.labels)
        logits, labels = predict(model, items, batch_size=self.eval_batch_size)
        classes = self.settings["classes"]
        metrics = classification_metrics(logits, labels, classes, prefix="test_")
        if out is not None:
            note = f"test accuracy {metrics['test_accuracy']:.3f}, n = {len(test)}"
            matrix = torch.tensor(metrics["confusion_matrix"])
            viz.confusion(matrix, classes, out / "confusion.png", title=f"{title}\n{note}")
            index = [row.get("index", j) for j, row in enumerate(test.metadata)]
            rows = zip(index, labels.tolist(), logits.argmax(dim=1).tolist())
            runner.write_csv(["index", "label", "predicted"], rows, out / "predictions.csv")
        return metrics

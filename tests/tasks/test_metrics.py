import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import mean_absolute_error, r2_score

from weightspace.tasks.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    kendall_tau,
    mae,
    per_class_accuracy,
    r2,
    regression_metrics,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    target = rng.uniform(size=50)
    pred = target + 0.3 * rng.normal(size=50)
    return pred, target


def test_against_references(pair):
    pred, target = pair
    assert kendall_tau(pred, target) == pytest.approx(kendalltau(pred, target).statistic)
    assert r2(pred, target) == pytest.approx(r2_score(target, pred))
    assert mae(pred, target) == pytest.approx(mean_absolute_error(target, pred))
    assert regression_metrics(pred, target) == {
        "kendall_tau": kendall_tau(pred, target),
        "r2": r2(pred, target),
        "mae": mae(pred, target),
    }


def test_ties_use_tau_b():
    pred = [1, 1, 2, 3, 3, 3]
    target = [1, 2, 2, 3, 4, 4]
    assert kendall_tau(pred, target) == pytest.approx(kendalltau(pred, target).statistic)


def test_tensors_and_column_vectors(pair):
    pred, target = pair
    as_tensor = kendall_tau(torch.tensor(pred).float().unsqueeze(1), torch.tensor(target))
    assert as_tensor == pytest.approx(kendall_tau(pred, target), abs=1e-6)
    assert r2(torch.tensor(pred)[:, None], target) == pytest.approx(r2(pred, target))


def test_perfect_and_reversed():
    x = np.arange(10.0)
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert kendall_tau(-x, x) == pytest.approx(-1.0)
    assert r2(x, x) == 1.0
    assert mae(x, x) == 0.0
    assert r2(np.full(10, x.mean()), x) == pytest.approx(0.0)


def test_undefined_cases_are_nan():
    x = np.arange(5.0)
    assert math.isnan(kendall_tau(np.ones(5), x))  # a constant predictor ranks nothing
    assert math.isnan(kendall_tau(x, np.ones(5)))
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert math.isnan(r2(x, np.ones(5)))


def test_shape_errors():
    with pytest.raises(ValueError, match="kendall_tau: pred has 3 entries, target has 2"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        mae([], [])
    with pytest.raises(ValueError, match=r"r2: pred: expected a vector"):
        r2(np.zeros((3, 2)), np.zeros(3))


def test_accuracy_and_confusion_matrix():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, size=40)
    logits = torch.tensor(rng.normal(size=(40, 4)))
    labels = logits.argmax(1).numpy()
    assert accuracy(logits, target) == pytest.approx(np.mean(labels == target))
    assert accuracy(labels, target) == accuracy(logits, target)
    cm = confusion_matrix(logits, target, num_classes=4)
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), sk_confusion_matrix(target, labels, labels=range(4)))
    assert int(cm.sum()) == 40
    assert torch.equal(
        confusion_matrix([0, 2], [0, 1]), torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    )


def test_label_errors():
    with pytest.raises(ValueError, match=r"confusion_matrix: target labels must lie in \[0, 2\)"):
        confusion_matrix([0, 1], [0, 2], num_classes=2)
    with pytest.raises(ValueError, match="accuracy: pred has 2 labels, target has 3"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="integer class labels"):
        accuracy(torch.tensor([0.5, 1.0]), [0, 1])


def test_per_class_accuracy_and_classification_metrics():
    target = [0, 0, 1, 1, 1, 3]
    pred = [0, 1, 1, 1, 0, 3]
    # Class 2 has no examples: its accuracy is undefined, not 0 or 1.
    assert per_class_accuracy(pred, target, 4) == [0.5, pytest.approx(2 / 3), None, 1.0]
    logits = torch.nn.functional.one_hot(torch.tensor(pred), 4).double() * 5
    m = classification_metrics(logits, torch.tensor(target), ["a", "b", "c", "d"], prefix="test_")
    assert m["test_accuracy"] == pytest.approx(4 / 6) and m["n_test"] == 6
    assert m["per_class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": None, "d": 1.0}
    assert m["confusion_matrix"][1] == [1, 2, 0, 0] and m["majority_accuracy"] == 0.5
    expected = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(target))
    assert m["test_loss"] == pytest.approx(float(expected))
    with pytest.raises(ValueError, match=r"per_class_accuracy: pred labels must lie in \[0, 2\)"):
        per_class_accuracy([0, 3], [0, 1], 2)

"""Bad input is rejected with a message naming the problem."""

import numpy as np
import pytest

from hiddenlens.collapse import metrics


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 5)
    return rng.standard_normal((15, 4)) + np.eye(3, 4)[y] * 3, y


def test_misaligned_labels(data):
    x, y = data
    with pytest.raises(ValueError, match="misaligned"):
        metrics(x, y[:-1])


def test_single_class(data):
    x, _ = data
    with pytest.raises(ValueError, match="at least 2 classes"):
        metrics(x, np.zeros(15, dtype=int))


def test_fewer_rows_than_classes(data):
    x, y = data
    with pytest.raises(ValueError, match="fewer rows"):
        metrics(x[:4], np.array([0, 1, 0, 1]), num_classes=5)
    with pytest.raises(ValueError, match="more rows than classes"):
        metrics(x[[0, 5, 10]], y[[0, 5, 10]])


def test_missing_class(data):
    x, y = data
    with pytest.raises(ValueError, match=r"classes \[3\] have no rows"):
        metrics(x, y, num_classes=4)


def test_nan_features(data):
    x, y = data
    x = x.copy()
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf .*row 7"):
        metrics(x, y)


def test_nan_in_later_chunk_reports_global_row(data):
    x, y = data
    x = x.copy()
    x[12, 0] = np.inf
    with pytest.raises(ValueError, match="row 12"):
        metrics(x, y, chunk_rows=5)


def test_non_integer_labels(data):
    x, y = data
    with pytest.raises(TypeError, match="integer"):
        metrics(x, y + 0.5)
    with pytest.raises(TypeError, match="integer"):
        metrics(x, np.array(["a", "b", "c"] * 5))


def test_classifier_shape_mismatch(data):
    x, y = data
    with pytest.raises(ValueError, match="labels must be in"):
        metrics(x, y, classifier=np.ones((2, 4)))
    with pytest.raises(ValueError, match="width"):
        metrics(x, y, classifier=np.ones((3, 5)))


def test_unsupported_source():
    with pytest.raises(TypeError, match="unsupported features"):
        metrics(42, None)
    with pytest.raises(ValueError, match="labels must be None"):
        metrics([(np.ones((2, 2)), np.array([0, 1]))], np.array([0, 1]))

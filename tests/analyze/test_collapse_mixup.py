"""The collapse section's mixed-input geometry (Fisher et al. 2024) on classifiers: exact on a
planted linear network, and a stated reason where it does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hiddenlens
from hiddenlens.analyze.config import load_config


def _raw(model, x, y, **collapse):
    return {"model": {"spec": model}, "data": {"source": {"x": x, "label": y}, "labels": ["label"]},
            "cache": {"hooks": ["0"]}, "collapse": {"labels": ["label"], "ufm_steps": 0, **collapse}}


def _identity_net(c: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(c, c), nn.Linear(c, c))
    with torch.no_grad():
        for layer in net:
            layer.weight.copy_(torch.eye(c))
            layer.bias.zero_()
    return net.eval()


def test_linear_net_on_class_prototypes_is_the_convex_combination(tmp_path):
    """Every example is its class's one-hot prototype and the net is the identity, so a mixed
    input's feature is exactly lam mu_a + (1 - lam) mu_b: position = lam, no distance to the
    line, logit gap 2 lam - 1; of lam in 0.2..0.8 only 0.5 has |g| < 0.2."""
    c = 6
    y = np.repeat(np.arange(c), 10)
    x = torch.eye(c)[torch.as_tensor(y)]
    result = hiddenlens.analyze(_raw(_identity_net(c), x, y, mixup_classes=4), tmp_path / "run",
                                progress=False)
    assert result.failed == []
    m, where = result.metrics, "1:input"
    assert m[f"collapse/mixup_pos_err/{where}"] == pytest.approx(0.0, abs=1e-6)
    assert m[f"collapse/mixup_line_dist/{where}"] == pytest.approx(0.0, abs=1e-6)
    assert m[f"collapse/mixup_gap_err/{where}"] == pytest.approx(0.0, abs=1e-6)
    assert m[f"collapse/mixup_pos_corr/{where}"] == pytest.approx(1.0)
    assert m[f"collapse/mixup_boundary_share/{where}"] == pytest.approx(1 / 7)
    assert "mixup_label" in result.report.read_text()


def test_a_head_that_does_not_predict_the_label_is_not_measured(tmp_path):
    c = 4
    y = np.repeat(np.arange(c), 8)
    x = torch.eye(c)[torch.as_tensor((y + 1) % c)]  # the identity net predicts the next class
    result = hiddenlens.analyze(_raw(_identity_net(c), x, y), tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("mixup" in k for k in result.metrics)
    assert "top-1 matches &#x27;label&#x27; on 0%" in result.report.read_text() or \
        "top-1 matches 'label' on 0%" in result.report.read_text()


def test_no_linear_head_says_so(tmp_path):
    y = np.repeat(np.arange(3), 8)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    result = hiddenlens.analyze(_raw(model, torch.eye(3)[torch.as_tensor(y)], y), tmp_path / "run",
                                progress=False)
    assert result.failed == [] and "is not an nn.Linear head" in result.report.read_text()


@pytest.mark.parametrize("bad", [1, -1])
def test_mixup_classes_is_validated(bad):
    with pytest.raises(ValueError, match="collapse.mixup_classes"):
        load_config(_raw("minilm", [[0.0]], [0], mixup_classes=bad))


def test_bn_cnn_labelled_by_its_own_predictions_with_fewer_rows_cached(tmp_path):
    """The CNN path (BatchNorm in eval mode, a Linear head after Flatten), with max_rows below
    the number of examples: the first rows' examples are the ones mixed."""
    from tests import _models

    torch.manual_seed(0)
    model = _models.bn_cnn().eval()
    x = torch.randn(80, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1).numpy()  # the head predicts this label on every example
    raw = _raw(model, x, y, mixup_classes=3)
    raw["data"]["max_rows"] = 60
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    head = [k for k in result.metrics if k.startswith("collapse/mixup_pos_corr/")]
    assert len(head) == 1 and head[0].endswith(":input")
    assert -1 <= result.metrics[head[0]] <= 1
    assert "top-1 matches it on 100%" in result.report.read_text()


def test_string_labels_are_not_taken_for_head_classes(tmp_path):
    c = 3
    y = np.repeat(np.arange(c), 8)
    names = np.array(["cat", "dog", "eel"])[y]
    result = hiddenlens.analyze(_raw(_identity_net(c), torch.eye(c)[torch.as_tensor(y)], names),
                                tmp_path / "run", progress=False)
    assert result.failed == [] and not any("mixup" in k for k in result.metrics)
    assert "are not class indices" in result.report.read_text()


class _MaxBatch(nn.Module):
    """Identity that records the largest batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen = max(self.seen, len(x))
        return x


def test_the_clean_pass_is_batched(tmp_path):
    """600 examples: the top-1 check and the clean features run 256 at a time (the
    pipeline's cache pass uses model.batch_size), not the whole data set in one pass."""
    c = 3
    y = np.repeat(np.arange(c), 200)
    x = torch.eye(c)[torch.as_tensor(y)]
    net = _identity_net(c)
    probe = _MaxBatch()
    model = nn.Sequential(probe, *net).eval()
    raw = _raw(model, x, y, mixup_classes=3)
    raw["cache"]["hooks"] = ["1"]
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert result.metrics["collapse/mixup_pos_err/2:input"] == pytest.approx(0.0, abs=1e-6)
    assert probe.seen <= 256


def test_each_labels_reason_is_kept(tmp_path):
    """Two labels, neither measurable for its own reason: the report names both, not only
    the last label's."""
    c = 3
    y = np.repeat(np.arange(c), 8)
    raw = _raw(_identity_net(c), torch.eye(c)[torch.as_tensor(y)], np.array(["cat", "dog", "eel"])[y])
    raw["data"]["source"]["shifted"] = (y + 1) % c  # the net predicts y, not y + 1
    raw["data"]["labels"] = ["label", "shifted"]
    raw["collapse"]["labels"] = ["label", "shifted"]
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == [] and not any("mixup" in k for k in result.metrics)
    html = result.report.read_text().replace("&#x27;", "'")
    assert "'label': its values (cat, dog, eel, ...) are not class indices" in html
    assert "'shifted': the model's top-1 matches 'shifted' on 0%" in html



@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_text_models_say_why_not(tmp_path, kind, tiny_bert_dir, tiny_gpt2_dir):
    """A text encoder and a causal LM by path: no nn.Sequential head over tensor examples."""
    from tests.analyze.test_matrix import _jsonl

    spec = str(tiny_bert_dir if kind == "bert" else tiny_gpt2_dir)
    docs = [("the cat sat on the mat .", 0), ("hello world , the big red dog .", 1)] * 6
    raw = {"model": {"spec": spec, "batch_size": 8},
           "data": {"source": _jsonl(tmp_path / "d.jsonl", docs), "labels": ["topic"]},
           "cache": {"hooks": ["encoder.layer.0" if kind == "bert" else "transformer.h.0"]},
           "collapse": {"labels": ["topic"], "ufm_steps": 0}}
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == [] and not any("mixup" in k for k in result.metrics)
    assert "needs an nn.Sequential classifier on tensor examples" in result.report.read_text()

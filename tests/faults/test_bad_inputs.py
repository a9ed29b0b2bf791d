"""Library inputs that were accepted and gave nonsense (issue 14, item 7) are now refused.

``seq_len`` 1 or negative, a list of texts mixing ``str`` and ``None``, and continuous float
labels given to a classification probe.
"""

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.probe import LinearProbe, LinearProbeRegressor
from hiddenlens.store import cache_activations


@pytest.mark.parametrize("seq_len", [1, 0, -5, 2.5, True])
def test_seq_len_out_of_range(tmp_path, seq_len):
    with pytest.raises(ValueError, match="seq_len must be None or an int >= 2"):
        cache_activations(nn.Linear(3, 2), torch.randn(4, 3), [""], tmp_path, seq_len=seq_len)
    assert not tmp_path.joinpath("manifest.json").exists()


@pytest.mark.parametrize(
    "texts,index,shown",
    [(["a cat", None, "a dog"], 1, "None"), (["x", "y", 3], 2, "3"), ((None, "z"), 0, "None")],
)
def test_texts_mixing_str_and_other_values(tmp_path, texts, index, shown):
    with pytest.raises(TypeError, match=rf"data\[{index}\] is {shown}"):
        cache_activations(nn.Sequential(nn.Linear(3, 2)), texts, ["0"], tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_probe_refuses_continuous_labels():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 4)), rng.standard_normal(60)
    with pytest.raises(ValueError, match="labels look continuous.*LinearProbeRegressor"):
        LinearProbe().fit(x, y)
    with pytest.raises(ValueError, match="NaN"):
        LinearProbe().fit(x[:4], np.array([0.0, 1.0, np.nan, 1.0]))
    LinearProbe().fit(x, (y > 0).astype(np.float64))  # whole-number floats are classes
    LinearProbeRegressor().fit(x, y)  # the estimator for a continuous target


@pytest.mark.parametrize(
    "field,value",
    [("lr", float("nan")), ("lam_h", float("inf")), ("steps", 2.5), ("seed", None), ("d", True)],
)
def test_ufm_config_fields(field, value):
    from hiddenlens.collapse import UFMConfig

    with pytest.raises(ValueError, match=field):
        UFMConfig(**{field: value})


@pytest.mark.parametrize("value", [2.5, -1, True])
def test_finetune_config_dead_code_every(value):
    from hiddenlens.codebook import FinetuneConfig

    with pytest.raises(ValueError, match="dead_code_every"):
        FinetuneConfig(dead_code_every=value)

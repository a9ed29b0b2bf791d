"""The input-masking experiment's data: removed squares hold only background texture."""

import numpy as np
import pytest
import torch

from experiments.input_masking.run import (
    CANVAS,
    DIGIT,
    HOOKS,
    MaskingConfig,
    background_square,
    cnn,
    compose,
)
from hiddenlens.attribution.masking import missingness_bias


def test_squares_avoid_the_digit_and_texture_is_uninformative():
    rng = np.random.default_rng(0)
    digits = np.zeros((40, DIGIT, DIGIT), dtype=np.float32)
    digits[:, 2:6, 3] = 1.0  # a bar: the only bright pixels, always inside the box
    x, at = compose(digits, rng, jitter=1)
    assert x.shape == (40, 1, CANVAS, CANVAS) and x.dtype == np.float32
    for k in (2, 4):
        keep = background_square(at, k, rng)
        assert (keep == 0).reshape(40, -1).sum(1).tolist() == [k * k] * 40  # always fits
        for i, (r, c) in enumerate(at):
            box = keep[i, 0, r - 1 : r + DIGIT + 1, c - 1 : c + DIGIT + 1]
            assert box.min() == 1  # one pixel clear of the digit box
            assert x[i, 0][keep[i, 0] == 0].max() <= 0.45 + 1e-6  # only texture removed
    assert 0.0 <= x.min() and x.max() == 1.0


def test_layer_masking_runs_on_the_experiment_cnn():
    torch.manual_seed(0)
    model = cnn().eval()
    x = torch.rand(3, 1, CANVAS, CANVAS)
    keep = torch.ones(3, 1, CANVAS, CANVAS)
    res = missingness_bias(model, x, keep, "layer", hook_points=HOOKS)
    assert np.allclose(res.dlogit, 0, atol=1e-6)  # nothing removed: nothing changes


def test_config_checks_sizes_against_the_background_band():
    with pytest.raises(ValueError, match=r"sizes must lie in 1\.\.4"):
        MaskingConfig(sizes=(2, 5), jitter=1)
    MaskingConfig(sizes=(5,), jitter=0)


def test_frame_removes_the_border_only():
    from experiments.input_masking.run import frame

    keep = frame(2, 4)
    assert keep.shape == (2, 1, CANVAS, CANVAS)
    assert (keep == 0).sum() == 2 * (CANVAS**2 - (CANVAS - 8) ** 2)
    assert keep[:, :, 4:16, 4:16].min() == 1  # the digit box (corner 6 ± 1) is never touched

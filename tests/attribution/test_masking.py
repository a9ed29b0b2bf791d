"""Missingness bias of black / grey / neighbour / layer masking on planted models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.attribution.masking import MASKINGS, masked_forward, missingness_bias


def _abs_max_model() -> nn.Module:
    """logits = [g + 0.3, −g], g = max over positions of −|x|; hook "2" holds −|x| per pixel."""
    m = nn.Sequential(
        nn.Conv2d(1, 2, 1),
        nn.ReLU(),
        nn.Conv2d(2, 1, 1),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(1, 2),
    )
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        m[0].bias.zero_()
        m[2].weight.copy_(torch.tensor([-1.0, -1.0]).reshape(1, 2, 1, 1))
        m[2].bias.zero_()
        m[5].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m[5].bias.copy_(torch.tensor([0.3, 0.0]))
    return m.eval()


def test_closed_form_shift_per_masking():
    # a ±1 checkerboard: −|x| = −1 everywhere; one removed pixel. Neighbour fill puts the mean
    # of its 8 neighbours (0) there, black 0, grey 0.5; layer masking refills −|x| at the hook
    # from kept neighbours (−1), i.e. the model sees only the kept pixels: no shift at all
    idx = torch.arange(8)
    x = ((-1.0) ** (idx[:, None] + idx[None, :])).reshape(1, 1, 8, 8).repeat(3, 1, 1, 1)
    keep = torch.ones(1, 1, 8, 8)
    keep[..., 3, 4] = 0
    model = _abs_max_model()
    expect = {"black": 1.0, "grey": 0.5, "neighbour": 1.0, "layer": 0.0}
    flips = {"black": 1.0, "grey": 0.0, "neighbour": 1.0, "layer": 0.0}
    for method in MASKINGS:
        res = missingness_bias(model, x, keep, method, hook_points=["2"], grey=0.5)
        np.testing.assert_allclose(res.dlogit, expect[method], atol=1e-6)
        assert res.flip_rate == flips[method], method
        # KL(p || q) for the two-class softmax, by hand
        g0, g1 = -1.0, -1.0 + expect[method]
        p = torch.softmax(torch.tensor([g0 + 0.3, -g0], dtype=torch.float64), 0)
        q = torch.softmax(torch.tensor([g1 + 0.3, -g1], dtype=torch.float64), 0)
        np.testing.assert_allclose(res.kl, float((p * (p / q).log()).sum()), atol=1e-9)
        np.testing.assert_allclose(res.dprob, float(q[1] - p[1]), atol=1e-9)  # class 1 predicted
    m = res.to_metrics("layer/k=1")
    assert m["attribution/missingness_flip_rate/layer/k=1"] == 0.0
    assert set(m) == {
        f"attribution/missingness_{k}/layer/k=1" for k in ("dlogit", "kl", "flip_rate", "dprob")
    }


def test_fill_methods_are_exact_on_blank_images():
    # a constant (blank) image through a random valid-padding CNN: every feature map is
    # constant, so neighbour fill and layer masking restore it exactly; black and grey do not
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    x = torch.full((4, 1, 10, 10), 0.3)
    keep = torch.ones(4, 1, 10, 10)
    keep[:, :, :4, :4] = 0
    shift = {
        m: missingness_bias(model, x, keep, m, hook_points=["1", "3"]).dlogit.max()
        for m in MASKINGS
    }
    assert shift["neighbour"] < 1e-6 and shift["layer"] < 1e-6
    assert shift["black"] > 1e-3 and shift["grey"] > 1e-3
    # black is grey with value 0; keep broadcasts from [1, 1, H, W]
    torch.testing.assert_close(
        masked_forward(model, x, keep[:1], "black"),
        masked_forward(model, x, keep, "grey", grey=0.0),
    )


def test_masking_rejects_bad_input():
    model = _abs_max_model()
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown masking method 'blur'"):
        missingness_bias(model, x, torch.ones(1, 1, 8, 8), "blur")
    with pytest.raises(ValueError, match="needs hook_points"):
        masked_forward(model, x, torch.ones(1, 1, 8, 8), "layer")
    with pytest.raises(ValueError, match="does not broadcast"):
        masked_forward(model, x, torch.ones(1, 1, 4, 4), "grey")
    with pytest.raises(ValueError, match="batch_size"):
        missingness_bias(model, x, torch.ones(1, 1, 8, 8), "grey", batch_size=0)


def test_mean_mode_pools_over_kept_positions_only():
    # conv 1x1 → ReLU → global average pool → linear: with "mean" at the pool's input, layer
    # masking gives exactly the average over kept positions of the clean map (the removed
    # pixels' content cannot matter: the 1x1 conv never mixes positions)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)
    ).eval()
    x = torch.randn(2, 2, 6, 6)
    keep = torch.ones(2, 1, 6, 6)
    keep[0, :, :3] = 0
    keep[1, :, 2:5, 1:4] = 0
    with torch.no_grad():
        h = model[1](model[0](x))  # [2, 3, 6, 6]
        pooled = (h * keep).sum((2, 3)) / keep.sum((2, 3))
        want = model[4](pooled)
        got = masked_forward(model, x, keep, "layer", hook_points={"1": "mean"})
        torch.testing.assert_close(got, want)
        filled = masked_forward(model, x, keep, "layer", hook_points=["1"])
    assert not torch.allclose(filled, want, atol=1e-4)  # "fill" weights the edge positions
    with pytest.raises(ValueError, match="modes .* unknown"):
        masked_forward(model, x, keep, "layer", hook_points={"1": "zero"})

"""Input attributions: closed forms on linear models, IG completeness, Captum equivalence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hiddenlens.attribution as A


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(6, 3)


def test_linear_closed_forms(linear):
    x = torch.randn(4, 6)
    w = linear.weight.detach()
    t = torch.tensor([0, 2, 1, 2])
    sal = A.saliency(linear, x, target=t, abs=False).attributions
    assert torch.allclose(sal, w[t])
    ixg = A.input_x_gradient(linear, x, target=t).attributions
    assert torch.allclose(ixg, x * w[t])
    # IG of a linear model from baseline b is exactly (x - b) * w, for every quadrature rule
    base = torch.randn(6)
    for method in ("gausslegendre", "riemann_trapezoid", "riemann_left"):
        ig = A.integrated_gradients(linear, x, target=t, baseline=base, n_steps=7, method=method)
        assert torch.allclose(ig.attributions, (x - base) * w[t], atol=1e-5)
        assert ig.delta.abs().max() < 1e-5
    # SmoothGrad of a linear model's gradient is the weight, whatever the noise
    sg = A.smoothgrad(linear, x, target=t, n_samples=8, noise_level=0.5).attributions
    assert torch.allclose(sg, w[t], atol=1e-6)


def test_ig_completeness_small_net(mlp):
    x = torch.randn(5, 8)
    ig = A.integrated_gradients(mlp, x, target=1, n_steps=300, internal_batch_size=128)
    out, out0 = mlp(x)[:, 1], mlp(torch.zeros(1, 8))[0, 1]
    assert torch.allclose(ig.per_example_sum(), (out - out0).detach(), atol=2e-3)
    assert ig.delta.abs().max() < 2e-3
    # chunked and unchunked give the same numbers
    a = A.integrated_gradients(mlp, x, target=1, n_steps=20).attributions
    b = A.integrated_gradients(mlp, x, target=1, n_steps=20, internal_batch_size=15).attributions
    assert torch.allclose(a, b, atol=1e-6)


def test_equivalence_with_captum(cnn):
    captum = pytest.importorskip("captum.attr")
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([1, 4, 9])
    base = torch.randn(1, 1, 8, 8) * 0.1
    ref = captum.IntegratedGradients(cnn).attribute(x, baselines=base, target=t, n_steps=16)
    ours = A.integrated_gradients(cnn, x, baseline=base, target=t, n_steps=16).attributions
    assert torch.allclose(ours, ref, atol=1e-5)
    ref = captum.IntegratedGradients(cnn).attribute(x, target=t, n_steps=9, method="riemann_middle")
    ours = A.integrated_gradients(cnn, x, target=t, n_steps=9, method="riemann_middle")
    assert torch.allclose(ours.attributions, ref, atol=1e-5)
    assert torch.allclose(
        A.saliency(cnn, x, target=t).attributions, captum.Saliency(cnn).attribute(x, target=t)
    )
    assert torch.allclose(
        A.input_x_gradient(cnn, x, target=t).attributions,
        captum.InputXGradient(cnn).attribute(x, target=t),
    )
    ref = captum.Occlusion(cnn).attribute(
        x, sliding_window_shapes=(1, 3, 3), strides=(1, 2, 2), target=t
    )
    ours = A.occlusion(cnn, x, window=(1, 3, 3), strides=(1, 2, 2), target=t).attributions
    assert torch.allclose(ours, ref, atol=1e-5)
    fm = torch.arange(64).reshape(1, 1, 8, 8) // 4
    ref = captum.FeatureAblation(cnn).attribute(x, feature_mask=fm, target=t, baselines=0.5)
    ours = A.feature_ablation(cnn, x, feature_mask=fm, target=t, baseline=0.5).attributions
    assert torch.allclose(ours, ref, atol=1e-5)


def test_occlusion_linear_is_exact(linear):
    x = torch.randn(2, 6)
    occ = A.occlusion(linear, x, window=(1,), target=0).attributions
    assert torch.allclose(occ, x * linear.weight[0].detach(), atol=1e-6)
    fa = A.feature_ablation(linear, x, target=0).attributions
    assert torch.allclose(fa, occ, atol=1e-6)


def test_bad_input(mlp):
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="baseline has shape"):
        A.integrated_gradients(mlp, x, target=0, baseline=torch.zeros(3, 8))
    with pytest.raises(ValueError, match="out of range.*3 classes"):
        A.saliency(mlp, x, target=3)
    with pytest.raises(ValueError, match="out of range"):
        A.integrated_gradients(mlp, x, target=[0, -1])
    with pytest.raises(ValueError, match="one scalar output"):
        A.saliency(mlp, x)
    with pytest.raises(ValueError, match="method="):
        A.integrated_gradients(mlp, x, target=0, method="simpson")

    class Argmax(nn.Module):
        def forward(self, z):
            return (mlp(z).argmax(1) == 0).float()

    with pytest.raises(TypeError, match="occlusion"):
        A.integrated_gradients(Argmax(), x, n_steps=4)

    class NoGrad(nn.Module):
        def forward(self, z):
            with torch.no_grad():
                return mlp(z)

    with pytest.raises(TypeError, match="perturbation"):
        A.saliency(NoGrad(), x, target=0)
    # perturbation methods work on the same non-differentiable model
    assert A.feature_ablation(Argmax(), x).attributions.shape == x.shape
    with pytest.raises(ValueError, match="window"):
        A.occlusion(mlp, x, window=(9,))

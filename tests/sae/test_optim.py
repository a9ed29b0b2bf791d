"""hiddenlens.sae.optim.Adam: the fused path equals torch.optim.Adam, whatever the layout."""

import pytest
import torch

from hiddenlens.sae.optim import Adam


def _params():
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(12, 40, generator=g),  # contiguous: fused kernel
        torch.randn(40, 12, generator=g).t(),  # transposed parameter: the loop
        torch.randn(40, generator=g),
        torch.randn(5, dtype=torch.float64, generator=g),
        torch.randn(3, generator=g),  # never gets a gradient
    ]


@pytest.mark.parametrize("transposed_grads", [False, True])
def test_adam_equals_torch_adam_for_every_layout(transposed_grads):
    ours = [p.clone().requires_grad_() for p in _params()]
    ref = [p.clone().requires_grad_() for p in _params()]
    opt, ref_opt = Adam(ours, lr=1e-2), torch.optim.Adam(ref, lr=1e-2, foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        for a, b in zip(ours[:-1], ref[:-1]):
            grad = torch.randn(a.shape[::-1], generator=g, dtype=a.dtype).t()
            grad = grad if transposed_grads else grad.contiguous()
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
    for a, b, p0 in zip(ours[:-1], ref, _params()):
        assert not torch.equal(a, p0)  # it moved
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert torch.equal(ours[-1], _params()[-1])  # no gradient: untouched


def test_fused_step_with_a_transposed_gradient_equals_a_contiguous_one():
    # The fused kernel walks memory linearly; a transposed gradient must be made contiguous
    # first, else the update is silently wrong.
    p1 = torch.randn(6, 4).requires_grad_()
    p2 = p1.detach().clone().requires_grad_()
    grad = torch.randn(4, 6).t()
    p1.grad, p2.grad = grad, grad.contiguous()
    a, b = Adam([p1], lr=0.1), Adam([p2], lr=0.1)
    a.step()
    b.step()
    assert torch.equal(p1, p2) and torch.equal(a.m[0], b.m[0])

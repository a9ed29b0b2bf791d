"""The C latent-grouped sums and counting sort: equal to the torch path they replace."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from hiddenlens import _native
from hiddenlens.sae import SAEConfig, build_sae, sparse_kernel

pytestmark = pytest.mark.skipif(
    (shutil.which("cc") is None and shutil.which("gcc") is None) or not _native.enabled(),
    reason="no C compiler, or HIDDENLENS_NATIVE=0",
)


def _pairs(n=300, d_sae=200, k=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.arange(1, d_sae + 1).float() ** -0.8  # uneven latent counts
    probs[150:160] = 0.0  # and some latents never chosen
    idx = torch.stack([torch.multinomial(probs, k, generator=g) for _ in range(n)])
    return idx.reshape(-1), torch.arange(n).repeat_interleave(k), g


def test_counting_sort_equals_a_stable_argsort():
    cols, _, _ = _pairs()
    order, start = sparse_kernel.latent_order(cols, 200)
    assert torch.equal(order, torch.argsort(cols, stable=True))
    counts = torch.bincount(cols, minlength=200)
    assert torch.equal(start, torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]))
    empty, s0 = sparse_kernel.latent_order(torch.empty(0, dtype=torch.long), 5)
    assert empty.numel() == 0 and s0.tolist() == [0] * 6


@pytest.mark.parametrize("d", [13, 384])
@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_sums_equal_embedding_bag_both_layouts(d, threads):
    cols, rows, g = _pairs(seed=d)
    table = torch.randn(300, d, generator=g)
    w = torch.randn(cols.numel(), generator=g)
    order, start = sparse_kernel.latent_order(cols, 200)
    ref = F.embedding_bag(rows[order], table, start[:-1], mode="sum", per_sample_weights=w[order])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plain = sparse_kernel.group_rows(table, order, start, rows, w)
        flipped = sparse_kernel.group_rows(table, order, start, rows, w, transposed=True)
    finally:
        torch.set_num_threads(old)
    torch.testing.assert_close(plain, ref, rtol=1e-5, atol=1e-5)
    assert flipped.is_contiguous() and flipped.shape == (d, 200)
    torch.testing.assert_close(flipped, ref.t(), rtol=1e-5, atol=1e-5)
    unused = torch.bincount(cols, minlength=200) == 0
    assert unused.any() and (plain[unused] == 0).all()  # latents with no pair sum to zero


def test_float32_training_gradients_equal_with_and_without_the_kernels(monkeypatch):
    # float32 takes the C path; the same step with it switched off takes embedding_bag
    def grads():
        sae = build_sae(SAEConfig(d_in=24, d_sae=320, architecture="topk", k=6), seed=1)
        x = torch.randn(150, 24, generator=torch.Generator().manual_seed(2))
        dead = torch.zeros(320, dtype=torch.bool)
        dead[::4] = True
        sae(x, coefs={"aux": 0.5, "aux_k": 5}, dead_mask=dead).losses["loss"].backward()
        return {n: p.grad.clone() for n, p in sae.named_parameters()}, sae

    fast, sae = grads()
    assert fast["W_enc"].is_contiguous() and fast["W_enc"].shape == sae.W_enc.shape
    monkeypatch.setattr(sparse_kernel, "_lib", lambda: None)
    assert not sparse_kernel.available((torch.zeros(1),))
    slow, _ = grads()
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-5, atol=1e-6)


def test_ids_outside_their_range_are_refused_before_c_touches_memory():
    cols, rows, g = _pairs()
    with pytest.raises(ValueError, match=r"latent ids must lie in \[0, 200\)"):
        sparse_kernel.latent_order(torch.cat([cols, torch.tensor([200])]), 200)
    with pytest.raises(ValueError, match="latent ids"):
        sparse_kernel.latent_order(torch.tensor([-1, 3]), 200)
    order, start = sparse_kernel.latent_order(cols, 200)
    table, w = torch.randn(300, 8, generator=g), torch.randn(cols.numel(), generator=g)
    with pytest.raises(ValueError, match=r"row ids must lie in \[0, 299\)"):
        sparse_kernel.group_rows(table[:299], order, start, rows, w)
    with pytest.raises(ValueError, match="count the same pairs"):
        sparse_kernel.group_rows(table, order[:-1], start, rows, w)
    assert not sparse_kernel.available((table.double(),)) and not sparse_kernel.available(
        (table,), (rows.int(),))  # fmt: skip

import torch

from hiddenlens.sae import SAEConfig, build_sae
from hiddenlens.sae.sparse import Active


def _dense_reference_loss(sae, x, idx):
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    mask = torch.zeros_like(pre).scatter_(1, idx, 1.0)
    z = torch.relu(pre) * mask
    recon = z @ sae.W_dec + sae.b_dec
    return (recon - x).pow(2).sum(-1).mean()


def test_sparse_topk_gradients_equal_dense_autograd():
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(d_in=12, d_sae=40, architecture="topk", k=5), seed=3).double()
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
    x = torch.randn(30, 12, dtype=torch.float64)
    out = sae(x)
    out.losses["mse"].backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    idx = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).topk(5, dim=1).indices
    _dense_reference_loss(sae, x, idx).backward()
    for n, p in sae.named_parameters():
        assert torch.allclose(sparse_grads[n], p.grad, atol=1e-10), n
    assert torch.allclose(out.losses["mse"], _dense_reference_loss(sae, x, idx))


def test_active_from_coords_groups_rows_and_latents():
    rows = torch.tensor([2, 0, 2, 1])
    cols = torch.tensor([1, 3, 0, 3])
    a = Active.from_coords(rows, cols, n_rows=3, d_sae=4)
    assert a.rows.tolist() == [0, 1, 2, 2] and a.cols.tolist() == [3, 3, 0, 1]
    assert a.crow.tolist() == [0, 1, 2, 4]
    dense = a.to_dense(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert dense[2].tolist() == [3.0, 4.0, 0.0, 0.0]


def test_auxk_loss_and_gradients_equal_dense_reference():
    torch.manual_seed(1)
    sae = build_sae(SAEConfig(d_in=10, d_sae=30, architecture="topk", k=3), seed=2).double()
    x = torch.randn(25, 10, dtype=torch.float64)
    dead = torch.zeros(30, dtype=torch.bool)
    dead[::3] = True  # 10 dead latents
    coefs = {"aux": 0.5, "aux_k": 4}
    out = sae(x, coefs=coefs, dead_mask=dead)
    out.losses["loss"].backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    idx = pre.detach().topk(3, dim=1).indices
    z = torch.relu(pre) * torch.zeros_like(pre).scatter_(1, idx, 1.0)
    recon = z @ sae.W_dec + sae.b_dec
    mse = (recon - x).pow(2).sum(-1).mean()
    masked = torch.where(dead, pre.detach(), torch.tensor(-float("inf"), dtype=pre.dtype))
    aidx = masked.topk(4, dim=1).indices
    za = torch.relu(pre) * torch.zeros_like(pre).scatter_(1, aidx, 1.0)
    aux = 0.5 * min(10 / 4, 1.0) * (za @ sae.W_dec - (x - recon).detach()).pow(2).sum(-1).mean()
    assert torch.allclose(out.losses["aux"], aux)
    (mse + aux).backward()
    for n, p in sae.named_parameters():
        assert torch.allclose(sparse_grads[n], p.grad, atol=1e-10), n


def test_hierarchical_topk_chooses_the_same_entries_as_torch_topk():
    from hiddenlens.sae.architectures.topk import topk_indices

    g = torch.Generator().manual_seed(0)
    for c, n, k in [(64, 6144, 32), (33, 4096, 32), (40, 2048, 5), (7, 1000, 3), (5, 256, 16)]:
        score = torch.randn(c, n, generator=g)
        score[:, ::7] -= 3.0  # uneven groups
        score[0, :k] = float("-inf")
        got = topk_indices(score, k)
        ref = score.topk(k, dim=1).indices
        assert torch.equal(got.sort(1).values, ref.sort(1).values), (c, n, k)
    ties = torch.randint(0, 4, (16, 6144), generator=g).float()  # many equal values
    got = topk_indices(ties, 32)
    assert (got.sort(1).values.diff(dim=1) > 0).all()  # distinct columns in every row
    assert torch.equal(
        ties.gather(1, got).sort(1).values, ties.topk(32, dim=1).values.sort(1).values
    )


def test_select_topk_over_several_row_chunks_equals_dense_choice():
    # more rows than one tile, the last chunk partial: each chunk reuses the first's tile
    from hiddenlens.sae.architectures.topk import CHUNK_ROWS, select_topk

    sae = build_sae(SAEConfig(d_in=16, d_sae=256, architecture="topk", k=6), seed=4)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3, generator=torch.Generator().manual_seed(5))
    x = torch.randn(2 * CHUNK_ROWS + 37, 16, generator=torch.Generator().manual_seed(6))
    dead = torch.arange(0, 256, 5)  # indices of the dead latents, as aux_plan gives them
    sel = select_topk(sae, x, 6, dead=dead, k_aux=9)
    pre = x @ sae.W_enc + sae.b_enc
    ref = pre.topk(6, dim=1).indices
    assert torch.equal(sel.idx.sort(1).values, ref.sort(1).values)
    torch.testing.assert_close(sel.pre, pre.gather(1, sel.idx), rtol=0, atol=1e-5)
    masked = torch.full_like(pre, -float("inf"))
    masked[:, dead] = pre[:, dead]
    aux_ref = masked.topk(9, dim=1).indices
    assert torch.equal(sel.aux_idx.sort(1).values, aux_ref.sort(1).values)
    torch.testing.assert_close(sel.aux_pre, pre.gather(1, sel.aux_idx), rtol=0, atol=1e-5)
    assert not sel.pre.requires_grad  # the choice carries no graph; sparse_forward adds it

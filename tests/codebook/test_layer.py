"""CodebookLayer: lookup, straight-through gradients, losses, init, dead codes, recovery."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiddenlens.codebook import CodebookConfig, CodebookLayer, kmeans, topk_codes


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("similarity", ["cosine", "inner", "euclidean"])
def test_topk_matches_brute_force(similarity):
    g = torch.Generator().manual_seed(0)
    x, codes = torch.randn(50, 8, generator=g), torch.randn(20, 8, generator=g)
    idx, _ = topk_codes(x, codes, 3, similarity)
    if similarity == "cosine":
        ref = F.cosine_similarity(x[:, None], codes[None], dim=-1)
    elif similarity == "inner":
        ref = x @ codes.T
    else:
        ref = -torch.cdist(x, codes)
    assert torch.equal(idx, ref.topk(3, dim=-1).indices)


def test_output_is_sum_of_selected_codes():
    layer = CodebookLayer(6, 10, k=3, seed=0)
    x = torch.randn(4, 5, 6)
    out = layer(x)
    ids = layer.last_codes
    assert ids.shape == (4, 5, 3)
    torch.testing.assert_close(out, layer.codes[ids].sum(-2), rtol=0, atol=1e-6)
    assert torch.equal(ids, layer.encode(x))
    assert (ids.sort(-1).values.diff(dim=-1) > 0).all()  # k distinct codes per row


def test_straight_through_gradients_reach_codes_and_upstream():
    torch.manual_seed(0)
    up, down = torch.nn.Linear(4, 6), torch.nn.Linear(6, 3)
    layer = CodebookLayer(6, 8, k=2, loss="plain", seed=0)
    h = up(torch.randn(10, 4))
    h.retain_grad()
    q = layer(h)
    q.retain_grad()
    down(q).pow(2).sum().backward()
    # Straight-through: the upstream activation receives exactly the output's gradient.
    torch.testing.assert_close(h.grad, q.grad)
    assert up.weight.grad is not None and up.weight.grad.abs().sum() > 0
    # Each code receives the summed output gradient of the rows that selected it.
    expected = torch.zeros_like(layer.codes)
    for row, ids in enumerate(layer.last_codes):
        for c in ids:
            expected[c] += q.grad[row]
    torch.testing.assert_close(layer.codes.grad, expected)
    unused = torch.ones(8, dtype=torch.bool)
    unused[layer.last_codes.unique()] = False
    assert (layer.codes.grad[unused] == 0).all()


def test_vqvae_and_autoencoder_losses_closed_form():
    x = torch.randn(7, 5, requires_grad=True)
    vq = CodebookLayer(5, 4, k=1, loss="vqvae", beta=0.25, seed=1)
    q = vq.codes[vq.encode(x)[:, 0]]
    vq(x)
    mse = F.mse_loss(q, x).item()
    assert vq.last_loss.item() == pytest.approx(1.25 * mse, rel=1e-5)
    vq.last_loss.backward()
    # Commitment term only: d/dx of beta * mse(x, sg(q)).
    torch.testing.assert_close(x.grad, 0.25 * 2 * (x - q).detach() / x.numel())
    ae = CodebookLayer(5, 4, k=1, loss="autoencoder", seed=1)
    ae(x)
    assert ae.last_loss.item() == pytest.approx(mse, rel=1e-5)
    assert CodebookLayer(5, 4, loss="plain")(x) is not None


def test_kmeans_recovers_planted_centres():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 3, generator=g) * 10
    x = centres.repeat(40, 1) + 0.05 * torch.randn(200, 3, generator=g)
    found, labels = kmeans(x, 5, seed=0)
    dist = torch.cdist(centres, found)
    assert dist.min(1).values.max() < 0.1
    layer = CodebookLayer(3, 5, k=1, similarity="euclidean").init_kmeans(x)
    assert torch.cdist(centres, layer.codes.detach()).min(1).values.max() < 0.1


def test_k_sparse_planted_codes_recovered():
    """Data = sums of k=2 of 12 known codes; the trained codebook finds all 12."""
    g = torch.Generator().manual_seed(1)
    true = F.normalize(torch.randn(12, 32, generator=g), dim=-1) * 3
    pairs = torch.stack([torch.randperm(12, generator=g)[:2] for _ in range(2048)])
    data = true[pairs].sum(1)
    layer = CodebookLayer(32, 12, k=2, similarity="cosine", loss="autoencoder", seed=0)
    with torch.no_grad():
        layer.codes.copy_(data[torch.randperm(2048, generator=g)[:12]] / 2)
    opt = torch.optim.Adam(layer.parameters(), lr=3e-2)
    for step in range(150):
        batch = data[torch.randint(0, 2048, (256,), generator=g)]
        layer(batch)
        opt.zero_grad()
        layer.last_loss.backward()
        opt.step()
        if (step + 1) % 50 == 0 and step < 100:
            layer.replace_dead_codes(batch)
    cos = F.normalize(layer.codes.detach(), dim=-1) @ F.normalize(true, dim=-1).T
    assert cos.max(0).values.min() > 0.99  # every planted code has a learned twin
    assert layer.last_loss.item() < 1e-3


def test_dead_codes_replaced_from_activations():
    layer = CodebookLayer(4, 6, k=1, similarity="inner", seed=0)
    with torch.no_grad():
        layer.codes.zero_()
        layer.codes[0] = torch.tensor([1.0, 0, 0, 0])
    x = torch.rand(20, 4) + torch.tensor([5.0, 0, 0, 0])
    layer(x)
    assert layer.usage.tolist() == [20, 0, 0, 0, 0, 0]
    assert layer.replace_dead_codes(x) == 5
    new = layer.codes.detach()[1:]
    assert torch.cdist(new, x).min(1).values.max() < 0.2  # close to real activations
    assert int(layer.usage.sum()) == 0


def test_bad_input():
    with pytest.raises(ValueError, match="k=5 must be <= n_codes=4"):
        CodebookLayer(3, 4, k=5)
    with pytest.raises(ValueError, match="similarity"):
        CodebookConfig(3, 4, similarity="l1")
    with pytest.raises(ValueError, match="loss"):
        CodebookConfig(3, 4, loss="l2")
    with pytest.raises(ValueError, match="n_codes"):
        CodebookConfig(3, 0)
    layer = CodebookLayer(3, 4)
    with pytest.raises(ValueError, match="last dimension 5 .* d=3"):
        layer(torch.randn(2, 5))
    with pytest.raises(ValueError, match="code ids"):
        layer.decode(torch.tensor([[4]]))


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    return sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(truth)


def _planted(seed: int, n_clusters: int = 12, d: int = 16):
    """Unequal, separated clusters: a seeding that misses one costs purity."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)) * 3.0
    truth = rng.choice(n_clusters, 100 * n_clusters, p=rng.dirichlet(np.full(n_clusters, 2.0)))
    return (centres[truth] + rng.standard_normal((len(truth), d))).astype(np.float32), truth


def test_kmeans_purity_at_least_sklearns_on_a_planted_clustering():
    from sklearn.cluster import KMeans

    from hiddenlens.codebook.kmeans import lloyd

    ours, torch_path, ref = [], [], []
    for s in range(10):
        x, truth = _planted(s)
        ours.append(_purity(kmeans(torch.from_numpy(x), 12, seed=s)[1].numpy(), truth))
        _, lab = lloyd(torch.from_numpy(x), 12, 100, 1e-4, s, "euclidean", 4096)
        torch_path.append(_purity(lab.numpy(), truth))
        ref.append(_purity(KMeans(12, n_init=1, random_state=s).fit_predict(x), truth))
    assert np.mean(ours) >= np.mean(ref) - 1e-9  # Euclidean on CPU: scikit-learn's own
    assert np.mean(torch_path) >= np.mean(ref) - 0.005, (np.mean(torch_path), np.mean(ref))


def test_kmeans_stops_at_a_fixed_point_and_cosine_path():
    from hiddenlens.codebook.kmeans import lloyd

    x, truth = _planted(0)
    xt = torch.from_numpy(x)
    centroids, labels = lloyd(xt, 12, 300, 0.0, 0, "euclidean", 4096)  # tol 0: to the end
    # converged: one more Lloyd step leaves the assignment unchanged
    again = torch.cdist(xt, centroids).argmin(1)
    assert torch.equal(again, labels)
    # cosine: clusters are directions, rows have random norms; centres keep the rows' scale
    rng = np.random.default_rng(1)
    dirs = rng.standard_normal((6, 8))
    lab = rng.integers(0, 6, 600)
    rows = (dirs[lab] + 0.1 * rng.standard_normal((600, 8))) * rng.uniform(0.5, 3, (600, 1))
    c, found = kmeans(torch.tensor(rows, dtype=torch.float32), 6, similarity="cosine", seed=0)
    assert _purity(found.numpy(), lab) > 0.99
    assert c.norm(dim=1).min() > 1.0  # plain means of the rows, not unit vectors
    with pytest.raises(ValueError, match="similarity"):
        kmeans(xt, 3, similarity="manhattan")
    with pytest.raises(ValueError, match="tol"):
        kmeans(xt, 3, tol=-1.0)

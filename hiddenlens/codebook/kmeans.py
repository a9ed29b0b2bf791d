"""k-means for codebook initialisation (and the k-means-on-raw-activations baseline).

Seeding is greedy k-means++ (Arthur & Vassilvitskii 2007, "k-means++: The Advantages of
Careful Seeding"; the greedy variant with ``2 + ln k`` candidates per centre is the one
scikit-learn uses): each new centre is the best of a few D^2-sampled candidates, the one
that lowers the total squared distance most. Lloyd iterations stop when the centres move
less than ``tol`` (the squared shift summed over centres, relative to the data's mean
per-feature variance, scikit-learn's criterion) or after ``n_iter`` iterations.

For Euclidean similarity on CPU tensors the work is handed to scikit-learn's ``KMeans``
(the same seeding and stopping rule, in Cython; one OpenMP thread when the machine is
oversubscribed, where its thread barriers otherwise cost more than they give); cosine similarity (spherical k-means: unit-normalised
rows for seeding and assignment, centres the rows' plain means so that codes keep the
activations' scale), inner-product similarity and GPU tensors use the torch loop.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@torch.no_grad()
def kmeans(
    x: torch.Tensor,
    n_clusters: int,
    *,
    n_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    similarity: str = "euclidean",
    batch_size: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on x [n, d] -> (centroids [n_clusters, d], labels [n]).

    n_iter: most Lloyd iterations; tol: stop when the squared centre shift falls below
    ``tol`` times the data's mean per-feature variance (0: run all ``n_iter``); similarity:
    "euclidean", "cosine" (seeding and assignment on unit vectors) or "inner"; empty
    clusters are re-seeded with the rows farthest from their centre.
    """
    from hiddenlens.codebook.layer import SIMILARITIES

    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity={similarity!r}; accepted: {SIMILARITIES}")
    if int(n_iter) < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    x = torch.as_tensor(x, dtype=torch.float32)
    n = x.shape[0]
    if n_clusters < 1 or n < n_clusters:
        raise ValueError(f"k-means needs 1 <= n_clusters <= {n} rows, got n_clusters={n_clusters}")
    if similarity == "euclidean" and x.device.type == "cpu":
        return _sklearn_kmeans(x, n_clusters, int(n_iter), float(tol), seed)
    return lloyd(x, n_clusters, int(n_iter), float(tol), seed, similarity, batch_size)


def lloyd(x, n_clusters, n_iter, tol, seed, similarity, batch_size):
    """The torch path of ``kmeans`` (any similarity, any device), arguments as there."""
    gen = torch.Generator().manual_seed(seed)
    unit = similarity == "cosine"
    centroids = x[greedy_kmeanspp(F.normalize(x, dim=-1) if unit else x, n_clusters, gen)]
    threshold = tol * float(x.var(0).mean())
    for it in range(int(n_iter)):
        labels, dist = _assign(x, centroids, similarity, batch_size)
        new = _update(x, labels, dist, centroids)
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        if shift <= threshold:
            logger.debug("k-means converged after %d iterations", it + 1)
            break
    labels, _ = _assign(x, centroids, similarity, batch_size)
    return centroids, labels


def _sklearn_kmeans(x, n_clusters, n_iter, tol, seed):
    from sklearn.cluster import KMeans

    from hiddenlens._threads import torch_threads

    km = KMeans(n_clusters, init="k-means++", n_init=1, max_iter=n_iter, tol=tol, random_state=seed)
    with torch_threads(None):  # 1 thread (torch, BLAS and OpenMP) when oversubscribed
        labels = km.fit_predict(x.numpy())
    return torch.from_numpy(km.cluster_centers_).float(), torch.from_numpy(labels).long()


def _assign(x, centroids, similarity, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels [n], dissimilarity of every row to its centre [n]: 1 - cosine for cosine,
    the squared distance otherwise)."""
    from hiddenlens.codebook.layer import topk_codes

    labels, scores = [], []
    for start in range(0, x.shape[0], batch_size):
        idx, val = topk_codes(x[start : start + batch_size], centroids, 1, similarity)
        labels.append(idx[:, 0])
        scores.append(val[:, 0])
    labels = torch.cat(labels)
    if similarity == "cosine":
        return labels, 1 - torch.cat(scores)
    return labels, ((x - centroids[labels]) ** 2).sum(-1)


def _update(x, labels, dist, centroids) -> torch.Tensor:
    """Cluster means; empty clusters take the rows farthest from their centres."""
    k = centroids.shape[0]
    sums = torch.zeros_like(centroids).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k)
    full = counts > 0
    new = centroids.clone()
    new[full] = sums[full] / counts[full, None].to(x.dtype)
    empty = (~full).nonzero().flatten()
    if empty.numel():
        new[empty] = x[dist.argsort(descending=True)[: empty.numel()]]
    return new


def greedy_kmeanspp(z: torch.Tensor, n_clusters: int, gen: torch.Generator) -> torch.Tensor:
    """Row indices [n_clusters] by greedy k-means++: each centre the best (lowest total
    squared distance) of ``2 + ln k`` candidates drawn with probability ~ D^2."""
    n = z.shape[0]
    trials = 2 + int(math.log(n_clusters))
    sq = (z * z).sum(-1)  # [n]

    def dist_to(rows: torch.Tensor) -> torch.Tensor:  # [len(rows), n], no [n, d] temporaries
        return (sq[None] - 2 * (z[rows] @ z.T) + sq[rows, None]).clamp_min(0)

    first = torch.randint(0, n, (1,), generator=gen)
    chosen = [int(first)]
    d2 = dist_to(first)[0]
    for _ in range(1, n_clusters):
        total = d2.sum()
        probs = d2 / total if total > 0 else torch.ones_like(d2)  # all rows already centres
        cand = torch.multinomial(probs, trials, replacement=True, generator=gen)
        best = torch.minimum(d2[None], dist_to(cand))  # [trials, n]
        pick = int(best.sum(1).argmin())
        chosen.append(int(cand[pick]))
        d2 = best[pick]
    return torch.tensor(chosen)

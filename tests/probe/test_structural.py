"""Structural probes on planted trees: node i's embedding is the sum of one orthonormal vector
per edge on its root path (so squared distances are tree distances and squared norms are
depths) in 12 of 40 dimensions, with strong noise in the others."""

import numpy as np
import pytest
import torch

from hiddenlens.probe.structural import StructuralProbe, tree_depths, tree_distances


def planted(n_sent, seed, k=12, noise_dims=28, signal=True):
    rng = np.random.default_rng(seed)
    H, parents = [], []
    for _ in range(n_sent):
        n = int(rng.integers(5, k + 1))
        par = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
        perm = rng.permutation(n)  # word order is not the tree order
        inv = np.argsort(perm)
        par = np.array([-1 if par[perm[i]] < 0 else inv[par[perm[i]]] for i in range(n)])
        Q = np.linalg.qr(rng.normal(size=(k, k)))[0][:, :n].T  # one unit vector per node's edge
        depth_path = np.zeros((n, k))
        for i in range(n):
            j = i
            while par[j] >= 0:
                depth_path[i] += Q[j]
                j = par[j]
        sig = depth_path if signal else rng.normal(size=(n, k))
        H.append(np.hstack([sig, 2.0 * rng.normal(size=(n, noise_dims))]).astype(np.float32))
        parents.append(par)
    return H, parents


def test_tree_distances_and_depths():
    par = [-1, 0, 0, 1, 3]  # 0 -> {1, 2}; 1 -> 3 -> 4
    d = tree_distances(par)
    assert d[4, 2] == 4 and d[3, 0] == 2 and np.array_equal(d, d.T)
    assert tree_depths(par).tolist() == [0, 1, 1, 2, 3]
    with pytest.raises(ValueError, match="one root"):
        tree_distances([-1, -1, 0])
    with pytest.raises(ValueError, match="connected"):
        tree_distances([-1, 2, 1])


def test_distance_and_depth_probes_recover_planted_trees():
    torch.manual_seed(0)
    H, par = planted(60, 0)
    Ht, part = planted(30, 1)
    probe = StructuralProbe("distance", rank=12, n_steps=100, lr=0.05).fit(H, par)
    res = probe.evaluate(Ht, part)
    assert res.spearman > 0.9 and res.uuas > 0.9, res
    depth = StructuralProbe("depth", rank=12, n_steps=100, lr=0.05).fit(H, par).evaluate(Ht, part)
    assert depth.spearman > 0.9 and depth.root_accuracy > 0.9, depth
    m = res.to_metrics("blocks.1")
    assert m["probe/structural_uuas/blocks.1"] == res.uuas
    # no tree in the activations: the same probe finds little
    Hn, parn = planted(60, 0, signal=False)
    Hnt, parnt = planted(30, 1, signal=False)
    null = StructuralProbe("distance", rank=12, n_steps=100, lr=0.05).fit(Hn, parn)
    assert null.evaluate(Hnt, parnt).uuas < 0.6
    with pytest.raises(ValueError, match="one parent per word"):
        probe.fit([H[0][:-1]], [par[0]])
    with pytest.raises(ValueError, match="kind"):
        StructuralProbe("height").fit(H, par)


def test_plot_tree_distances():
    from matplotlib.figure import Figure

    from hiddenlens.viz.probe import plot_tree_distances

    H, par = planted(3, 2)
    probe = StructuralProbe("distance", rank=12, n_steps=5).fit(H, par)
    fig = plot_tree_distances((probe.predict(H[:1])[0], par[0]), title="t")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "t"
    with pytest.raises(ValueError, match="one parent per word"):
        plot_tree_distances((np.zeros((2, 2)), par[0]))


def test_score_structure_on_exact_and_chain_predictions():
    from hiddenlens.probe.structural import score_structure
    from hiddenlens.probe.trees import chain_baselines

    trees = [np.array([-1, 0, 0, 1, 3]), np.array([-1, 0, 1, 1])]
    exact = score_structure("distance", [tree_distances(p) for p in trees], trees)
    assert exact.spearman == pytest.approx(1.0) and exact.uuas == 1.0
    depth = score_structure("depth", [tree_depths(p) for p in trees], trees)
    assert depth.spearman == pytest.approx(1.0) and depth.root_accuracy == 1.0
    # the chain |i - j|: its MST is the chain, which holds 2 of 4 and 2 of 3 gold edges
    chain = [np.abs(np.subtract.outer(np.arange(len(p)), np.arange(len(p)))) for p in trees]
    assert score_structure("distance", chain, trees).uuas == pytest.approx(4 / 7)
    # word position as depth: the root is word 0 in both trees
    pos = score_structure("depth", [np.arange(len(p)) for p in trees], trees, "position")
    assert pos.root_accuracy == 1.0 and "probe/position_root_accuracy" in pos.to_metrics()
    # a probe's evaluate is score_structure of its predictions
    H, par = planted(8, 3)
    probe = StructuralProbe("distance", rank=12, n_steps=5).fit(H, par)
    assert probe.evaluate(H, par) == score_structure("distance", probe.predict(H), par)
    with pytest.raises(ValueError, match=r"shaped \[n, n\]"):
        score_structure("distance", [np.zeros(5)], trees[:1])
    with pytest.raises(ValueError, match="kind"):
        score_structure("height", chain, trees)
    with pytest.raises(ValueError, match="at least one tree"):
        score_structure("distance", [], [])
    with pytest.raises(ValueError, match="at least one tree"):
        chain_baselines([])


def test_a_probe_that_ranks_nothing_scores_zero_not_missing():
    """Tokens that share one vector get equal predicted depths: Spearman 0, not a NaN that
    would drop the sentence from the average and flatter the probe."""
    from hiddenlens.probe.structural import StructuralProbe

    parents = [[-1, 0, 1], [-1, 0, 0, 2]]
    sents = [np.ones((3, 4)), np.ones((4, 4))]  # every token the same vector
    res = StructuralProbe("depth", rank=2, n_steps=5).fit(sents, parents).evaluate(sents, parents)
    assert res.spearman == 0.0

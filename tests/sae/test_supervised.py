import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from hiddenlens.sae import SAEConfig, build_sae
from hiddenlens.sae.supervised import (
    SupervisedDictionary,
    control_accuracy,
    interpretability,
    occlusion,
    over_splitting,
    sae_edit,
)


def _attribute_data(n=3000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    true = {"color": rng.normal(size=(3, d)) * 2, "shape": rng.normal(size=(2, d)) * 2}
    labels = {"color": rng.integers(0, 3, n), "shape": rng.integers(0, 2, n)}
    x = sum(true[a][labels[a]] for a in true) + 0.1 * rng.normal(size=(n, d))
    return x, labels, true


def _nearest_mean(x, y):
    means = np.stack([x[y == v].mean(0) for v in np.unique(y)])
    return lambda q: np.unique(y)[((q[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)]


def test_supervised_dictionary_recovers_attribute_vectors_and_edits():
    x, labels, true = _attribute_data()
    sup = SupervisedDictionary().fit(x, labels)
    for a, vecs in true.items():
        centred = vecs - vecs.mean(0)  # values are balanced, so E[x|v] - E[x] = u_v - mean u
        for got, want in zip(sup.vectors_[a], centred):
            assert got @ want / np.linalg.norm(got) / np.linalg.norm(want) > 0.99
    fvu = ((x - sup.reconstruct(labels)) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert fvu < 0.01
    probe = _nearest_mean(x, labels["color"])
    edited = sup.edit(x, labels, "color", 2)
    assert control_accuracy(edited, 2, probe) > 0.95
    # the other attribute is untouched by the edit
    shape_probe = _nearest_mean(x, labels["shape"])
    assert (shape_probe(edited) == labels["shape"]).mean() > 0.95
    with pytest.raises(ValueError, match="not a value"):
        sup.edit(x, labels, "color", 7)
    with pytest.raises(NotFittedError, match="not fitted"):
        SupervisedDictionary().reconstruct(labels)


def test_interpretability_f1_and_auroc():
    y = np.array([0, 0, 1, 1, 1, 0])
    codes = np.stack([y * 2.0, 1 - y, np.zeros(6)], 1)  # latent 0 == value 1, latent 1 == 0
    rows = {r["value"]: r for r in interpretability(codes, {"a": y})}
    assert rows[1]["best_latent"] == 0 and rows[1]["f1"] == 1.0 and rows[1]["auroc"] == 1.0
    assert rows[0]["best_latent"] == 1 and rows[0]["f1"] == 1.0


def test_over_splitting_counts_partial_detectors():
    y = np.array([1] * 8 + [0] * 8)
    codes = np.zeros((16, 5))
    for j in range(4):  # value 1 split over latents 0..3, two rows each
        codes[2 * j : 2 * j + 2, j] = 1.0
    codes[:, 4] = 1.0  # a dense latent: fires everywhere, not a detector
    row = [r for r in over_splitting(codes, {"a": y}, min_recall=0.1) if r["value"] == 1][0]
    assert row["n_detectors"] == 4
    assert row["max_single_recall"] == pytest.approx(0.25)
    assert row["union_recall"] == pytest.approx(1.0)


def test_occlusion_flags_the_lost_direction():
    x, labels, _ = _attribute_data()
    sup = SupervisedDictionary().fit(x, labels)
    u = sup.vectors_["shape"][1] / np.linalg.norm(sup.vectors_["shape"][1])
    xc = x - sup.center_
    x_hat = x - np.outer(xc @ u, u)  # a reconstruction that drops the shape direction
    kept = {(r["attribute"], r["value"]): r["kept"] for r in occlusion(x, x_hat, sup, labels)}
    assert abs(kept[("shape", 1)]) < 1e-6
    assert kept[("color", 0)] > 0.95


def test_sae_edit_switches_detector_latents():
    sae = build_sae(SAEConfig(d_in=3, d_sae=3, architecture="relu", apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(3))
        sae.W_dec.copy_(torch.eye(3))
    y = np.array([0, 0, 1, 1])
    x = np.array([[2.0, 0, 0.5], [1.0, 0, 0.3], [0, 3.0, 0.2], [0, 1.0, 0.1]])
    edited = sae_edit(sae, x, {"a": y}, "a", 1)
    # rows with value 0: latent 0 off, latent 1 on at its mean active value (2.0)
    assert np.allclose(edited[:2], [[0, 2.0, 0.5], [0, 2.0, 0.3]])
    assert np.allclose(edited[2:], x[2:])

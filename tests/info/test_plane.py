"""Information-plane callback, local rank, lossy compression, generalisation, the 12-bit task."""

import numpy as np
import pytest
import torch

from hiddenlens.info import (
    InformationPlane,
    local_rank,
    lossy_mutual_information,
    mutual_information,
    plane_binning,
)
from hiddenlens.info.generalisation import GeneralisationRecord, bottleneck_vs_gap
from hiddenlens.info.tasks import rotation_permutations, szt_12bit_task


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 3),
        torch.nn.Tanh(),
        torch.nn.Linear(3, 2),
    )


def test_szt_task_is_rotation_invariant_and_balanced():
    x, y = szt_12bit_task()
    assert x.shape == (4096, 12) and abs(y.mean() - 0.5) < 0.02
    perms = rotation_permutations()
    assert perms.shape == (60, 12) and len({tuple(p) for p in perms}) == 60
    weights = 2 ** np.arange(12)[::-1]
    label_of = dict(zip((x @ weights).astype(int), y))
    for p in perms:  # the label of every rotated pattern equals the pattern's label
        assert all(label_of[int(c)] == lab for c, lab in zip(x[:, p] @ weights, y))


def test_information_plane_callback_matches_direct_estimates():
    x, y = szt_12bit_task()
    xt = torch.tensor(x[::4], dtype=torch.float32)
    ys = y[::4]
    net = tiny_net()
    cb = InformationPlane(
        net,
        ["1", "3"],
        xt,
        ys,
        estimators=("binning", "kde"),
        value_range=(-1, 1),
        kde_max_rows=256,
    )
    for epoch in range(2):
        cb.on_epoch_end(epoch, gen_gap=0.1 * epoch)
    h = cb.history_
    assert h.layers == ["1", "3"] and list(h.epochs) == [0, 1]
    with torch.no_grad():
        t1 = torch.tanh(net[0](xt)).numpy()
    ixt, ity = plane_binning(t1, ys, bins=30, value_range=(-1, 1))
    assert h.array("ixt", "binning")[0, 0] == pytest.approx(ixt)
    assert h.array("ity", "binning")[0, 0] == pytest.approx(ity)
    direct = mutual_information(np.arange(len(ys)), t1, bins=30, value_range=(-1, 1))
    assert ixt == pytest.approx(direct.bits)
    # I(X;T) can only shrink along a deterministic chain (data processing, exact for binning
    # when the later layer is a function of the binned earlier one is not guaranteed, so
    # only check the cap and non-negativity)
    assert np.all(h.array("ixt", "binning") <= np.log2(len(ys)) + 1e-9)
    assert np.all(h.array("ity", "kde") >= -1e-9)
    m = h.to_metrics("binning")
    assert set(m) >= {"info/binning_ixt/1", "info/binning_ity/3"}
    assert all(r["gen_gap"] in (0.0, 0.1) for r in h.records)
    assert net.training  # the callback restores the training mode


def test_information_plane_rejects_bad_setup():
    with pytest.raises(ValueError, match="estimators"):
        InformationPlane(
            tiny_net(), ["1"], torch.zeros(4, 12), np.zeros(4, int), estimators=("mine",)
        )
    with pytest.raises(ValueError, match="y_eval"):
        InformationPlane(tiny_net(), ["1"], torch.zeros(4, 12), np.zeros(5, int))


def test_local_rank_of_known_maps():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 5, bias=False)
    with torch.no_grad():  # a rank-2 weight: every input's Jacobian has rank 2
        lin.weight.copy_(torch.randn(5, 2) @ torch.randn(2, 6))
    net = torch.nn.Sequential(lin, torch.nn.Tanh())
    x = torch.randn(16, 6)
    r = local_rank(net, x, ["0", "1"])
    assert r == {"info/local_rank/0": 2.0, "info/local_rank/1": 2.0}
    # saturated tanh: derivative ~ 0 in every unit -> rank 0 with an absolute threshold
    with torch.no_grad():
        lin.weight.mul_(1e4)
    assert local_rank(net, x, ["1"], atol=1e-3)["info/local_rank/1"] < 1.0


def test_lossy_compression_recovers_embedded_gaussian_mi():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((1500, 2))
    h = 0.8 * g + 0.6 * rng.standard_normal((1500, 2))
    true = -np.log2(1 - 0.64)  # 2 dims x (-1/2 log2(1 - rho^2))
    t, u = g @ rng.standard_normal((2, 40)), h @ rng.standard_normal((2, 30))  # high-dim embeddings
    est = lossy_mutual_information(t, u, n_components=2, noise_std=0.01)
    assert est.bits == pytest.approx(true, abs=0.15)
    assert est.extras["fidelity_t"] > 0.99 and est.params["compressor"] == "pca"
    # noise can only remove information (data processing): large noise -> smaller estimate
    noisy = lossy_mutual_information(t, u, n_components=2, noise_std=2.0)
    assert noisy.bits < est.bits - 0.3
    ae = lossy_mutual_information(t, (g[:, 0] > 0).astype(int), compressor="ae", n_components=2)
    assert ae.estimator == "lossy+ksg" and 0.5 < ae.bits <= 1.1


def test_generalisation_record_correlation():
    rec = GeneralisationRecord()
    for i in range(6):
        rec.add(f"ckpt{i}", train_score=1.0, test_score=1.0 - 0.05 * i, ixt=5.0 + i, ity=1.0)
    assert rec.column("bottleneck").tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    c = rec.correlation()
    assert c["spearman"] == pytest.approx(1.0) and c["pearson"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3"):
        bottleneck_vs_gap([0.1, 0.2], [1.0, 2.0])


def test_viz_returns_figures():
    from matplotlib.figure import Figure

    from hiddenlens.viz.info import plot_epoch_curves, plot_gap_vs_mi, plot_information_plane

    data = {
        "epochs": np.array([0, 1, 10]),
        "layers": ["a", "b"],
        "ixt": np.ones((3, 2)),
        "ity": np.zeros((3, 2)),
        "estimator": "binning",
    }
    assert isinstance(plot_information_plane(data, title="t"), Figure)
    fig = plot_epoch_curves(
        {"epochs": data["epochs"], "layers": data["layers"], "values": np.ones((3, 2))}
    )
    assert isinstance(fig, Figure)
    assert isinstance(
        plot_gap_vs_mi({"mi": [1, 2], "gap": [0.1, 0.2], "group": ["x", "y"]}), Figure
    )

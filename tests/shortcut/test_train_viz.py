"""Batched models match their per-model reference; figures build."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hiddenlens.shortcut.train import BatchedNet, predict_batched, train_batched


@pytest.fixture(autouse=True)
def one_thread():
    # tiny ops: a second intra-op thread only adds synchronisation on a shared machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("arch", ["linear", "relu", "tanh", "cnn"])
def test_batched_net_slices_match_reference_modules(arch):
    net = BatchedNet(3, (1, 12, 12), arch, hidden=5, channels=2, seed=0)
    x = torch.randn(3, 7, 1, 12, 12)
    out = net(x)
    for m in range(3):
        xm = x[m]
        if arch == "cnn":
            w = net.conv_w[m].T.reshape(2, 1, 3, 3)  # [9, ch] -> conv weight [ch, 1, 3, 3]
            h = torch.relu(torch.nn.functional.conv2d(xm, w, net.conv_b[m, 0], stride=3))
            h = h.permute(0, 2, 3, 1).reshape(7, -1)  # cells major, channels minor
        else:
            h = xm.reshape(7, -1)
            if arch != "linear":
                act = torch.relu if arch == "relu" else torch.tanh
                h = act(h @ net.w1[m] + net.b1[m])
        ref = h @ net.w[m] + net.b[m]
        torch.testing.assert_close(out[m], ref, rtol=1e-4, atol=1e-5)


def test_models_train_independently_and_loss_falls():
    # model 1 gets shuffled labels: its loss must stay near log 2 while model 0 learns
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 200, 4)).astype(np.float32)
    y = np.stack([(x[0, :, 0] > 0), rng.permutation(x[1, :, 0] > 0)]).astype(np.float32)
    y[1] = rng.integers(0, 2, 200)
    net = BatchedNet(2, (4,), "linear", seed=0)
    res = train_batched(net, x, y, steps=80, lr=0.5, track_model=0)
    assert res.loss[-1, 0] < 0.15 and res.loss[-1, 1] > 0.6
    assert res.example_losses.shape == (80, 200)
    acc = (predict_batched(net, x) == y).mean(axis=1)
    assert acc[0] > 0.97
    with pytest.raises(ValueError, match="shape"):
        train_batched(net, x, y[:, :10], steps=1)
    with pytest.raises(ValueError, match="optimizer"):
        train_batched(net, x, y, steps=1, optimizer="rmsprop")


def test_figures_build():
    from hiddenlens.viz.shortcut import (
        plot_bias_heatmap,
        plot_bias_lines,
        plot_bias_over_training,
        plot_group_accuracy,
    )

    m = np.array([0.1, 0.2])
    figs = [
        plot_bias_heatmap(np.zeros((2, 3)), predictivity=[0.7, 0.9], availability=[1, 2, 3]),
        plot_bias_lines({"relu": (m, m - 0.1, m + 0.1)}, x=[1, 2]),
        plot_bias_over_training({"relu": (m, m - 0.1, m + 0.1)}, steps=[0, 10], title="t"),
        plot_group_accuracy({"erm": {"g0": 0.5, "g1": 0.9}, "dfr": {"g0": 0.8, "g1": 0.85}}),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(ValueError, match="shape"):
        plot_bias_heatmap(np.zeros((3, 3)), predictivity=[0.7], availability=[1, 2, 3])

"""CollapseTracker records per-layer metrics equal to a direct computation."""

import numpy as np
import pytest

from hiddenlens.collapse import CollapseTracker, metrics, zero_error_epochs

torch = pytest.importorskip("torch")


def test_tracker_matches_direct_metrics():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = torch.tensor(rng.standard_normal((60, 4)) + 3 * np.eye(3, 4)[y], dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU()
    )
    model = torch.nn.Sequential(net, torch.nn.Linear(8, 3))
    tracker = CollapseTracker(model, ["0.1", "0.3"], x, y, classifier="1", batch_size=25)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    yt = torch.as_tensor(y)
    for epoch in range(3):
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        err = float((model(x).argmax(1) != yt).float().mean())
        tracker.on_epoch_end(epoch, train_error=err)
    assert len(tracker.history) == 3
    rec = tracker.history[-1]
    with torch.no_grad():
        h1 = net[:2](x).numpy()
        h2 = net(x).numpy()
        preds = model(x).argmax(1).numpy()
    lin = model[1]
    ref1 = metrics(h1, y, predictions=preds)
    ref2 = metrics(h2, y, classifier=lin)
    assert rec["collapse/nc1/0.1"] == pytest.approx(ref1["collapse/nc1"], rel=1e-5)
    assert rec["collapse/nc4/0.1"] == pytest.approx(ref1["collapse/nc4"])
    assert rec["collapse/nc3/1:input"] == pytest.approx(ref2["collapse/nc3"], rel=1e-5)
    assert rec["collapse/nc4/1:input"] == pytest.approx(ref2["collapse/nc4"])
    assert "collapse/var_ratio/0.3" in rec and "collapse/var_ratio/0.1" not in rec
    epochs, vals = tracker.series("collapse/nc1/0.3")
    assert list(epochs) == [0, 1, 2] and np.all(np.isfinite(vals))
    assert model.training  # training mode restored


def test_zero_error_epochs():
    assert zero_error_epochs([0, 1, 2, 3, 4], [0.5, 0.0, 0.1, 0.0, 0.0]) == (1, 3)
    assert zero_error_epochs([0, 1, 2], [0.5, 0.2, 0.1]) == (None, None)
    assert zero_error_epochs([0, 1, 2], [0.0, 0.0, 0.1]) == (0, None)
    assert zero_error_epochs([5, 6], [0.0, 0.0]) == (5, 5)

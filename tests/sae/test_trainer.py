import numpy as np
import pytest
import torch

from hiddenlens.sae import SAEConfig, TrainConfig, train
from hiddenlens.sae.trainer import geometric_median, lr_factor, train_info
from tests.sae.fakes import FakeStore, planted_data


@pytest.fixture(scope="module")
def planted():
    x, feats = planted_data(n=20000, d=32, m=64, k_true=3, mean_shift=0.5, seed=0)
    return FakeStore({"h": x}), feats


def _recovered(sae, feats):
    w = sae.W_dec.detach().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return float(((feats @ w.T).max(1) > 0.9).mean())


def test_topk_recovers_planted_dictionary_with_exact_l0(planted):
    store, feats = planted
    sae = train(
        store,
        "h",
        SAEConfig(d_in=32, d_sae=128, architecture="topk", k=3),
        TrainConfig(total_tokens=256 * 300, batch_size=256, lr=4e-3, dead_tokens=5000),
    )
    assert _recovered(sae, feats) >= 0.9
    z = sae.encode(torch.from_numpy(store.rows("h", 0, 2000).copy()))
    assert ((z != 0).sum(1) == 3).all()  # L0 == k exactly
    # the returned SAE works on raw (unscaled) activations: scale folded into the weights
    x = torch.from_numpy(store.rows("h", 0, 2000).copy())
    fvu = ((sae.decode(z) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert fvu < 0.15
    assert len(sae.train_log_) > 0 and sae.feature_density_.shape == (128,)


def test_relu_recovers_planted_dictionary(planted):
    store, feats = planted
    sae = train(
        store,
        "h",
        SAEConfig(d_in=32, d_sae=128, architecture="relu"),
        TrainConfig(total_tokens=256 * 400, batch_size=256, lr=1e-2, l1_coefficient=1.5),
    )
    assert _recovered(sae, feats) >= 0.9


def _small_store(fail_after=None, n=2048, bad_row=None):
    x, _ = planted_data(n=n, d=16, m=32, k_true=2, seed=1)
    if bad_row is not None:
        x[bad_row, 0] = np.nan
    return FakeStore({"h": x}, fail_after=fail_after)


_SMALL = SAEConfig(d_in=16, d_sae=48, architecture="topk", k=2)


def _tc(**kw):
    base = dict(
        total_tokens=64 * 30,
        batch_size=64,
        lr=3e-3,
        dead_tokens=256,
        lr_warmup_steps=3,
        checkpoint_every=10,
    )
    return TrainConfig(**{**base, **kw})


def test_resume_equals_uninterrupted_run(tmp_path):
    full = train(_small_store(), "h", _SMALL, _tc(), out_dir=tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_small_store(fail_after=15), "h", _SMALL, _tc(), out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "step_00000010").is_dir()
    resumed = train(_small_store(), "h", _SMALL, _tc(), out_dir=tmp_path / "run")
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n
    assert resumed.train_log_ == full.train_log_


def test_resume_from_incompatible_checkpoint_raises(tmp_path):
    with pytest.raises(RuntimeError):
        train(_small_store(fail_after=12), "h", _SMALL, _tc(), out_dir=tmp_path)
    other = SAEConfig(d_in=16, d_sae=64, architecture="topk", k=2)
    with pytest.raises(ValueError, match="incompatible checkpoint"):
        train(_small_store(), "h", other, _tc(), out_dir=tmp_path)
    with pytest.raises(ValueError, match="training config differs in \\['lr'\\]"):
        train(_small_store(), "h", _SMALL, _tc(lr=1e-3), out_dir=tmp_path)


def test_nonfinite_row_is_dropped_or_raises():
    store = _small_store(bad_row=5)  # row 5 lands in an early batch of seed 0
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sae = train(store, "h", _SMALL, _tc(checkpoint_every=0))
    info = train_info(sae)
    assert info["nonfinite_rows"] == 1 and info["n_skipped"] == 0  # the row, not its batch
    assert all(torch.isfinite(p).all() for p in sae.parameters())
    with pytest.raises(ValueError, match="non-finite"):
        train(store, "h", _SMALL, _tc(checkpoint_every=0, on_nonfinite="raise"))


def test_d_in_mismatch_raises():
    with pytest.raises(ValueError, match="d=16 in the store but the SAE has d_in=8"):
        train(_small_store(), "h", SAEConfig(d_in=8, d_sae=16, architecture="topk", k=2), _tc())


def test_gradient_topk_trains_on_activation_gradient_pairs():
    x, _ = planted_data(n=1024, d=16, m=32, k_true=2, seed=2)
    g = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    store = FakeStore({"h": x, "h#grad": g})
    cfg = SAEConfig(d_in=16, d_sae=48, architecture="gradient_topk", k=2)
    sae = train(store, "h", cfg, _tc(checkpoint_every=0, total_tokens=64 * 5))
    assert sae.cfg.architecture == "gradient_topk" and len(sae.train_log_) >= 0


def test_lr_schedule_and_geometric_median():
    cfg = TrainConfig(total_tokens=100, batch_size=1, lr_warmup_steps=10, lr_decay_fraction=0.2)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(50, 100, cfg) == 1.0
    assert lr_factor(90, 100, cfg) == pytest.approx(0.5)
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(geometric_median(pts, n_iter=500), torch.tensor([1.0, 0.0]), atol=1e-2)


def test_encoder_init_scale_sets_the_starting_encoder(planted):
    store, _ = planted
    cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=3)

    def start(scale):  # one step at a negligible lr: the returned weights are the start
        t = TrainConfig(total_tokens=256, batch_size=256, lr=1e-12, encoder_init_scale=scale)
        return train(store, "h", cfg, t)

    one, half, default = start(1.0), start(0.5), start(None)
    torch.testing.assert_close(half.W_enc, 0.5 * one.W_enc, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(half.W_dec, one.W_dec)
    torch.testing.assert_close(default.W_enc, one.W_enc / 3**0.5, rtol=1e-5, atol=1e-7)
    from hiddenlens.sae import registry

    starts = {a: TrainConfig().encoder_start(registry.get(a)) for a in registry.names()}
    assert starts["batchtopk"] == starts["matryoshka_batchtopk"] == starts["topk"]
    assert starts["gradient_topk"] == starts["topk"] == pytest.approx(3**-0.5)
    for tied in ("relu", "gated", "jumprelu", "transcoder", "topk_transcoder"):
        assert starts[tied] == 1.0, tied  # unmeasured here: the tied start
    assert TrainConfig(encoder_init_scale=0.3).encoder_start(registry.get("relu")) == 0.3
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="encoder_init_scale"):
            TrainConfig(encoder_init_scale=bad)

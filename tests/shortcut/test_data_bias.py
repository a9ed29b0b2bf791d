"""Generator, exact Bayes reference and the shortcut-bias score (planted answers)."""

from math import erf

import numpy as np
import pytest
import torch

from hiddenlens.shortcut import (
    TwoFeatureConfig,
    bayes_log_odds,
    bias,
    generate,
    make_dataset,
)


class PatchReader(torch.nn.Module):
    """Logit = mean of one feature's patch: a model that reads only that feature."""

    def __init__(self, cfg, feature):
        super().__init__()
        side = cfg.core_size if feature == "core" else cfg.shortcut_size
        n = cfg.image_size
        mask = torch.zeros(1, n, n)
        if feature == "core":
            mask[0, :side, :side] = 1
        else:
            mask[0, n - side :, n - side :] = 1
        self.register_buffer("mask", mask / mask.sum())

    def forward(self, x):
        return (x * self.mask).sum(dim=(1, 2, 3))


@pytest.mark.parametrize("kind", ["image", "vector"])
@pytest.mark.parametrize("latent", ["binary", "gaussian"])
def test_empirical_predictivity_matches_request(kind, latent):
    cfg = TwoFeatureConfig(
        core_predictivity=0.8, shortcut_predictivity=0.65, kind=kind, latent=latent, rotate=True
    )
    n = 20000
    sp = generate(cfg, n, "iid", seed=3)
    s = 2 * sp.y - 1
    for z, p in ((sp.core, 0.8), (sp.shortcut, 0.65)):
        emp = np.mean(np.sign(z) == s)
        assert abs(emp - p) < 4 * np.sqrt(p * (1 - p) / n)  # within 4 standard errors
    assert abs(sp.y.mean() - 0.5) < 4 * np.sqrt(0.25 / n)


def test_splits_have_the_promised_structure():
    cfg = TwoFeatureConfig(latent="gaussian")
    ds = make_dataset(cfg, 100, 500, seed=1)
    s = {k: 2 * v.y - 1 for k, v in ds.splits.items()}
    assert np.all(np.sign(ds.splits["agree"].core) == s["agree"])
    assert np.all(np.sign(ds.splits["agree"].shortcut) == s["agree"])
    assert np.all(np.sign(ds.splits["conflict"].shortcut) == -s["conflict"])
    frac = np.mean(np.sign(ds.splits["shortcut_random"].shortcut) == s["shortcut_random"])
    assert 0.4 < frac < 0.6
    assert ds.train.x.shape == (100, 1, 12, 12) and ds.train.x.dtype == np.float32
    assert set(ds.splits["iid"].groups) <= {0, 1, 2, 3}


@pytest.mark.parametrize("latent", ["binary", "gaussian"])
def test_bayes_posterior_is_calibrated(latent):
    # the exact posterior must match empirical label frequencies in every probability bin
    cfg = TwoFeatureConfig(
        core_predictivity=0.85,
        shortcut_predictivity=0.7,
        core_amplitude=0.6,
        shortcut_amplitude=0.9,
        core_size=1,
        shortcut_size=3,
        kind="vector",
        dim=6,
        latent=latent,
        rotate=True,
    )
    sp = generate(cfg, 200_000, "iid", seed=0)
    prob = 1 / (1 + np.exp(-bayes_log_odds(cfg, sp.x)))
    bins = np.digitize(prob, np.linspace(0, 1, 11)[1:-1])
    for b in np.unique(bins):
        sel = bins == b
        if sel.sum() > 2000:
            se = np.sqrt(prob[sel].mean() * (1 - prob[sel].mean()) / sel.sum())
            assert abs(sp.y[sel].mean() - prob[sel].mean()) < 5 * se + 1e-3
    # and it beats the single-feature readers it is built from
    bayes_acc = np.mean((prob > 0.5) == sp.y)
    assert bayes_acc > 0.5


def test_core_reader_zero_bias_shortcut_reader_max_bias_noise_free():
    cfg = TwoFeatureConfig(core_predictivity=1.0, shortcut_predictivity=0.9, noise=0.0)
    ds = make_dataset(cfg, 200, 400)
    core = bias(PatchReader(cfg, "core"), ds)
    short = bias(PatchReader(cfg, "shortcut"), ds)
    assert core["shortcut/bias"] == 0.0 and core["shortcut/core_reliance"] == 1.0
    assert short["shortcut/bias"] == 1.0 == short["shortcut/max_bias"]
    assert core["shortcut/accuracy/conflict"] == 1.0 and short["shortcut/accuracy/conflict"] == 0.0
    assert short["shortcut/accuracy/agree"] == 1.0


def test_core_reader_zero_bias_with_noise_when_shortcut_uninformative():
    # p_s = 0.5: the Bayes classifier ignores the shortcut, so reading the core is unbiased
    cfg = TwoFeatureConfig(core_predictivity=0.9, shortcut_predictivity=0.5, noise=1.0)
    ds = make_dataset(cfg, 200, 3000)
    core = bias(PatchReader(cfg, "core"), ds)
    short = bias(PatchReader(cfg, "shortcut"), ds)
    assert core["shortcut/bias"] == 0.0
    # reliance is on the latent classes; a 2x2 patch read through noise 1 keeps its sign
    # with probability Phi(amplitude / (noise / 2)) = Phi(2), for both readers
    keep = 0.5 * (1 + erf(2 / np.sqrt(2)))
    assert core["shortcut/bayes_shortcut_reliance"] == pytest.approx(1 - keep, abs=0.01)
    assert short["shortcut/bias"] == pytest.approx(keep - (1 - keep), abs=0.015)


def test_bayes_model_has_zero_bias_and_two_logit_output_is_accepted():
    cfg = TwoFeatureConfig(shortcut_size=4, latent="gaussian")
    ds = make_dataset(cfg, 200, 1000)

    def two_logits(x):
        lo = bayes_log_odds(cfg, x)
        return np.stack([np.zeros_like(lo), lo], axis=1)

    out = bias(two_logits, ds)
    assert out["shortcut/bias"] == 0.0
    assert 0 < out["shortcut/bayes_shortcut_reliance"] < 1
    for split in ("iid", "agree", "conflict", "shortcut_random", "train"):
        assert out[f"shortcut/accuracy/{split}"] == out[f"shortcut/bayes_accuracy/{split}"]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5"])
def test_predictivity_outside_unit_interval_rejected(bad):
    with pytest.raises(ValueError, match="predictivity"):
        TwoFeatureConfig(shortcut_predictivity=bad)


def test_other_bad_configs_rejected():
    with pytest.raises(ValueError, match="overlap"):
        TwoFeatureConfig(core_size=6, shortcut_size=7)
    with pytest.raises(ValueError, match="amplitude"):
        TwoFeatureConfig(core_amplitude=0)
    with pytest.raises(ValueError, match="kind"):
        TwoFeatureConfig(kind="audio")
    with pytest.raises(ValueError, match="split"):
        generate(TwoFeatureConfig(), 10, "ood")


def test_impossible_conflict_split_rejected():
    cfg = TwoFeatureConfig(core_predictivity=1.0, shortcut_predictivity=1.0, noise=0.0)
    generate(cfg, 10, "agree")  # fine
    with pytest.raises(ValueError, match="conflict"):
        generate(cfg, 10, "conflict")
    with pytest.raises(ValueError, match="conflict"):
        make_dataset(cfg, 10, 10)


@pytest.mark.parametrize("shape", [(3,), (5, 3), (2, 2, 2)])
def test_model_output_shape_mismatch_rejected(shape):
    ds = make_dataset(TwoFeatureConfig(), 20, 20)

    def bad(x):
        return np.zeros((len(x), *shape[1:])) if len(shape) > 1 else np.zeros(shape)

    with pytest.raises(ValueError, match="shape"):
        bias(bad, ds)


def test_model_with_wrong_input_size_and_non_callable_rejected():
    ds = make_dataset(TwoFeatureConfig(), 20, 20)
    with pytest.raises(RuntimeError):
        bias(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 2)), ds)
    with pytest.raises(TypeError):
        bias(42, ds)

"""The ChaosMining noise-floor diagnostic: the init control and the per-term view of recall."""

import dataclasses

import numpy as np
import pytest

from experiments.attribution_eval.chaos_floor import level_stats
from experiments.attribution_eval.run import EvalConfig, chaos_model

TINY = dataclasses.replace(
    EvalConfig(), chaos_train=40, chaos_test=16, chaos_epochs=1, seeds=(0,)
)


def test_fan_in_control_fixes_the_first_layer_scale_at_every_width():
    for n_noise in (20, 400):
        d = 5 + n_noise
        w = chaos_model(dataclasses.replace(TINY, chaos_epochs=0), n_noise, 0)[1][0].weight
        assert 0.95 / d**0.5 < w.abs().max() <= 1 / d**0.5  # PyTorch's default: 1/sqrt(d)
        wf = chaos_model(dataclasses.replace(TINY, chaos_epochs=0), n_noise, 0, fan_in=105)[1]
        assert 0.95 / 105**0.5 < wf[0].weight.abs().max() <= 1 / 105**0.5


def test_level_stats_hits_add_up_to_the_saliency_recall():
    st = level_stats(TINY, 30, 0, None)
    assert st["hits"].shape == (5,) and np.all((0 <= st["hits"]) & (st["hits"] <= 1))
    assert st["hits"].mean() == pytest.approx(st["recall_saliency"])
    assert st["floor"] > 0 and st["w_irr_init"] > 0


def test_a_fan_in_below_one_is_refused(capsys):
    from experiments.attribution_eval.chaos_floor import main

    for bad in (0, -4, 2.5):  # 0 divided by zero, -4 drew complex bounds
        with pytest.raises(ValueError, match=f"fan_in must be None or an int >= 1, got {bad}"):
            chaos_model(TINY, 5, 0, fan_in=bad)
    with pytest.raises(SystemExit) as exit_:
        main(["--fan-in", "0", "--out", "/nonexistent/never-written"])
    assert exit_.value.code == 2 and "--fan-in must be >= 1, got 0" in capsys.readouterr().err

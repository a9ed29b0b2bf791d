"""`hiddenlens train-sae` end to end on a real ActivationStore."""

import json

import torch
from torch import nn

from hiddenlens.sae import load


def test_train_sae_command_on_a_real_store(tmp_path):
    from hiddenlens.cli import main
    from hiddenlens.store import cache_activations

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 2))
    cache_activations(model, torch.randn(600, 8), ["1"], tmp_path / "store", batch_size=100)
    out = tmp_path / "sae"
    rc = main(
        [
            "train-sae",
            "--store",
            str(tmp_path / "store"),
            "--hook",
            "1",
            "--out",
            str(out),
            "--d-sae",
            "24",
            "--k",
            "3",
            "--total-tokens",
            "1280",
            "--batch-size",
            "128",
            "--lr",
            "0.003",
            "--lr-warmup-steps",
            "2",
            "--checkpoint-every",
            "5",
        ]
    )
    assert rc == 0
    sae = load(out)
    assert sae.cfg.d_in == 12 and sae.cfg.hook_point == "1"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["sae/fvu/1"] < 1 and metrics["sae/l0/1"] <= 3
    assert (out / "checkpoints" / "step_00000010" / "state.json").exists()


def test_train_sae_flags_are_the_config_fields_with_their_defaults(tmp_path):
    import argparse
    import dataclasses

    from hiddenlens.sae import SAEConfig, TrainConfig
    from hiddenlens.sae.cli import add_train_args

    p = argparse.ArgumentParser()
    add_train_args(p)
    args = p.parse_args(["--store", "s", "--hook", "h", "--out", "o"])
    for cls in (SAEConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name in ("d_in", "d_out", "hook_point", "model_id", "extra"):
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            assert getattr(args, f.name) == default, f.name  # no drift from the library
    # old spellings still parse
    old = p.parse_args(["--store", "s", "--hook", "h", "--out", "o", "--l1", "2", "--threads",
                        "1", "--no-normalize"])  # fmt: skip
    assert old.l1_coefficient == 2.0 and old.num_threads == 1
    assert old.normalize_activations is False


def test_train_sae_with_several_hooks_and_a_grid_trains_each_in_one_pass(tmp_path):
    from hiddenlens.cli import main
    from hiddenlens.store import cache_activations

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 2))
    cache_activations(model, torch.randn(600, 8), ["0", "1"], tmp_path / "store", batch_size=100)
    out = tmp_path / "saes"
    rc = main(["train-sae", "--store", str(tmp_path / "store"), "--hook", "0", "1", "--out",
               str(out), "--d-sae", "24", "--k", "2", "3", "--total-tokens", "640",
               "--batch-size", "64", "--eval-rows", "300"])  # fmt: skip
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0__topk_24_k2", "0__topk_24_k3", "1__topk_24_k2", "1__topk_24_k3"]
    for n in names:
        hook = n.split("__")[0]
        sae = load(out / n)
        assert sae.cfg.hook_point == hook and sae.cfg.k == int(n[-1])
        m = json.loads((out / n / "metrics.json").read_text())
        assert m[f"sae/l0/{hook}"] <= sae.cfg.k

"""Faults of issue 14 in the SAE package, each a test that failed before its fix.

1. training on a store with a few non-finite rows (it hung at step 0: every batch held a
   bad row and whole batches were skipped without limit);
6. loading allocated before reading shapes, and read "false" as True;
7. accepted nonsense (negative coefficients, betas outside [0, 1), --d-sae 0, --eval-rows 0,
   --device cuda without a GPU) and wrong provenance (model_name null, a placeholder
   sae_lens_version).
"""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
import torch
from torch import nn

from hiddenlens.cli import main
from hiddenlens.sae import SAEConfig, TrainConfig, build_sae, load, train
from hiddenlens.sae.trainer import train_info

SMALL = SAEConfig(d_in=12, d_sae=24, architecture="topk", k=3)


def _cache(tmp_path, n=1000, bad_every=None, model_id="tiny/mlp"):
    """A real store of 12-wide rows; every ``bad_every``-th input row is NaN."""
    from hiddenlens.hooks import ModelHandle
    from hiddenlens.store import cache_activations

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 2))
    x = torch.randn(n, 8)
    if bad_every:
        x[::bad_every] = float("nan")
    handle = ModelHandle(model, model_id=model_id)
    out = tmp_path / "store"
    return cache_activations(handle, x, ["1"], out, batch_size=100, allow_nonfinite=True)


def _tc(**kw):
    return TrainConfig(**{"total_tokens": 64 * 20, "batch_size": 64, "lr": 3e-3, **kw})


# -- 1. non-finite rows ---------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_one_percent_nan_rows_train_to_the_end_with_rows_dropped_and_counted(tmp_path):
    store = _cache(tmp_path, bad_every=100)  # 1% of rows: nearly every batch holds one
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sae = train(store, "1", SMALL, _tc())
    info = train_info(sae)
    assert info["log"][-1]["step"] == 20  # it finished (before: stuck at step 0)
    assert info["n_skipped"] == 0 and 0 < info["nonfinite_rows"] <= 0.03 * info["rows_seen"]
    assert info["log"][-1]["rows_dropped"] == info["nonfinite_rows"]
    assert all(torch.isfinite(p).all() for p in sae.parameters())


@pytest.mark.timeout(120)
def test_too_many_nonfinite_rows_is_a_clear_error_not_a_hang(tmp_path):
    store = _cache(tmp_path, bad_every=2)  # half the rows
    with pytest.raises(ValueError, match="non-finite .*more than max_nonfinite_fraction=0.1"):
        with pytest.warns(RuntimeWarning):
            train(store, "1", SMALL, _tc())
    with pytest.raises(ValueError, match="max_nonfinite_fraction"):
        TrainConfig(max_nonfinite_fraction=1.0)  # 1.0 would allow an endless all-NaN run


@pytest.mark.timeout(120)
def test_all_nan_store_fails_at_once(tmp_path):
    store = _cache(tmp_path, n=300, bad_every=1)
    with pytest.raises(ValueError, match="non-finite|no finite rows"):
        train(store, "1", SMALL, _tc(b_dec_init="zeros", normalize_activations=False))


def test_null_store_statistics_are_checked_before_training(tmp_path):
    store = _cache(tmp_path, bad_every=100)
    assert store.stats("1")["mean_norm"] != store.stats("1")["mean_norm"]  # null -> NaN
    with pytest.raises(ValueError, match="statistics of '1' are null"):
        train(store, "1", SMALL, _tc(on_nonfinite="raise"), out_dir=tmp_path / "sae")
    assert not (tmp_path / "sae" / "checkpoints").exists()  # nothing was trained


# -- 6. loading ---------------------------------------------------------------------------
def _saved(tmp_path, arch="topk"):
    k = 3 if arch == "topk" else None
    sae = build_sae(SAEConfig(d_in=8, d_sae=16, architecture=arch, k=k), seed=0)
    sae.save(tmp_path / arch)
    return tmp_path / arch


def _edit_cfg(path, fn):
    cfg = json.loads((path / "cfg.json").read_text())
    fn(cfg)
    (path / "cfg.json").write_text(json.dumps(cfg))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["top", "hiddenlens"])
def test_huge_d_sae_in_cfg_is_refused_from_the_header_before_allocating(tmp_path, where):
    path = _saved(tmp_path)

    def huge(cfg):
        if where == "top":
            cfg["metadata"].pop("hiddenlens")
            cfg["d_sae"] = 10**12  # 8 * 10**12 floats: terabytes if allocated
        else:
            cfg["metadata"]["hiddenlens"]["config"]["d_sae"] = 10**12

    _edit_cfg(path, huge)
    with pytest.raises(ValueError, match=r"tensor '\w+' has shape .* but cfg.json implies"):
        load(path)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("apply_b_dec_to_input", "false", "apply_b_dec_to_input.*bool"),
        ("d_in", 8.0, "'d_in' must be int"),
        ("k", "3", "'k' must be int"),
        ("rescale_acts_by_decoder_norm", 1, "rescale_acts_by_decoder_norm.*bool"),
    ],
)
def test_cfg_json_values_are_type_checked(tmp_path, field, value, match):
    path = _saved(tmp_path)

    def bad(cfg):
        cfg["metadata"].pop("hiddenlens")
        cfg[field] = value

    _edit_cfg(path, bad)
    with pytest.raises(ValueError, match=match):
        load(path)


def test_hiddenlens_config_in_metadata_is_type_checked_too(tmp_path):
    path = _saved(tmp_path)
    _edit_cfg(path, lambda c: c["metadata"]["hiddenlens"]["config"].update(grad_normalize="no"))
    with pytest.raises(ValueError, match="grad_normalize must be a bool"):
        load(path)


def test_sparsify_shapes_are_checked_from_the_header(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"encoder.weight": torch.zeros(4, 6), "encoder.bias": torch.zeros(4),
         "W_dec": torch.zeros(4, 6), "b_dec": torch.zeros(6)},
        str(tmp_path / "sae.safetensors"),
    )  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 6, "k": 2, "num_latents": 10**12}))
    with pytest.raises(ValueError, match="'encoder.weight' has shape"):
        load(tmp_path)


# -- 7. accepted nonsense -----------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"l1_coefficient": -5}, "l1_coefficient"),
        ({"aux_coefficient": -1.0}, "aux_coefficient"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-8}, "eps"),
        ({"batchtopk_threshold_lr": -0.1}, "batchtopk_threshold_lr"),
        ({"batchtopk_threshold_lr": 0.0}, "batchtopk_threshold_lr"),
        ({"betas": (1.5, 2)}, r"betas\[0\]"),
        ({"betas": (0.9,)}, "betas"),
        ({"normalize_activations": "false"}, "normalize_activations"),
        ({"lr": float("nan")}, "lr"),
    ],
)
def test_train_config_rejects(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**kw)


def test_sae_config_rejects_non_bool_flags():
    with pytest.raises(TypeError, match="apply_b_dec_to_input"):
        SAEConfig(d_in=4, d_sae=8, architecture="relu", apply_b_dec_to_input="false")


@pytest.mark.parametrize("flag, value", [("--d-sae", "0"), ("--eval-rows", "0"), ("--k", "-1")])
def test_cli_rejects_before_work(tmp_path, capsys, flag, value):
    args = ["train-sae", "--store", str(tmp_path / "none"), "--hook", "1", "--out",
            str(tmp_path / "out"), flag, value]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and "must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_device_cuda_without_a_gpu_is_refused_before_reading_the_store(tmp_path, capsys):
    rc = main(["train-sae", "--store", str(tmp_path / "none"), "--hook", "1", "--out",
               str(tmp_path / "out"), "--device", "cuda"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "no CUDA GPU is available" in err and "none" not in err


def test_provenance_in_cfg_json_is_real(tmp_path):
    _cache(tmp_path, model_id="tiny/mlp")
    rc = main(["train-sae", "--store", str(tmp_path / "store"), "--hook", "1", "--out",
               str(tmp_path / "sae"), "--d-sae", "24", "--k", "3", "--total-tokens", "640",
               "--batch-size", "64", "--eval-rows", "200"])  # fmt: skip
    assert rc == 0
    meta = json.loads((tmp_path / "sae" / "cfg.json").read_text())["metadata"]
    from hiddenlens import __version__

    assert meta["model_name"] == "tiny/mlp"  # was null: read from the manifest's run.model
    assert meta["sae_lens_version"] == version("sae-lens")  # was a placeholder "6.0.0"
    assert meta["hiddenlens"]["version"] == __version__
    assert load(tmp_path / "sae").cfg.model_id == "tiny/mlp"

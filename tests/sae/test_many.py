"""train_many: each SAE equals the one trained alone; resume of the group; bad groups."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.sae import SAEConfig, TrainConfig, train
from hiddenlens.sae.many import run_name, train_many
from tests.sae.fakes import FakeStore, planted_data


def _tc(**kw):
    base = dict(total_tokens=64 * 24, batch_size=64, lr=3e-3, dead_tokens=256,
                lr_warmup_steps=3, checkpoint_every=8)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _specs():
    return [
        ("a", SAEConfig(d_in=16, d_sae=48, architecture="topk", k=2), _tc()),
        ("a", SAEConfig(d_in=16, d_sae=32, architecture="relu"), _tc(lr=1e-2, l1_coefficient=1.0)),
        ("b", SAEConfig(d_in=12, d_sae=24, architecture="batchtopk", k=3), _tc()),
    ]


def _store(fail_after=None):
    xa, _ = planted_data(n=2048, d=16, m=32, k_true=2, seed=1)
    xb, _ = planted_data(n=2048, d=12, m=24, k_true=2, seed=2)
    xa[:10, 3] = np.nan  # non-finite rows in one hook only: dropped for its SAEs alone
    return FakeStore({"a": xa, "b": xb}, fail_after=fail_after)


def _same(x, y):
    for (n, a), (_, b) in zip(x.state_dict().items(), y.state_dict().items()):
        assert torch.equal(a, b), n
    assert x.train_log_ == y.train_log_ and x.nonfinite_rows_ == y.nonfinite_rows_


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_each_sae_equals_training_it_alone_bit_for_bit(tmp_path):
    many = train_many(_store(), _specs(), out_dir=tmp_path / "many")
    for (hook, cfg, tc), sae in zip(_specs(), many):
        alone = train(_store(), hook, cfg, tc)
        _same(sae, alone)
        assert (tmp_path / "many" / run_name(hook, cfg) / "cfg.json").exists()
    assert many[0].nonfinite_rows_ > 0 and many[2].nonfinite_rows_ == 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_resume_of_the_group_equals_the_uninterrupted_run(tmp_path):
    full = train_many(_store(), _specs(), out_dir=tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_many(_store(fail_after=17), _specs(), out_dir=tmp_path / "run")
    # as if killed between the runs' writes at step 16: the last run has only step 8
    import shutil

    last = tmp_path / "run" / run_name(*_specs()[2][:2]) / "checkpoints"
    assert (last / "step_00000016").is_dir()
    shutil.rmtree(last / "step_00000016")
    store = _store()
    starts = []
    reads = store.batches
    store.batches = lambda *a, **kw: (starts.append(kw.get("start_batch")), reads(*a, **kw))[1]
    resumed = train_many(store, _specs(), out_dir=tmp_path / "run")
    assert starts == [8]  # one shared read, from the newest step all three runs have
    for a, b in zip(full, resumed):
        _same(a, b)


def test_groups_must_share_the_batch_stream():
    specs = _specs()
    specs[1] = (specs[1][0], specs[1][1], _tc(batch_size=32))
    with pytest.raises(ValueError, match="differs in \\['batch_size'\\]"):
        train_many(_store(), specs)
    with pytest.raises(ValueError, match="same SAE"):
        train_many(_store(), [_specs()[0], _specs()[0]])


def test_one_pass_over_a_real_store_with_two_hooks_equals_separate_runs(tmp_path):
    from hiddenlens.store import cache_activations

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 10))
    store = cache_activations(model, torch.randn(700, 8), ["0", "2"], tmp_path / "s",
                              batch_size=100)  # fmt: skip
    tc = dataclasses.replace(_tc(), total_tokens=64 * 10, checkpoint_every=0)
    specs = [("0", SAEConfig(d_in=12, d_sae=24, architecture="topk", k=2), tc),
             ("2", SAEConfig(d_in=10, d_sae=20, architecture="topk", k=2), tc)]  # fmt: skip
    for (hook, cfg, t), sae in zip(specs, train_many(store, specs)):
        _same(sae, train(store, hook, cfg, t))

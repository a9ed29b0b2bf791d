"""A resume over data that changed after the first shard is refused (issue 14, item 3).

The run's fingerprint used to be the data's type, length and first batch, so a re-run on a
Dataset / IterableDataset / DataLoader differing after batch 1 resumed and the store mixed
old and new rows. Each shard now records the hash of the examples it was written from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiddenlens.hooks import ModelHandle
from hiddenlens.store import ActivationStore, cache_activations, shardlog
from tests.store.conftest import InterruptAfter as _CtrlCAfter

TEXTS = [f"the cat sat on mat {w}" for w in "a dog ran fast and big small red world hello".split()]


def _interrupt_on_call(model, n: int):
    """A forward hook that raises KeyboardInterrupt (a Ctrl-C) on the n-th call, once."""
    calls = []

    def hook(*_):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt

    return model.embeddings.register_forward_hook(hook)


def _dataset(texts, streamed: bool):
    from datasets import Dataset

    ds = Dataset.from_dict({"text": texts, "topic": [t.split()[-1] for t in texts]})
    return ds.to_iterable_dataset() if streamed else ds


@pytest.mark.parametrize("streamed", [False, True], ids=["Dataset", "IterableDataset"])
def test_dataset_changed_after_the_first_shard_is_refused(tiny_bert, tmp_path, streamed):
    model, tok = tiny_bert
    handle = ModelHandle(model, tok, "hf", "tiny-bert", max_length=24)
    out = tmp_path / "s"
    kw = dict(batch_size=2, shard_size_mb=0.0001, labels=["topic"])  # one shard per batch
    hook = _interrupt_on_call(model, 4)
    try:
        with pytest.raises(KeyboardInterrupt):
            cache_activations(handle, _dataset(TEXTS, streamed), "encoder.layer.0", out, **kw)
    finally:
        hook.remove()
    shards = shardlog.load_progress(out).shards
    assert [s["sample_stop"] for s in shards] == [2, 4, 6]
    changed = list(TEXTS)
    changed[3] = "a dog sat fast"  # same topic; sample 3: shard_00001 holds samples 2..3
    with pytest.raises(
        FileExistsError, match=r"differs .* first in shard_00001 \(samples 2\.\.3\)"
    ):
        cache_activations(handle, _dataset(changed, streamed), "encoder.layer.0", out, **kw)
    assert not (out / "manifest.json").exists()  # nothing was mixed in
    # the unchanged data resumes to exactly the uninterrupted result
    resumed = cache_activations(handle, _dataset(TEXTS, streamed), "encoder.layer.0", out, **kw)
    ref = cache_activations(
        handle, _dataset(TEXTS, streamed), "encoder.layer.0", tmp_path / "ref", **kw
    )
    assert np.array_equal(resumed.rows("encoder.layer.0"), ref.rows("encoder.layer.0"))
    for key in ref.meta:
        assert np.array_equal(resumed.meta[key], ref.meta[key])
    assert resumed.label_names == ref.label_names
    names = ActivationStore.open(out).label_names["topic"]
    topics = [TEXTS[s].split()[-1] for s in resumed.meta["sample_idx"]]
    assert [names[c] for c in resumed.meta["topic"]] == topics


def test_dataloader_changed_after_batch_one_is_refused(tmp_path):
    """The exact defect: type, length and first batch equal, a later batch differs."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(_CtrlCAfter(4), torch.nn.Linear(8, 16))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))

    def loader(data):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=8)

    kw = dict(shard_size_mb=0.0001)  # one shard per batch of 8
    with pytest.raises(KeyboardInterrupt):
        cache_activations(model, loader(x), ["1"], tmp_path / "s", **kw)
    changed = x.clone()
    changed[12] += 1  # batch 2 (samples 8..15); batch 1 is unchanged
    with pytest.raises(FileExistsError, match=r"first in shard_00001 \(samples 8\.\.15\)"):
        cache_activations(model, loader(changed), ["1"], tmp_path / "s", **kw)
    store = cache_activations(model, loader(x), ["1"], tmp_path / "s", **kw)
    with torch.no_grad():
        assert np.array_equal(store.rows("1"), model[1](x).numpy())

"""Every input kind as_data accepts gives the same batches and rows as its list/tensor twin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.corpus import demo_corpus
from hiddenlens.data import DataSource, as_data
from hiddenlens.hooks import ModelHandle
from hiddenlens.store import cache_activations

TEXTS = [
    "the cat sat on the mat",
    "a dog ran fast",
    "hello world",
    "big red dog and small cat",
    "1 2 3",
    "the mat , the cat .",
    "red world",
]
TOPICS = ["pets", "pets", "greeting", "pets", "numbers", "pets", "colour"]


def _inputs(source: DataSource, batch_size: int = 3) -> list:
    out = []
    for b in source.batches(batch_size):
        out.extend(b.inputs if isinstance(b.inputs, list) else list(b.inputs))
    return out


def _same_store(a, b) -> None:
    assert a.hook_points == b.hook_points and len(a) == len(b)
    for h in a.hook_points:
        assert np.array_equal(a.rows(h), b.rows(h))
    assert a.meta.keys() == b.meta.keys()
    for k in a.meta:
        assert np.array_equal(a.meta[k], b.meta[k])


@pytest.fixture
def handle(tiny_bert):
    model, tok = tiny_bert
    return ModelHandle(model, tok, "hf", "tiny-bert", max_length=24)


def _text_inputs(tmp_path):
    from datasets import Dataset

    (tmp_path / "a.txt").write_text("\n\n".join(t.replace(" ", "  ") for t in TEXTS) + "\n")
    lines = [json.dumps({"text": t, "topic": c}) for t, c in zip(TEXTS, TOPICS)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    ds = Dataset.from_dict({"text": TEXTS, "topic": TOPICS})
    ds.save_to_disk(str(tmp_path / "ds"))
    return {
        "tuple": tuple(TEXTS),
        "txt": tmp_path / "a.txt",
        "jsonl": str(tmp_path / "a.jsonl"),
        "hf_dir": tmp_path / "ds",
        "dataset": ds,
        "iterable": ds.to_iterable_dataset(),
    }


def test_text_inputs_give_the_same_rows(tmp_path, handle):
    ref = cache_activations(handle, TEXTS, "encoder.layer.*", tmp_path / "ref", batch_size=3)
    for name, data in _text_inputs(tmp_path).items():
        src = as_data(data)
        assert src.kind == "text" and _inputs(src) == TEXTS, name
        assert src.length == (None if name == "iterable" else len(TEXTS)), name
        store = cache_activations(handle, data, "encoder.layer.*", tmp_path / name, batch_size=3)
        _same_store(store, ref)


def test_label_columns_of_every_text_input(tmp_path, handle):
    ref = cache_activations(
        handle, TEXTS, "encoder.layer.0", tmp_path / "ref", batch_size=2, labels={"topic": TOPICS}
    )
    names = ref.label_names["topic"]
    assert names == sorted(set(TOPICS))
    # codes round-trip to the names of each row's own document
    expected = np.asarray(TOPICS)[ref.meta["sample_idx"]]
    assert list(np.asarray(names)[ref.meta["topic"]]) == list(expected)
    for name, data in _text_inputs(tmp_path).items():
        if name in ("tuple", "txt"):
            continue  # no columns: labels are given as values there
        kw = dict(batch_size=2, labels=["topic"])
        store = cache_activations(handle, data, "encoder.layer.0", tmp_path / name, **kw)
        got = np.asarray(store.label_names["topic"])[store.meta["topic"]]
        assert list(got) == list(expected), name


def test_demo_is_the_bundled_corpus(monkeypatch):
    import hiddenlens.corpus

    docs = demo_corpus()[:40]  # the corpus itself is tested in tests/test_corpus.py
    monkeypatch.setattr(hiddenlens.corpus, "demo_corpus", lambda: docs)
    src = as_data("demo")
    assert src.kind == "text" and src.length == 40
    assert _inputs(src.take(30), 16) == docs[:30]


def test_example_inputs_give_the_same_rows(tmp_path, mlp):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 8, generator=g)
    y = torch.arange(23) % 3
    ref = cache_activations(mlp, x, ["1", "4"], tmp_path / "ref", batch_size=5, labels=y.numpy())
    mm = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=tuple(x.shape)
    )
    mm[:] = x.numpy()
    mm.flush()
    readonly = np.load(tmp_path / "x.npy", mmap_mode="r")
    pairs = torch.utils.data.TensorDataset(x, y)
    kinds = {
        "array": (x.numpy(), y.numpy()),
        "memmap": (readonly, y.tolist()),
        "list_of_tensors": (list(x), torch.as_tensor(y)),
        "map_style": (pairs, None),  # targets become the "label" column
        "loader": (torch.utils.data.DataLoader(pairs, batch_size=5), None),
    }
    for name, (data, labels) in kinds.items():
        src = as_data(data, labels=labels)
        assert src.kind == "examples" and src.length == 23, name
        store = cache_activations(
            mlp, data, ["1", "4"], tmp_path / name, batch_size=5, labels=labels
        )
        _same_store(store, ref)
    assert store.manifest["hooks"]["1"]["shape"] == [16]


def test_token_inputs_give_the_same_rows(tmp_path, tiny_tl):
    ids = torch.randint(0, 20, (6, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0
    mask[5, 1:] = 0
    ref = cache_activations(
        tiny_tl,
        {"input_ids": ids, "attention_mask": mask},
        "blocks.*.hook_resid_post",
        tmp_path / "ref",
        batch_size=4,
    )
    assert len(ref) == int(mask.sum())
    for name, data in {
        "numpy": {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
        "int32": {"input_ids": ids.int(), "attention_mask": mask.bool()},
    }.items():
        store = cache_activations(
            tiny_tl, data, "blocks.*.hook_resid_post", tmp_path / name, batch_size=4
        )
        _same_store(store, ref)
    plain = as_data(ids)
    assert plain.kind == "tokens" and as_data(ids.numpy().astype(np.int32)).kind == "tokens"
    assert as_data(ids.to(torch.uint8)).kind == "examples"  # uint8: pixels, not token ids


class _Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 4)

    def forward(self, ids):
        return self.emb(ids)


def test_tokens_through_a_plain_module_keep_the_mask(tmp_path):
    torch.manual_seed(0)
    model = _Embed()
    ids = torch.randint(0, 20, (3, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    store = cache_activations(
        model, {"input_ids": ids, "attention_mask": mask}, "emb", tmp_path / "s"
    )
    assert len(store) == 9
    with torch.no_grad():
        expected = model.emb(ids)[mask.bool()].numpy()
    assert np.array_equal(store.rows("emb"), expected)
    assert np.array_equal(store.meta["token_id"], ids[mask.bool()].numpy())


def test_pretokenised_hf_dataset_gives_the_rows_of_its_token_ids(tmp_path, tiny_tl):
    """A dataset of ``input_ids`` (SAELens' pretokenised format; ragged rows padded and
    masked) caches the same rows as the token tensor, and keeps its other columns as labels."""
    from datasets import Dataset

    ids = torch.randint(0, 20, (5, 6), generator=torch.Generator().manual_seed(2))
    lengths = [6, 3, 6, 1, 4]
    mask = (torch.arange(6)[None] < torch.tensor(lengths)[:, None]).long()
    ragged = [ids[i, :n].tolist() for i, n in enumerate(lengths)]
    ds = Dataset.from_dict({"input_ids": ragged, "topic": ["a", "b", "a", "c", "b"]})
    src = as_data(ds, labels="topic")
    assert src.kind == "tokens" and src.labels["topic"].names == ["a", "b", "c"]
    ref = cache_activations(
        tiny_tl, {"input_ids": ids * mask, "attention_mask": mask},
        "blocks.0.hook_resid_post", tmp_path / "ref", batch_size=2,
    )
    got = cache_activations(tiny_tl, ds, "blocks.0.hook_resid_post", tmp_path / "ds", batch_size=2)
    _same_store(got, ref)
    with pytest.raises(ValueError, match="no column 'text'.*input_ids"):
        as_data(Dataset.from_dict({"body": ["x"]}))

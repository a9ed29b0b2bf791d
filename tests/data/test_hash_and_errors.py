"""The content hash sees every example (and nothing else); labels and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiddenlens.data import ContentHash, as_data


def _hash(source, batch_size: int = 4) -> str:
    h = ContentHash()
    for b in source.batches(batch_size):
        h.update(b.digests())
    assert h.n == source.length  # one digest per example
    return h.hexdigest()


def _kinds(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(11, 3, generator=g)
    texts = [f"text number {i}" for i in range(11)]
    ids = torch.randint(0, 50, (11, 5), generator=g)
    loader = lambda x: torch.utils.data.DataLoader(  # noqa: E731
        torch.utils.data.TensorDataset(x, torch.arange(11)), batch_size=4
    )
    return {
        "text": (texts, lambda d, i: d[:i] + [d[i] + "!"] + d[i + 1 :]),
        "tensor": (x, lambda d, i: torch.cat([d[:i], d[i : i + 1] + 1e-3, d[i + 1 :]])),
        "tokens": (ids, lambda d, i: torch.cat([d[:i], (d[i : i + 1] + 1) % 50, d[i + 1 :]])),
        "loader": (x, lambda d, i: torch.cat([d[:i], d[i : i + 1] * 2, d[i + 1 :]]), loader),
    }


@pytest.mark.parametrize("kind", ["text", "tensor", "tokens", "loader"])
def test_hash_changes_with_any_example_and_not_otherwise(kind):
    data, change, *wrap = _kinds()[kind]
    wrap = wrap[0] if wrap else (lambda d: d)
    base = _hash(as_data(wrap(data)))
    copy = [t for t in data] if isinstance(data, list) else data.clone()
    assert _hash(as_data(wrap(copy))) == base  # equal content, another object
    if kind != "loader":  # a loader keeps its own batch size
        assert _hash(as_data(wrap(data)), batch_size=3) == base  # batching does not matter
    for i in (0, 5, 10):  # first, middle, last
        assert _hash(as_data(wrap(change(data, i)))) != base, i


def test_hash_covers_labels_and_their_codes():
    texts = ["a", "b", "c"]
    base = _hash(as_data(texts, labels=[0, 1, 1]))
    assert _hash(as_data(texts, labels=[0, 1, 1])) == base
    assert _hash(as_data(texts, labels=[0, 1, 0])) != base
    assert _hash(as_data(texts)) != base
    assert _hash(as_data(texts, labels=["x", "y", "y"])) != _hash(
        as_data(texts, labels=["x", "x", "y"])
    )


def test_string_labels_encoded_once_with_their_names():
    src = as_data(["a", "b", "c", "d"], labels={"topic": ["dog", "cat", "dog", "eel"]})
    col = src.labels["topic"]
    assert col.names == ["cat", "dog", "eel"] and list(col.values) == [1, 0, 1, 2]
    assert list(col.decode(col.values)) == ["dog", "cat", "dog", "eel"]
    assert src.identity()["labels"] == {"topic": ["cat", "dog", "eel"]}
    numeric = as_data(["a", "b"], labels=np.array([0.5, 2.0]))
    assert (
        numeric.labels["label"].names is None and numeric.labels["label"].values.dtype.kind == "f"
    )


def test_class_label_columns_keep_their_names():
    from datasets import ClassLabel, Dataset, Features, Value

    feats = Features({"text": Value("string"), "y": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict({"text": ["a", "b", "c"], "y": [1, 0, 1]}, features=feats)
    col = as_data(ds, labels="y").labels["y"]
    assert list(col.decode(col.values)) == ["pos", "neg", "pos"]


def test_streamed_labels_get_codes_in_order_of_first_appearance():
    from datasets import Dataset

    ds = Dataset.from_dict({"text": list("abcde"), "y": ["z", "x", "z", "y", "x"]})
    src = as_data(ds.to_iterable_dataset(), labels="y")
    codes = np.concatenate([b.labels["y"] for b in src.batches(2)])
    assert src.labels["y"].names == ["z", "x", "y"] and list(codes) == [0, 1, 0, 2, 1]
    again = np.concatenate([b.labels["y"] for b in src.batches(2)])
    assert list(again) == list(codes)  # a re-read (a resume) gives the same codes


def test_take_and_batches_from_a_start():
    src = as_data([f"t{i}" for i in range(10)], labels=list(range(10)))
    part = src.take(7)
    assert part.length == 7
    got = list(part.batches(3, start=2))
    assert [b.start for b in got] == [2, 5] and got[-1].inputs == ["t5", "t6"]
    assert list(got[-1].labels["label"]) == [5, 6]


def test_errors_name_the_input_and_what_is_accepted(tmp_path):
    from datasets import Dataset, DatasetDict

    d = Dataset.from_dict({"body": ["x", "y"], "topic": ["a", "b"]})
    with pytest.raises(ValueError, match="pick a split: train, test"):
        as_data(DatasetDict(train=d, test=d))
    DatasetDict(train=d, test=d).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match="pick a split: train, test"):
        as_data(tmp_path / "dd")
    with pytest.raises(ValueError, match=r"no column 'text' .*; columns: \['body', 'topic'\]"):
        as_data(d)
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] not in the data; columns"):
        as_data(d, text_column="body", labels=["nope"])
    with pytest.raises(TypeError, match=r"data\[2\] is None"):
        as_data(["a", "b", None, "c"])
    with pytest.raises(TypeError, match=r"labels\['label'\]\[1\] is None"):
        as_data(["a", "b", "c"], labels=["x", None, "y"])
    with pytest.raises(ValueError, match="has 2 values but the data has 3"):
        as_data(["a", "b", "c"], labels=[1, 2])
    with pytest.raises(FileNotFoundError, match=r"accepted: 'demo'.*pass a list"):
        as_data("the cat sat on the mat")
    with pytest.raises(ValueError, match="input_ids"):
        as_data({"ids": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="empty"):
        as_data(torch.empty(0, 4))
    with pytest.raises(TypeError, match="cannot read int"):
        as_data(5)
    with pytest.raises(ValueError, match="given twice"):
        as_data(as_data(["a"]), labels=[1])
    (tmp_path / "b.jsonl").write_text('{"text": "x y"}\n\n{"t": 1}\n')
    with pytest.raises(ValueError, match="b.jsonl:3 has no field 'text'"):
        as_data(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="c.jsonl:1 is not valid JSON"):
        as_data(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"text": "x", "y": 1}\n{"text": "z"}\n')
    with pytest.raises(ValueError, match="d.jsonl:2 has no field 'y'"):
        as_data(tmp_path / "d.jsonl", labels="y")
    with pytest.raises(ValueError, match="no columns"):
        as_data(["a", "b"], labels="topic")
    with pytest.raises(ValueError, match="has 1 values but the data has 2 .*no columns.*dataset with those columns"):
        as_data(["a", "b"], labels=["topic"])


"""Token rows are grouped by document by default (issue 15.1): a per-document label is not
decodable from held-out documents, however well tokens identify their own document."""

import warnings

import numpy as np
import pytest

from hiddenlens.probe import feature_complexity, mdl_probe, probe_with_control, sweep
from hiddenlens.store import MemorySource


def TokenSource(seed=0, n_docs=120, per_doc=8, d=96):
    """Token rows of 120 documents x 8 tokens: each document has its own direction, so a
    probe can recognise a document from any of its tokens."""
    rng = np.random.default_rng(seed)
    doc = np.repeat(np.arange(n_docs), per_doc)
    centre = rng.normal(size=(n_docs, d)) * 3
    X = (centre[doc] + rng.normal(size=(len(doc), d))).astype(np.float32)
    src = MemorySource(
        {"layer": X}, {"sample_idx": doc, "position": np.tile(np.arange(per_doc), n_docs)}
    )
    src.doc_label = rng.permutation(np.arange(n_docs) % 3)[doc]  # random, per document
    return src


def test_random_per_document_label_gives_chance_with_the_default_sweep():
    src = TokenSource()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default must not warn
        res = sweep(src, src.doc_label, cv=5, n_boot=20)
    assert res.extra["groups"] == "sample_idx"
    assert res.score[0] <= res.chance + 0.08, (res.score[0], res.chance)
    with pytest.warns(UserWarning, match="per-document label"):
        leaky = sweep(src, src.doc_label, cv=5, n_boot=20, groups=None)
    assert leaky.extra["groups"] == "rows"
    assert leaky.score[0] > res.chance + 0.3  # the leak the default removes
    # nearest-mean, control tasks and V-information share the default
    nm = sweep(src, src.doc_label, cv=5, n_boot=20, probe="nearest_mean")
    assert nm.score[0] <= nm.chance + 0.08
    task, ctrl = probe_with_control(src, src.doc_label, src.meta["position"], cv=5, n_boot=20)
    assert task.extra["groups"] == ctrl.extra["groups"] == "sample_idx"
    assert feature_complexity(src, src.doc_label, cv=5, n_boot=20).complexity > 0.9


def test_mdl_sends_documents_whole_by_default():
    src = TokenSource()
    grouped = mdl_probe(src, src.doc_label)
    with pytest.warns(UserWarning, match="per-document label"):
        leaky = mdl_probe(src, src.doc_label, groups=None)
    assert grouped.grouping == "sample_idx" and leaky.grouping == "rows"
    # grouped: no better than the uniform code (nothing to learn); leaky: compresses
    assert grouped.compression[0] < 1.1
    assert leaky.compression[0] > 1.3


def test_one_row_per_example_is_not_grouped_and_explicit_groups_are_used():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)

    src = MemorySource({"h": X}, {"sample_idx": np.arange(200), "doc": np.arange(200) // 4})
    assert sweep(src, y, cv=3, n_boot=10).extra["groups"] == "rows"
    assert sweep(src, y, cv=3, n_boot=10, groups="doc").extra["groups"] == "doc"

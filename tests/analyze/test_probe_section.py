"""The probe section says when its folds could not be grouped by document."""

from __future__ import annotations

import logging

import numpy as np

from hiddenlens.analyze.section_config import ProbeSectionConfig
from hiddenlens.analyze.sections.probe import run_probes


def _data(n_docs: int, rng):
    groups = np.repeat(np.arange(n_docs), 120 // n_docs)
    x = rng.normal(size=(len(groups), 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    return {"h": x}, {"sign": y}, groups


def test_too_few_documents_ungroups_the_folds_loudly(caplog):
    rng = np.random.default_rng(0)
    cfg = ProbeSectionConfig(n_boot=20, mdl_rows=60, cka_rows=60)
    arrays, labels, groups = _data(40, rng)
    assert run_probes(arrays, labels, None, groups, cfg, 0).grouped
    # grouped folds need >= cv documents and >= N_INNER = 3 in every outer training set
    # (the inner folds choosing the L2 strength): 6 documents give 4 per training set, 4
    # leave one with 2, 2 are fewer than the 3 folds; the run below has 3 (training sets of 2)
    from hiddenlens.analyze.sections.probe import _enough_groups

    assert _enough_groups(np.repeat(np.arange(6), 2), 3)
    assert not _enough_groups(np.repeat(np.arange(4), 2), 3)
    assert not _enough_groups(np.repeat(np.arange(2), 2), 3)
    arrays, labels, groups = _data(3, rng)
    with caplog.at_level(logging.WARNING):
        run = run_probes(arrays, labels, None, groups, cfg, 0)
    assert not run.grouped and "too few for grouped" in caplog.text
    assert run.tasks["sign"].score[0] > 0.9  # it still ran, on row folds (x[:, 0] > 0 is linear)

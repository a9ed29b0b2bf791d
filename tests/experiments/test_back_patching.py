"""experiments/back_patching: the task's planted answers, the cross-query control, the
summary's counts and verdict, and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments.back_patching.report import broken_by_any, verdict
from experiments.back_patching.run import cross_query_sweep, derangement, main, stage_hooks
from experiments.back_patching.task import build_model, make_task
from hiddenlens.attribution import BackPatchingSweep


def test_two_hop_answers_compose_the_relations():
    task = make_task(7, 3, test_share=0.25, seed=1)
    rel = {(r, e): int(task.relations[r, e]) for r in range(3) for e in range(7)}
    q = task.two_hop("all")
    assert len(q["answer"]) == 7 * 3 * 3
    for k in range(len(q["answer"])):
        e1, r1, r2 = int(q["e1"][k]), int(q["r1"][k]), int(q["r2"][k])
        assert q["bridge"][k] == rel[r1, e1] and q["answer"][k] == rel[r2, rel[r1, e1]]
        assert q["tokens"][k].tolist() == [e1, 7 + r1, 7 + r2]  # relations follow entities
    one, ans = task.one_hop()
    assert [ans[k] for k in range(len(ans))] == [rel[int(t[1]) - 7, int(t[0])] for t in one]
    train, test = task.two_hop("train"), task.two_hop("test")
    assert len(train["answer"]) + len(test["answer"]) == 63 and len(test["answer"]) == 16
    seen = {tuple(t) for t in train["tokens"].tolist()}
    assert not seen & {tuple(t) for t in test["tokens"].tolist()}  # held out means unseen
    with pytest.raises(ValueError, match="split"):
        task.two_hop("val")


def test_derangement_moves_every_query():
    for n in (2, 3, 17):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and np.all(p != np.arange(n))
    with pytest.raises(ValueError, match="n >= 2"):
        derangement(1)


def test_control_injects_the_other_querys_state():
    # Queries that share e1, r1 differ only at the last position, so replacing the last
    # position's residual after block 0 with query p's reproduces p's forward pass exactly
    # (blocks.0.hook_resid_post and blocks.1.hook_resid_pre are the same tensor): the
    # patched prediction of q is the unpatched prediction of perm[q].
    model = build_model(10, n_layers=2, d_model=16, seed=0)
    tokens = torch.tensor([[0, 6, r] for r in (6, 7, 8, 9)])
    with torch.no_grad():
        pred = model(tokens)[:, -1].argmax(-1).numpy()
    perm = derangement(4, seed=0)
    assert not np.array_equal(pred, pred[perm])  # the planted answers are not the unpatched ones
    hooks = ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"]
    sweep = cross_query_sweep(model, tokens, hooks, pred[perm], perm)
    assert sweep.correct[1, 0].all()
    assert np.array_equal(sweep.baseline, pred == pred[perm])
    assert stage_hooks(2) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre",
                              "blocks.1.hook_resid_post"]  # fmt: skip


def test_broken_by_any_reads_only_back_patches():
    correct = np.zeros((3, 3, 4), bool)  # cells with i >= j stay False and must not count
    baseline = np.array([True, True, True, False])
    correct[1, 0] = [True, False, True, True]  # breaks query 1
    correct[2, 0] = correct[2, 1] = [True, True, True, False]
    sweep = BackPatchingSweep(correct, baseline, ["a", "b", "c"], -1)
    assert broken_by_any(sweep) == pytest.approx(1 / 3)
    assert sweep.fixed_by_any() == 1.0  # query 3 is fixed by (1, 0)


def _summary(fixed, control):
    return {"fixed_by_any": {"values": fixed}, "control_fixed_by_any": {"values": control},
            "broken_by_any": {"mean": 0.1, "min": 0.0, "max": 0.2},
            "best_broken": {"mean": 0.05}}  # fmt: skip


def test_verdict_reads_every_seed_against_the_control():
    assert verdict(_summary([0.5, 0.4, 0.6], [0.2, 0.25, 0.3]))[0] == "reproduces"
    assert verdict(_summary([0.25, 0.4, 0.6], [0.1, 0.25, 0.3]))[0] == "partly reproduces"
    one_seed_short = _summary([0.5, 0.4, 0.6], [0.2, 0.35, 0.3])  # margins .3, .05, .3
    assert verdict(one_seed_short)[0] == "partly reproduces"
    assert verdict(_summary([0.45, 0.35, 0.55], [0.4, 0.3, 0.5]))[0] == "does not reproduce"


def test_tiny_run_writes_metrics_and_report(tmp_path):
    out = tmp_path / "run"
    assert main(["--fast", "--entities", "10", "--relations", "2", "--steps", "60",
                 "--test-share", "0.3", "--layers", "2", "--d-model", "32",
                 "--out", str(out)]) == 0  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    for name in ("baseline_accuracy", "fixed_by_any", "control_fixed_by_any", "broken_by_any",
                 "one_hop_accuracy", "n_queries"):
        assert f"attribution/back_patching_{name}/seed0" in m
    assert 0.0 <= m["attribution/back_patching_baseline_accuracy/seed0"] <= 1.0
    assert (out / "figures" / "back_patching.png").stat().st_size > 1000
    assert "Verdict on this toy:" in (out / "report.md").read_text()


@pytest.mark.parametrize("flag, value", [("--test-share", "1.5"), ("--entities", "1"),
                                         ("--d-model", "30"), ("--seeds", "0")])
def test_bad_flags_are_usage_errors_before_training(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--fast", flag, value, "--out", "/nonexistent/never-written"])
    assert exit_.value.code == 2 and f"{flag} must be" in capsys.readouterr().err

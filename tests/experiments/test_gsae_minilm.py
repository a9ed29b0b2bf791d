"""The g-SAE vs TopK experiment end to end on tiny settings."""

import json

import pytest
import torch

from experiments.gsae_minilm import run


def test_partners_pair_halves():
    assert run.partners(4).tolist() == [1, 0, 3, 2]
    assert run.partners(5).tolist() == [1, 0, 3, 2, 3]  # an odd last row pairs backwards
    assert run.halves(["a b c d e f g h i j", "too short"]) == ["a b c d e", "f g h i j"]


def test_infonce_is_not_constant_and_prefers_matched_pairs():
    mask = torch.ones(4, 3, dtype=torch.long)
    e = torch.eye(4)[[0, 0, 1, 1]].unsqueeze(1).expand(4, 3, 4)  # pairs share an embedding
    matched = run.infonce_loss((e,), {"attention_mask": mask})
    shuffled = run.infonce_loss((e[[0, 2, 1, 3]],), {"attention_mask": mask})
    assert float(matched) < 0.01 < float(shuffled)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gsae_minilm_fast(tmp_path):
    out = tmp_path / "gsae"
    assert run.main(["--out", str(out), "--fast"]) == 0
    assert (out / "report.html").exists()
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    rows = json.loads((out / "gsae_results.json").read_text())
    assert set(rows) == {"8", "16"}
    for k, table in rows.items():
        by = {r["architecture"] + "/" + r["selection"][:5]: r for r in table}
        topk, gsae = by["topk/plain"], by["gradient_topk/plain"]
        for r in (topk, gsae):
            assert 0.0 < r["fvu"] < 1.0 and -1.0 <= r["embed_cos_spliced"] <= 1.0
        assert gsae["l0"] == pytest.approx(topk["l0"], abs=0.05)
        assert topk["l0"] <= int(k) + 1e-9
        for arch in ("topk", "gradient_topk"):
            assert f"sae/fvu/{arch}_k{k}" in metrics
            assert f"sae/embed_cos_spliced/{arch}_k{k}" in metrics

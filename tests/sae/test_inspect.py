import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from hiddenlens.sae import SAEConfig, build_sae
from hiddenlens.sae.inspect import direct_effect, top_activating
from hiddenlens.viz.sae import plot_density_histogram, plot_l0_fvu, plot_top_activations
from tests.sae.fakes import FakeStore


class _Tok:
    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]


def _identity_relu(d=4):
    sae = build_sae(SAEConfig(d_in=d, d_sae=d, architecture="relu", apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
    return sae


def test_top_activating_rows_with_context():
    x = np.zeros((10, 4), dtype=np.float32)
    x[[2, 7, 8], 1] = [0.5, 3.0, 1.0]  # latent 1 fires hardest on row 7
    meta = {
        "sample_idx": np.array([0] * 5 + [1] * 5),
        "position": np.array(list(range(5)) * 2),
        "token_id": np.arange(100, 110),
    }
    store = FakeStore({"h": x}, meta=meta)
    top = top_activating(
        _identity_relu(), store, "h", [1, 3], n=2, tokenizer=_Tok(), context=1, batch_size=4
    )
    assert [r["row"] for r in top[1]] == [7, 8]
    first = top[1][0]
    assert first["activation"] == pytest.approx(3.0)
    assert first["sample_idx"] == 1 and first["position"] == 2 and first["token"] == "t107"
    assert first["context"] == "t106 [[t107]] t108"
    assert top[1][1]["context"] == "t107 [[t108]] t109"
    assert top[3] == []  # never fires
    with pytest.raises(ValueError):
        top_activating(_identity_relu(), store, "h", [9])


def test_context_stops_at_sample_boundary():
    x = np.zeros((10, 4), dtype=np.float32)
    x[5, 0] = 1.0
    meta = {
        "sample_idx": np.array([0] * 5 + [1] * 5),
        "position": np.array(list(range(5)) * 2),
        "token_id": np.arange(10),
    }
    top = top_activating(
        _identity_relu(), FakeStore({"h": x}, meta=meta), "h", [0], n=1, tokenizer=_Tok(), context=2
    )
    assert top[0][0]["context"] == "[[t5]] t6 t7"


def test_direct_effect_reads_decoder_through_unembedding():
    sae = _identity_relu()
    w_u = torch.zeros(4, 6)
    w_u[2, 5], w_u[2, 0] = 2.0, -3.0
    eff = direct_effect(sae, w_u, [2], top=1, tokenizer=_Tok())
    assert eff[2]["up_ids"] == [5] and eff[2]["down_ids"] == [0]
    assert eff[2]["down_logits"] == [-3.0] and eff[2]["up_tokens"] == ["t5"]
    with pytest.raises(ValueError):
        direct_effect(sae, torch.zeros(3, 6), [0])


def test_figures_are_matplotlib_figures():
    assert isinstance(plot_density_histogram(np.array([0, 1e-3, 0.1, 0.2])), Figure)
    pts = [
        {"l0": 4, "fvu": 0.3, "label": "topk"},
        {"l0": 16, "fvu": 0.1, "label": "topk"},
        {"l0": 10, "fvu": 0.2, "label": "relu"},
    ]
    assert isinstance(plot_l0_fvu(pts), Figure)
    assert isinstance(plot_top_activations([{"activation": 2.0, "context": "a [[b]] c"}]), Figure)

import numpy as np
import pytest
import scipy.sparse as sp

from hiddenlens.report.dashboard import render_dashboard
from hiddenlens.report.features import feature_cards


def test_cards_match_a_hand_computation():
    acts = np.zeros((12, 3), dtype=np.float32)
    acts[[1, 5, 9], 0] = [0.5, 2.0, 1.0]  # latent 0 fires on three rows
    sample = np.repeat([0, 1, 2], 4)  # rows 0-3, 4-7, 8-11 are three documents
    cards = feature_cards(sp.csr_matrix(acts), np.arange(12), sample, n_top=2, context=2)
    c0 = cards[0]
    assert c0.density == pytest.approx(3 / 12) and c0.max_act == pytest.approx(2.0)
    assert [e.value for e in c0.top] == [2.0, 1.0]
    top = c0.top[0]  # row 5: context stays inside document 1 (rows 4-7)
    assert top.tokens == ["4", "5", "6", "7"] and top.focus == 1 and top.acts[1] == 2.0
    assert cards[1].top == [] and cards[1].density == 0.0  # a dead latent
    assert sum(c0.hist_counts) == 3


def test_bad_input():
    acts = np.abs(np.random.default_rng(0).normal(size=(30, 4)))
    with pytest.raises(ValueError, match="out of range"):
        feature_cards(acts, np.arange(30), np.zeros(30, int), latents=[9])
    with pytest.raises(ValueError, match="30 rows"):
        feature_cards(acts, np.arange(5), np.zeros(5, int))


def test_dashboard_embeds_untrusted_tokens_as_escaped_json():
    class Tok:
        def convert_ids_to_tokens(self, ids):
            return ["</script><script>alert(1)</script>" for _ in ids]

    acts = np.ones((3, 1))
    page = render_dashboard(feature_cards(acts, np.arange(3), np.zeros(3, int), Tok()))
    assert "</script><script>alert(1)" not in page and "\\u003c/script\\u003e" in page


def test_encode_rows_streams_a_store_into_sparse(tmp_path):
    import torch

    from hiddenlens.report.features import encode_rows
    from hiddenlens.store import cache_activations

    model = torch.nn.Sequential(torch.nn.Linear(4, 6))
    store = cache_activations(model, torch.randn(50, 4), "0", tmp_path / "s", batch_size=16)
    w = torch.randn(6, 9)

    def encode(x):
        return torch.relu(x @ w)

    csr = encode_rows(encode, store, "0", chunk_rows=7)
    dense = torch.relu(torch.from_numpy(np.array(store.rows("0"))) @ w).numpy()
    np.testing.assert_allclose(csr.toarray(), dense, rtol=1e-6)
    assert csr.nnz == int((dense > 0).sum())

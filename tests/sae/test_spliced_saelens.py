"""Spliced CE / KL equal SAELens's own evaluation on the same tiny model and SAE."""

import pytest
import torch

from hiddenlens.sae import load
from hiddenlens.sae.spliced import SpliceConventions, spliced_metrics

sae_lens = pytest.importorskip("sae_lens")
BOS = 0
HOOK = "blocks.0.hook_resid_post"


class _Tokens:
    """The one method SAELens's downstream evaluation reads from its activation store."""

    def __init__(self, tokens):
        self.tokens = tokens

    def get_batch_tokens(self, n):
        return self.tokens[:n]


def _saelens_metrics(ref, model, tokens, ignore):
    from sae_lens.evals import get_downstream_reconstruction_metrics
    from sae_lens.training.activation_scaler import ActivationScaler

    return get_downstream_reconstruction_metrics(
        ref, model, _Tokens(tokens), ActivationScaler(), compute_kl=True, compute_ce_loss=True,
        n_batches=1, eval_batch_size_prompts=len(tokens), ignore_tokens=ignore,
    )  # fmt: skip


@pytest.fixture
def setup(tiny_tl, tmp_path):
    g = torch.Generator().manual_seed(0)
    cfg = sae_lens.StandardSAEConfig(d_in=16, d_sae=48)
    cfg.metadata.hook_name = HOOK
    ref = sae_lens.StandardSAE(cfg)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    ref.save_model(tmp_path)
    tokens = torch.randint(1, 20, (5, 12), generator=g)
    tokens[:, 0] = BOS
    tokens[2, 6] = BOS  # a special token in the middle of a row too
    return ref, load(tmp_path), tokens


def test_spliced_ce_and_kl_equal_saelens_evaluation(tiny_tl, setup):
    ref, ours, tokens = setup
    want = _saelens_metrics(ref, tiny_tl, tokens, [BOS])
    batch = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    conv = SpliceConventions(exclude_special_tokens=[BOS])
    got = spliced_metrics(ours, tiny_tl, HOOK, batch, conventions=conv)
    pairs = {
        "ce_clean": "ce_loss_without_sae",
        "ce_spliced": "ce_loss_with_sae",
        "ce_zero": "ce_loss_with_ablation",
        "ce_loss_score": "ce_loss_score",
        "kl_spliced": "kl_div_with_sae",
        "kl_zero": "kl_div_with_ablation",
        "kl_score": "kl_div_score",
    }
    for k, theirs in pairs.items():
        assert got[k] == pytest.approx(want[theirs], rel=2e-5, abs=1e-6), k
    # the old conventions (BOS spliced, KL without the last position) differ measurably
    old = spliced_metrics(
        ours, tiny_tl, HOOK, batch,
        conventions=SpliceConventions(exclude_special_tokens=False, kl_positions="next_token"),
    )  # fmt: skip
    assert abs(old["kl_spliced"] - want["kl_div_with_sae"]) > 1e-4


def test_no_exclusion_equals_saelens_without_ignore_tokens(tiny_tl, setup):
    ref, ours, tokens = setup
    want = _saelens_metrics(ref, tiny_tl, tokens, None)
    batch = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    conv = SpliceConventions(exclude_special_tokens=False)
    got = spliced_metrics(ours, tiny_tl, HOOK, batch, conventions=conv)
    assert got["ce_spliced"] == pytest.approx(want["ce_loss_with_sae"], rel=2e-5)
    assert got["kl_spliced"] == pytest.approx(want["kl_div_with_sae"], rel=2e-5)


class _StoreWith:
    def __init__(self, drop):
        self.manifest = {"run": {"settings": {"tokenizer": {"drop_special_tokens": drop}}}}


def test_default_follows_what_the_store_did():
    assert SpliceConventions().resolved(_StoreWith(True)).exclude_special_tokens is True
    assert SpliceConventions().resolved(_StoreWith(False)).exclude_special_tokens is False
    assert SpliceConventions().resolved(None).exclude_special_tokens is True  # SAELens
    kept = SpliceConventions(exclude_special_tokens=False).resolved(_StoreWith(True))
    assert kept.exclude_special_tokens is False  # an explicit choice wins
    with pytest.raises(ValueError, match="kl_positions"):
        SpliceConventions(kl_positions="last")
    with pytest.raises(ValueError, match="exclude_special_tokens"):
        SpliceConventions(exclude_special_tokens="bos")

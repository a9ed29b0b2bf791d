"""Dashboard content: detokenized contexts, histograms with axes, logit effects, permalinks."""

import json

import numpy as np
import pytest

from hiddenlens.report.dashboard import add_logit_effects, render_dashboard, write_dashboard
from hiddenlens.report.detok import piece_decoder
from hiddenlens.report.features import feature_cards
from hiddenlens.sae.inspect import logit_effects

from .browser import open_page

WORDPIECES = ["the", "de", "##bu", "##gging", "cat", "##s", "sat", ",", "hello"]


def test_pieces_are_the_tokenizers_own_decoding_split_per_token(tiny_bert):
    _, tok = tiny_bert
    pieces = piece_decoder(tok)(WORDPIECES)
    assert len(pieces) == len(WORDPIECES)
    assert "".join(pieces) == tok.convert_tokens_to_string(WORDPIECES)
    assert pieces[1:4] == [" de", "bu", "gging"] and pieces[0] == "the"
    assert piece_decoder(tok)(["##s", "cat"])[0] == "s"  # a window starting mid-word
    # without a tokenizer the usual markers are joined the same way
    words = [t for t in WORDPIECES if t != ","]  # (the tokenizer also tidies punctuation)
    assert "".join(piece_decoder()(words)) == tok.convert_tokens_to_string(words)
    assert "".join(piece_decoder()(["Ġhello", "Ġworld", "!"])) == "hello world!"


def test_logit_effects_find_the_planted_token():
    rng = np.random.default_rng(0)
    w_u = np.linalg.qr(rng.normal(size=(40, 30)))[0].astype(np.float32)  # orthonormal columns
    acts = np.zeros((10, 3), np.float32)
    acts[2, :] = 1.0
    cards = feature_cards(acts, np.arange(10), np.zeros(10, int))
    decoder = np.stack([w_u[:, 7], -w_u[:, 11], w_u[:, 3] - w_u[:, 5]])  # [3, d_model]
    add_logit_effects(cards, logit_effects(decoder, w_u, range(3), top=5), k=3)
    assert cards[0].effects_pos[0][0] == "7" and cards[1].effects_neg[0][0] == "11"
    assert cards[2].effects_pos[0][0] == "3" and cards[2].effects_neg[0][0] == "5"
    assert len(cards[0].effects_pos) == 3  # k of the computed top 5 kept
    with pytest.raises(ValueError, match="must share d"):
        logit_effects(decoder, w_u.T, [0])


class _WordPieceTok:
    """Ids to wordpieces: every third token continues the previous word."""

    def convert_ids_to_tokens(self, ids):
        return [f"##p{i}" if i % 3 == 2 else f"w{i}" for i in ids]

    def convert_tokens_to_string(self, tokens):
        return " ".join(tokens).replace(" ##", "").replace("##", "")


def test_dashboard_shows_decoded_text_axes_and_opens_a_permalink(tmp_path):
    rng = np.random.default_rng(1)
    acts = np.maximum(rng.normal(size=(3000, 200)) - 2.0, 0).astype(np.float32)
    acts[:, 123] = 0.0
    acts[1502, 123] = 5.0  # latent 123 fires once, on row 1502
    tok = _WordPieceTok()
    cards = feature_cards(acts, np.arange(3000), np.arange(3000) // 30, tok, n_top=4)
    write_dashboard(cards, tmp_path / "dash.html", title="latents", tokenizer=tok)
    data = render_dashboard(cards[:1], tokenizer=tok).split("id='hl-data'>")[1]
    data = json.loads(data.split("</script>")[0])
    texts = [p for ex in data["cards"][0]["top"] for p in ex["text"]]
    assert texts and not any("##" in p for p in texts)
    link = tmp_path / "link.html"  # chromium's --dump-dom takes a file: a page that redirects
    link.write_text("<script>location.replace('dash.html#latent-123')</script>")
    dom, console = open_page(link)
    assert console == [], console
    assert 'id="latent-123"' in dom and "page 4 / 5" in dom  # 123 sits on page 4 of 40
    card = dom[dom.index('id="latent-123"') :]
    card = card[: card.index('class="card"', 10) if 'class="card"' in card[10:] else None]
    assert '<span class="tok focus" title="##p1502: 5.000"' in card  # marked, value on hover
    assert ">activation</text>" in card and "rows</title>" in card  # histogram axes and counts
    assert ">p1502</span>" in card and ">##p" not in card  # decoded text, not raw wordpieces
    assert "w1500</span> <span" in card and ">w1501</span>" in card  # space outside the mark


def test_search_runs_over_the_decoded_text(tmp_path):
    acts = np.zeros((60, 5), np.float32)
    acts[31, 2] = 1.0  # latent 2 fires at row 31 ("w31"); row 32 is "##p32": text "w31p32"
    acts[5, 4] = 1.0
    tok = _WordPieceTok()
    cards = feature_cards(acts, np.arange(60), np.arange(60) // 30, tok, n_top=2, context=2)
    write_dashboard(cards, tmp_path / "dash.html", tokenizer=tok)
    link = tmp_path / "q.html"
    link.write_text("<script>location.replace('dash.html?q=w31p32')</script>")
    dom, console = open_page(link)
    assert console == [] and "(1 latents)" in dom and 'id="latent-2"' in dom, console

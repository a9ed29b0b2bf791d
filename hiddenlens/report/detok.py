"""Detokenized display text for token windows: the tokenizer's own decoding, split per token.

A dashboard shows a context as the text a reader knows (``debugging``), not as wordpieces
(``de ##bu ##gging``), while keeping one span per token so the active one can be marked and
each shows its activation. Piece ``i`` is what token ``i`` adds to the decoded string:
``convert_tokens_to_string(tokens[i-1:i+1])`` minus ``convert_tokens_to_string([tokens[i-1]])``
— WordPiece's ``##`` joins, BPE's ``Ġ`` and SentencePiece's ``▁`` become spaces, as each
tokenizer itself decodes them. Pairs repeat a lot, so they are cached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache


def _fallback(tokens: Sequence[str]) -> str:
    """Decoding without a tokenizer: the WordPiece / byte-BPE / SentencePiece conventions
    (a BPE/SentencePiece token without its space marker continues the previous word)."""
    bpe = any(t.startswith(("Ġ", "▁")) for t in tokens)
    out = ""
    for tok in tokens:
        if tok.startswith("##"):
            out += tok[2:]
        elif tok.startswith(("Ġ", "▁")):
            out += " " + tok[1:]
        else:
            out += ("" if bpe or not out else " ") + tok
    return out


def piece_decoder(tokenizer=None) -> Callable[[Sequence[str]], list[str]]:
    """A function mapping a window's token strings to its per-token display pieces."""
    to_string = getattr(tokenizer, "convert_tokens_to_string", None) or _fallback

    @lru_cache(maxsize=200_000)
    def one(tok: str) -> str:
        return to_string([tok])

    @lru_cache(maxsize=200_000)
    def after(prev: str, tok: str) -> str:
        both, first = to_string([prev, tok]), one(prev)
        return both[len(first) :] if both.startswith(first) else " " + one(tok)

    def pieces(tokens: Sequence[str]) -> list[str]:
        tokens = [str(t) for t in tokens]
        if not tokens:
            return []
        first = one(tokens[0])
        first = first[2:] if tokens[0].startswith("##") and first.startswith("##") else first
        return [first.lstrip()] + [after(a, b) for a, b in zip(tokens, tokens[1:])]

    return pieces

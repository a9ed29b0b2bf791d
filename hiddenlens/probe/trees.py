"""Python code statements with a syntax tree over their tokens, for structural probes.

The tree comes from the statement's AST (the AST-Probe setting of Hernández López et al.
2022, with Python's ``ast`` in place of tree-sitter): every token belongs to the innermost
AST node whose source span contains it; a node's *head* is its first token; a token that
heads its node attaches to the head of the nearest enclosing node with another head, and
every other token attaches to the head of its own innermost node.  So ``x = f(a, b)``
gives ``x`` as root, ``f``, ``(``, ``)`` under ``f``... a dependency-style tree, one node per
token, read from the real parser rather than written by hand.

``stdlib_statements`` reads one-line statements from the standard library's own source (real
code that ships with every Python); ``chain_baselines`` are the right-branching chain and word-position
baselines a probe must beat; ``piece_groups`` maps a tokenizer's character offsets onto the statement's
tokens, so a model's sub-word vectors can be pooled per Python token.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

SKIP = {
    tokenize.NEWLINE,
    tokenize.NL,
    tokenize.COMMENT,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
    tokenize.ENCODING,
}


@dataclass
class Statement:
    text: str
    tokens: list[str]
    spans: list[tuple[int, int]]  # character offsets into text
    parents: list[int]


def _ast_parents(stmt: ast.stmt, bspans: list[tuple[int, int]]) -> list[int] | None:
    """Each token's parent (-1: a root) from the AST nodes spanning its byte span (None if
    some token lies in no node)."""
    nodes = [n for n in ast.walk(stmt) if hasattr(n, "col_offset")]
    nodes = [n for n in nodes if n.end_lineno == 1 and n.lineno == 1]
    placed = set(nodes)
    parent_of = {}
    for n in ast.walk(stmt):
        for c in ast.iter_child_nodes(n):
            parent_of[c] = n

    def enclosing(n):
        # skip the nodes without a source span (``comprehension``, ``arguments``, ``withitem``):
        # stopping at one would make a second root and drop every comprehension and lambda
        n = parent_of.get(n)
        while n is not None and n not in placed:
            n = parent_of.get(n)
        return n

    def innermost(i):
        s, e = bspans[i]
        best = None
        for n in nodes:
            if n.col_offset <= s and e <= n.end_col_offset:
                if best is None or (n.end_col_offset - n.col_offset) < (
                    best.end_col_offset - best.col_offset
                ):
                    best = n
        return best

    def head(n):
        return min(
            i for i, (s, e) in enumerate(bspans) if n.col_offset <= s and e <= n.end_col_offset
        )

    parents = []
    for i in range(len(bspans)):
        n = innermost(i)
        if n is None:
            return None
        h = head(n)
        while h == i and enclosing(n) is not None:
            n = enclosing(n)
            h = head(n)
        parents.append(-1 if h == i else h)
    return parents


def statement_tree(text: str) -> Statement | None:
    """Tokens and AST-derived parent array of a one-line statement (None if unusable)."""
    try:
        tree = ast.parse(text)
        toks = [
            t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type not in SKIP
        ]
    except (SyntaxError, tokenize.TokenError, IndentationError):
        return None
    if len(tree.body) != 1 or not toks:
        return None
    spans = [(t.start[1], t.end[1]) for t in toks]
    # the AST's col_offset counts UTF-8 bytes, tokenize's columns count characters: match
    # nodes on byte spans, or a non-ASCII literal shifts every later token to a wrong node
    nbytes = [len(text[:c].encode("utf-8")) for c in range(len(text) + 1)]
    bspans = [(nbytes[s], nbytes[e]) for s, e in spans]
    parents = _ast_parents(tree.body[0], bspans)
    if parents is None or sum(p < 0 for p in parents) != 1:
        return None
    return Statement(text, [t.string for t in toks], spans, parents)


# Standard-library modules whose one-line statements make the default task: mixed idioms
# (string formatting, arithmetic, comprehensions, calls), none of them generated code.
STDLIB_MODULES = (
    "json.encoder", "textwrap", "fractions", "statistics", "csv", "difflib", "string",
    "calendar", "heapq", "bisect", "shlex", "pprint",
)


def _check_lengths(min_tokens: int, max_tokens: int) -> None:
    if not 1 <= min_tokens <= max_tokens:  # an empty range would keep nothing, quietly
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got min_tokens={min_tokens}, "
                         f"max_tokens={max_tokens}")


def stdlib_statements(modules=STDLIB_MODULES, min_tokens: int = 6, max_tokens: int = 24, limit: int = 1000):
    """Distinct one-line statements of the given stdlib modules' source, with their trees.

    Each text once: about a tenth of these lines repeat (``return ''.join(result)``...), and
    a copy on both sides of a train/test split would be scored on what the probe saw.
    """
    import importlib

    if isinstance(modules, str):  # iterating it would import "t", "e", "x"...
        raise TypeError(f"modules must be a list of module names, got one str: {modules!r}")
    _check_lengths(min_tokens, max_tokens)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    out: list[Statement] = []
    seen: set[str] = set()
    for name in modules:
        path = Path(importlib.import_module(name).__file__)
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text in seen or not text or text.startswith(("#", "@", "def ", "class ", "import ", "from ")):
                continue
            seen.add(text)
            st = statement_tree(text)
            if st is not None and min_tokens <= len(st.tokens) <= max_tokens:
                out.append(st)
            if len(out) >= limit:
                return out
    return out


def parse_statements(texts, min_tokens: int = 6, max_tokens: int = 24) -> list[Statement]:
    """The distinct texts that are one-line Python statements with a usable tree (others and
    repeats dropped: a repeat across a train/test split would be scored on seen data)."""
    if isinstance(texts, (str, bytes)):  # iterating it would parse its characters one by one
        raise TypeError(f"texts must be a list of str, got one {type(texts).__name__}: {texts[:40]!r}")
    _check_lengths(min_tokens, max_tokens)
    out, seen = [], set()
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts must be str, item {k} is {type(text).__name__}: {text!r:.40}")
        if text.strip() in seen:
            continue
        seen.add(text.strip())
        st = statement_tree(text.strip()) if "\n" not in text.strip() else None
        if st is not None and min_tokens <= len(st.tokens) <= max_tokens:
            out.append(st)
    return out


def chain_baselines(parents) -> dict[str, float]:
    """The baselines a structural probe must beat, scored by the probe's own metrics
    (``score_structure``): the right-branching chain (``|i - j|`` as the distance: its minimum
    spanning tree attaches every token to the one before it; adjacent tokens are often tree
    neighbours) and the word position as the depth (the first token as the root).

    Returns distance_spearman, uuas, depth_spearman, root_accuracy.
    """
    import numpy as np

    from hiddenlens.probe.structural import score_structure

    ns = [len(p) for p in parents]
    chain = [np.abs(np.subtract.outer(np.arange(n), np.arange(n))) for n in ns]
    dist = score_structure("distance", chain, parents, "chain")
    depth = score_structure("depth", [np.arange(n) for n in ns], parents, "position")
    return {"distance_spearman": dist.spearman, "uuas": dist.uuas,
            "depth_spearman": depth.spearman, "root_accuracy": depth.root_accuracy}


def piece_groups(offsets, spans) -> list[list[int]] | None:
    """For each token span (start, end), the tokenizer pieces whose character offsets overlap
    it; None if some token has no piece (e.g. it was truncated away).

    offsets: [n_pieces, 2] (start, end) per piece, (0, 0) for special / padding pieces.
    """
    groups = []
    for s, e in spans:
        pieces = [i for i, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
        if not pieces:
            return None
        groups.append(pieces)
    return groups

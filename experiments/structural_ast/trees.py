"""Code statements from Python's own standard library with a tree over their tokens.

The tree comes from the statement's AST (the AST-Probe setting of Hernández López et al.
2022, with Python's ``ast`` in place of tree-sitter): every token belongs to the innermost
AST node whose source span contains it; a node's *head* is its first token; a token that
heads its node attaches to the head of the nearest enclosing node with another head, and
every other token attaches to the head of its own innermost node.  So ``x = f(a, b)``
gives ``x`` as root, ``f``, ``(``, ``)`` under ``f``... a dependency-style tree, one node per
token, read from the real parser rather than written by hand.
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
    nodes = [n for n in ast.walk(tree.body[0]) if hasattr(n, "col_offset")]
    nodes = [n for n in nodes if n.end_lineno == 1 and n.lineno == 1]
    parent_of = {}
    for n in ast.walk(tree.body[0]):
        for c in ast.iter_child_nodes(n):
            parent_of[c] = n

    def innermost(i):
        s, e = spans[i]
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
            i for i, (s, e) in enumerate(spans) if n.col_offset <= s and e <= n.end_col_offset
        )

    parents = []
    for i in range(len(toks)):
        n = innermost(i)
        if n is None:
            return None
        h = head(n)
        while h == i and n in parent_of and parent_of[n] in nodes:
            n = parent_of[n]
            h = head(n)
        parents.append(-1 if h == i else h)
    if sum(p < 0 for p in parents) != 1:
        return None
    return Statement(text, [t.string for t in toks], spans, parents)


def stdlib_statements(modules, min_tokens: int = 6, max_tokens: int = 24, limit: int = 1000):
    """One-line statements of the given stdlib modules' source, with their trees."""
    import importlib

    out: list[Statement] = []
    for name in modules:
        path = Path(importlib.import_module(name).__file__)
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if not text or text.startswith(("#", "@", "def ", "class ", "import ", "from ")):
                continue
            st = statement_tree(text)
            if st is not None and min_tokens <= len(st.tokens) <= max_tokens:
                out.append(st)
            if len(out) >= limit:
                return out
    return out

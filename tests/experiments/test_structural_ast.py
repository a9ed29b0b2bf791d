"""The AST-Probe task's trees: read from Python's parser, one node per token."""

from experiments.structural_ast.trees import statement_tree, stdlib_statements
from hiddenlens.probe import tree_distances


def test_statement_tree_follows_the_ast():
    st = statement_tree("x = f(a, b + 1)")
    assert st.tokens == ["x", "=", "f", "(", "a", ",", "b", "+", "1", ")"]
    # Assign heads at x; the call f(...) hangs under x; its arguments under f; b + 1 under b
    assert st.parents == [-1, 0, 0, 2, 2, 2, 2, 6, 6, 2]
    assert tree_distances(st.parents)[8, 4] == 3  # 1 -> b -> f -> a
    assert statement_tree("def broken(:") is None


def test_stdlib_statements_are_real_trees():
    sts = stdlib_statements(["textwrap"], limit=30)
    assert len(sts) == 30
    for st in sts:
        assert len(st.tokens) == len(st.parents) and st.parents.count(-1) == 1
        tree_distances(st.parents)  # connected, one root


def test_token_vectors_drop_only_statements_with_an_unmatched_token():
    """A token no tokenizer piece covers drops its own statement, not the whole list."""
    import numpy as np
    import torch

    from experiments.structural_ast.run import piece_rows, token_vectors

    # pieces (0, 0) is a special token; token (3, 5) spans two pieces; (6, 7) none
    offsets = [(0, 0), (0, 2), (3, 4), (4, 5)]
    assert piece_rows(offsets, [(0, 2), (3, 5)]) == [[1], [2, 3]]
    assert piece_rows(offsets, [(0, 2), (6, 7)]) is None

    class Tok:  # one piece per character, except "_" which this vocabulary drops
        def __call__(self, text, **_):
            offs = [(0, 0)] + [(i, i + 1) for i, c in enumerate(text) if c not in " _"]
            ids = torch.arange(len(offs))[None]
            return {"input_ids": ids, "offset_mapping": torch.tensor([offs])}

    class Model:  # hidden state of piece t in state s: [s, t]
        def __call__(self, input_ids, output_hidden_states):
            T = input_ids.shape[1]
            pos = torch.arange(T, dtype=torch.float32)
            states = [torch.stack([torch.full((T,), float(s)), pos], 1) for s in range(2)]
            return type("Out", (), {"hidden_states": [h[None] for h in states]})

    handle = type("Handle", (), {"tokenizer": Tok(), "model": Model()})
    sts = [statement_tree("ab = c"), statement_tree("x = _"), statement_tree("y = 1")]
    out = token_vectors(handle, sts)
    assert out[1] is None and out[0] is not None and out[2] is not None
    assert out[0].shape == (2, 3, 2)  # 2 states, 3 tokens (ab, =, c), width 2
    assert np.allclose(out[0][1, :, 1], [1.5, 3.0, 4.0])  # "ab" = mean of pieces 1 and 2

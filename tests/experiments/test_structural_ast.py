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

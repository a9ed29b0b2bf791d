"""Code trees for structural probes: read from Python's parser, one node per token."""

from hiddenlens.probe import tree_distances
from hiddenlens.probe.trees import (
    chain_baselines,
    parse_statements,
    piece_groups,
    statement_tree,
    stdlib_statements,
)


def test_statement_tree_follows_the_ast():
    st = statement_tree("x = f(a, b + 1)")
    assert st.tokens == ["x", "=", "f", "(", "a", ",", "b", "+", "1", ")"]
    # Assign heads at x; the call f(...) hangs under x; its arguments under f; b + 1 under b
    assert st.parents == [-1, 0, 0, 2, 2, 2, 2, 6, 6, 2]
    assert tree_distances(st.parents)[8, 4] == 3  # 1 -> b -> f -> a
    assert statement_tree("def broken(:") is None


def test_non_ascii_literals_leave_the_tree_unchanged():
    # the AST counts columns in UTF-8 bytes, tokenize in characters: a wide literal must not
    # shift the tokens after it onto other nodes
    ascii_tree = statement_tree('y = "ab" + f(a, b)')
    for text in ('y = "éé" + f(a, b)', 'y = "日本" + f(a, b)'):
        st = statement_tree(text)
        assert st.parents == ascii_tree.parents
        assert [text[s:e] for s, e in st.spans] == st.tokens  # spans stay in characters


def test_stdlib_statements_are_real_trees():
    sts = stdlib_statements(["textwrap"], limit=30)
    assert len(sts) == 30
    # distinct texts: a statement repeated in the source must not land on both sides of a split
    many = stdlib_statements(limit=1000)
    assert len({st.text for st in many}) == len(many) == 1000
    for st in sts:
        assert len(st.tokens) == len(st.parents) and st.parents.count(-1) == 1
        tree_distances(st.parents)  # connected, one root


def test_chain_baseline_counts_adjacent_tree_edges():
    st = statement_tree("x = f(a, b + 1)")
    # edges (child, parent): 1-0, 2-0, 3-2, 4-2, 5-2, 6-2, 7-6, 8-6, 9-2; adjacent: 1-0, 3-2, 7-6
    base = chain_baselines([st.parents])
    assert base["uuas"] == 3 / 9
    assert base["root_accuracy"] == 1.0  # the statement's root is its first token, x


def test_parse_statements_keeps_only_one_line_statements():
    kept = parse_statements(["total = f(a, b) + g(c)", "not python (", "a\nb = 1",
                             "y = 1"], min_tokens=4)
    assert [s.text for s in kept] == ["total = f(a, b) + g(c)"]
    twice = parse_statements(["total = f(a, b) + g(c)", " total = f(a, b) + g(c)"], min_tokens=4)
    assert [s.text for s in twice] == ["total = f(a, b) + g(c)"]  # repeats kept once


def test_piece_groups_pool_subwords_onto_tokens():
    st = statement_tree("value = f(a)")  # tokens: value = f ( a )
    # a tokenizer that split "value" into "val" + "ue" and added [CLS] / [SEP] (0, 0)
    offsets = [(0, 0), (0, 3), (3, 5), (6, 7), (8, 9), (9, 10), (10, 11), (11, 12), (0, 0)]
    assert piece_groups(offsets, st.spans) == [[1, 2], [3], [4], [5], [6], [7]]
    assert piece_groups(offsets[:4], st.spans) is None  # truncated: "f(a)" has no pieces
    assert piece_groups([(0, 0), (0, 2), (3, 4), (4, 5)], [(0, 2), (3, 5)]) == [[1], [2, 3]]


def test_comprehensions_lambdas_and_with_get_one_tree():
    # their ``comprehension`` / ``arguments`` / ``withitem`` nodes carry no source span: the
    # tokens under them must attach through to the enclosing node, not become extra roots
    comp = statement_tree("x = [i for i in y if i]")
    assert comp.parents == [-1, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2]  # all of it under "["
    lam = statement_tree("f = lambda a, b: a")
    assert lam.parents == [-1, 0, 0, 2, 2, 2, 2, 2]  # the arguments under "lambda"
    for text in ("with open(p) as f: pass", "y = {k: v for k, v in d}"):
        st = statement_tree(text)
        assert st is not None and st.parents.count(-1) == 1
        tree_distances(st.parents)


def test_parse_statements_rejects_a_bare_string_and_non_text_items():
    import pytest

    # a bare string would be iterated by character, giving one-token "statements"
    with pytest.raises(TypeError, match="list of str, got one str"):
        parse_statements("total = f(a, b) + g(c)", min_tokens=1)
    with pytest.raises(TypeError, match="item 1 is bytes"):
        parse_statements(["total = f(a, b) + g(c)", b"y = 1"], min_tokens=1)


def test_stdlib_statements_rejects_a_bare_module_name_and_empty_ranges():
    import pytest

    with pytest.raises(TypeError, match="got one str: 'textwrap'"):
        stdlib_statements("textwrap")
    with pytest.raises(ValueError, match="min_tokens=9, max_tokens=4"):
        stdlib_statements(["textwrap"], min_tokens=9, max_tokens=4)  # would return [] quietly
    with pytest.raises(ValueError, match="min_tokens=0"):
        parse_statements(["x = 1"], min_tokens=0)

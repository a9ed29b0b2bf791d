"""The AST-Probe experiment: token vectors pooled from tokenizer pieces (the trees are
tested in tests/probe/test_trees.py)."""

from hiddenlens.probe.trees import statement_tree


def test_token_vectors_drop_only_statements_with_an_unmatched_token():
    """A token no tokenizer piece covers drops its own statement, not the whole list."""
    import numpy as np
    import torch

    from experiments.structural_ast.run import token_vectors

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


def test_bad_flags_are_usage_errors_before_the_model_loads(capsys):
    import pytest

    from experiments.structural_ast.run import main

    for flag, value in (("--seeds", "0"), ("--statements", "1")):
        with pytest.raises(SystemExit) as exit_:
            main([flag, value, "--out", "/nonexistent/never-written"])
        assert exit_.value.code == 2 and f"{flag} must be >=" in capsys.readouterr().err

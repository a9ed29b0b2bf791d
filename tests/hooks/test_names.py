import pytest
from torch import nn

from hiddenlens.hooks import hook_points, parse_hook_spec, resolve_hook_points


def test_glob_expands_one_component_in_natural_order():
    model = nn.Sequential(*[nn.Sequential(nn.Linear(2, 2), nn.ReLU()) for _ in range(12)])
    names = resolve_hook_points(model, "*")
    assert names == [str(i) for i in range(12)]  # 2 before 10; no '0.0' sub-paths
    assert resolve_hook_points(model, "1*.0") == ["1.0", "10.0", "11.0"]
    assert len(resolve_hook_points(model, "**")) == len(hook_points(model))


def test_unknown_name_lists_closest(mlp):
    with pytest.raises(ValueError, match=r"unknown hook point '5'.*closest valid names"):
        resolve_hook_points(mlp, "5")
    with pytest.raises(ValueError, match="matches nothing"):
        resolve_hook_points(mlp, "layer.*")


def test_suffix_parsing():
    assert parse_hook_spec("a.b:input.1").slot == "input"
    assert parse_hook_spec("a.b:input.1").index == 1
    with pytest.raises(ValueError, match="accepted"):
        parse_hook_spec("a:sideways")
    with pytest.raises(TypeError):
        parse_hook_spec("")


def test_transformer_lens_names(tiny_tl):
    names = hook_points(tiny_tl)
    assert "blocks.1.hook_resid_post" in names and "blocks.0.attn.hook_pattern" in names

import pytest
import torch
from torch import nn

from hiddenlens.hooks import Attachment, attach, load_model


class Scale(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((d,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_attach_lasts_until_detached_and_restores_exactly(mlp):
    x = torch.randn(5, 8)
    clean = mlp(x).detach()
    handle = attach(mlp, {"2": torch.zeros_like})
    assert isinstance(handle, Attachment) and handle.attached and handle.hook_points == ["2"]
    for _ in range(2):  # lasting: every forward pass, not just one block
        torch.testing.assert_close(mlp(x), mlp[4](torch.tanh(torch.zeros(5, 16))))
    assert handle.detach() is mlp and not handle.attached
    assert torch.equal(mlp(x), clean) and _no_hooks(mlp)
    handle.detach()  # idempotent


def test_attach_module_input_slot_context_manager_and_gradients(mlp):
    x = torch.randn(4, 8)
    scale = Scale(16)
    keys = set(mlp.state_dict())
    want = mlp[4](torch.tanh(mlp[2](2.0 * torch.relu(mlp[0](x))))).detach()
    with attach(load_model(mlp), {"2:input": scale}) as handle:
        out = mlp(x)
        torch.testing.assert_close(out, want)
        out.sum().backward()
        assert scale.w.grad is not None and scale.w.grad.abs().sum() > 0
        assert set(mlp.state_dict()) == keys  # the replacement stays outside the model
    assert not handle.attached and _no_hooks(mlp)


def test_glob_matches_transformer_lens_run_with_hooks(tiny_tl):
    tokens = torch.randint(0, 20, (2, 6))

    def halve(a: torch.Tensor, hook=None) -> torch.Tensor:
        return a * 0.5

    want = tiny_tl.run_with_hooks(
        tokens, fwd_hooks=[(lambda n: n.endswith("hook_resid_mid"), halve)]
    ).detach()
    with attach(tiny_tl, {"blocks.*.hook_resid_mid": halve}) as handle:
        assert handle.hook_points == ["blocks.0.hook_resid_mid", "blocks.1.hook_resid_mid"]
        torch.testing.assert_close(tiny_tl(tokens), want)
    assert not torch.allclose(tiny_tl(tokens), want)


def test_glob_star_stays_within_one_path_component():
    net = nn.Sequential()
    net.add_module("body", nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3))))
    with attach(net, {"body.*": lambda a: a}) as handle:
        assert handle.hook_points == ["body.0", "body.1"]  # not body.1.0


def test_bad_input_leaves_nothing_attached(mlp):
    with pytest.raises(ValueError, match="at least one"):
        attach(mlp, {})
    with pytest.raises(TypeError, match="must be callable"):
        attach(mlp, {"2": 3})
    with pytest.raises(ValueError, match="unknown hook point 'nope'"):
        attach(mlp, {"2": torch.zeros_like, "nope": torch.zeros_like})
    assert _no_hooks(mlp)
    with pytest.raises(ValueError, match="named twice"):
        attach(mlp, {"2": torch.zeros_like, "[2]": torch.zeros_like})
    assert _no_hooks(mlp)
    with (
        attach(mlp, {"2": lambda a: a[:, :3]}),
        pytest.raises(ValueError, match="expected a tensor of shape"),
    ):
        mlp(torch.randn(2, 8))
    assert _no_hooks(mlp)

import pytest
import torch

from hiddenlens.hooks import capture, load_model, patch


def test_equals_run_with_cache(tiny_tl):
    tokens = torch.randint(0, 20, (2, 10))
    _, cache = tiny_tl.run_with_cache(tokens)
    names = [
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_post",
        "blocks.0.attn.hook_pattern",
        "blocks.1.mlp.hook_post",
    ]
    with capture(tiny_tl, names, stop_early=False) as cap:
        tiny_tl(tokens)
    for name in names:
        torch.testing.assert_close(cap[name], cache[name], rtol=0, atol=0)


def test_sequential_and_cnn_shapes(mlp, cnn):
    x = torch.randn(5, 8)
    with capture(mlp, ["1", "3", "4"], stop_early=False) as cap:
        out = cap.run(x)
    torch.testing.assert_close(cap["4"], out.detach())
    torch.testing.assert_close(cap["1"], torch.relu(mlp[0](x)))
    img = torch.randn(2, 1, 8, 8)
    with capture(cnn, ["2", "3:input"]) as cap:
        cnn(img)
    assert cap["2"].shape == (2, 4, 4, 4)
    torch.testing.assert_close(cap["3:input"], cap["2"])


def test_stop_early_skips_later_modules(mlp):
    calls = []
    mlp[4].register_forward_hook(lambda *a: calls.append(1))
    with capture(mlp, "1") as cap:
        assert cap.run(torch.randn(3, 8)) is None
    assert calls == [] and cap["1"].shape == (3, 16)
    with capture(mlp, "1", stop_early=False) as cap:
        assert cap.run(torch.randn(3, 8)) is not None
    assert calls == [1]


def test_gradients_equal_autograd(mlp):
    x = torch.randn(4, 8)
    with capture(mlp, ["2", "3"], grads=True) as cap:
        out = mlp(x)
        out.pow(2).sum().backward()
    h = mlp[1](mlp[0](x)).detach()
    a = mlp[2](h).detach().requires_grad_(True)
    mlp[4](torch.tanh(a)).pow(2).sum().backward()
    torch.testing.assert_close(cap.grads["2"], a.grad)


def test_patch_changes_output_and_is_removed(mlp):
    x = torch.randn(4, 8)
    clean = mlp(x)
    with patch(mlp, {"1": torch.zeros_like}):
        patched = mlp(x)
    expected = mlp[4](torch.tanh(mlp[2](torch.zeros(4, 16))))
    torch.testing.assert_close(patched, expected)
    torch.testing.assert_close(mlp(x), clean)  # hook removed


def test_patch_bad_shape_and_hooks_removed_on_error(mlp):
    with pytest.raises(ValueError, match="expected a tensor of shape"):
        with patch(mlp, {"1": lambda t: t[:, :3]}):
            mlp(torch.randn(2, 8))
    assert not mlp[1]._forward_hooks
    with pytest.raises(RuntimeError):
        with capture(mlp, "3"):
            mlp(torch.randn(2, 7))  # wrong width: the forward pass raises
    assert not mlp[3]._forward_hooks and not mlp._forward_pre_hooks


def test_tuple_outputs_on_hf_bert(tiny_bert):
    model, tok = tiny_bert
    handle = load_model(model)
    enc = tok(["the cat sat", "a dog ran fast ."], padding=True, return_tensors="pt")
    with capture(
        handle, ["encoder.layer.*", "encoder.layer.1.attention.self:output.0"], stop_early=False
    ) as cap:
        out = model(**enc)
    torch.testing.assert_close(cap["encoder.layer.1"], out.last_hidden_state)
    assert cap["encoder.layer.0"].shape == (2, enc["input_ids"].shape[1], 16)
    with patch(handle, {"encoder.layer.1": lambda t: t * 0 + 1}):
        assert torch.all(model(**enc).last_hidden_state == 1)


def test_patch_input_slot(mlp):
    x = torch.randn(3, 8)
    with patch(mlp, {"2:input": lambda t: t * 0}):
        out = mlp(x)
    torch.testing.assert_close(out, mlp[4](torch.tanh(mlp[2](torch.zeros(3, 16)))))

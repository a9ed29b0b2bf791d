"""attach / detach / save / load / finetune / force on plain, tuple-output and TL models."""

import numpy as np
import pytest
import torch
from torch import nn

import hiddenlens.codebook as hc


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class TupleBlock(nn.Module):
    """Returns a tuple like a Hugging Face layer."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return (self.lin(x), "extra")


class Net(nn.Module):
    def __init__(self, d=8, vocab=5):
        super().__init__()
        self.block = TupleBlock(d)
        self.inner = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.head = nn.Linear(d, vocab)

    def forward(self, x):
        return self.head(self.inner(self.block(x)[0]))


def _net():
    torch.manual_seed(0)
    return Net()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_attach_changes_output_and_detach_restores_bit_exactly():
    net, x = _net(), torch.randn(4, 3, 8)
    ref, state = net(x), _state(net)
    cb = hc.attach(
        net,
        ["block", "inner.0:input"],
        n_codes=6,
        k=2,
        init={"block": torch.randn(50, 8), "inner.0:input": torch.randn(50, 8)},
    )
    out = cb(x)
    assert not torch.allclose(out, ref)
    # The block output (tuple element 0) was replaced by a sum of 2 codes.
    layer = cb.layers["block"]
    assert layer.last_codes.shape == (4, 3, 2)
    assert set(net.state_dict()) == set(state)  # codebooks are not registered in the model
    cb.detach()
    assert torch.equal(net(x), ref)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert hc.attached_codebooks(net) == {}


def test_finetune_codebook_only_then_with_model_and_detach_restores():
    net, x = _net(), torch.randn(16, 8)
    ref, state = net(x), _state(net)
    target = torch.randint(0, 5, (16,))

    def loss_fn(out, batch):
        return nn.functional.cross_entropy(out, target)

    cb = hc.attach(net, "inner.1", n_codes=8, k=1, init={"inner.1": torch.rand(64, 8)})
    codes0 = cb.layers["inner.1"].codes.detach().clone()
    hist = hc.finetune(cb, [x], loss_fn, steps=5, lr=1e-2)
    assert len(hist["loss"]) == 5 and hist["tokens"] == 5 * 16
    assert not torch.equal(cb.layers["inner.1"].codes, codes0)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # frozen
    assert all(p.requires_grad for p in net.parameters())  # flags restored
    hc.finetune(cb, [x], loss_fn, steps=3, lr=1e-2, model_lr=1e-2)
    assert not torch.equal(net.head.weight, state["head.weight"])
    cb.detach()
    assert torch.equal(net(x), ref)


def test_finetune_time_cap_is_recorded_not_hidden():
    net, x = _net(), torch.randn(16, 8)
    cb = hc.attach(net, "inner.1", n_codes=8, k=1, init={"inner.1": torch.rand(64, 8)})
    hist = hc.finetune(cb, [x], lambda o, b: o.pow(2).mean(), steps=50, max_seconds=1e-9)
    assert hist["steps"] == 1 and hist["time_limited"] is True
    hist = hc.finetune(cb, [x], lambda o, b: o.pow(2).mean(), steps=3)
    assert hist["steps"] == 3 and hist["time_limited"] is False
    cb.detach()


def test_save_load_round_trip_bit_exact(tmp_path):
    net, x = _net(), torch.randn(4, 8)
    ref = net(x)
    cb = hc.attach(net, "inner.0", n_codes=7, k=3, similarity="inner", loss="vqvae", beta=0.5)
    hc.finetune(cb, [x], lambda o, b: o.pow(2).mean(), steps=2, model_lr=1e-2)
    out = cb(x)
    cb.save(tmp_path / "cb")
    tuned = _state(net)
    cb.detach()
    assert torch.equal(net(x), ref)
    loaded = hc.load(net, tmp_path / "cb")
    layer = loaded.layers["inner.0"]
    assert (layer.k, layer.n_codes, layer.config.similarity, layer.config.beta) == (
        3,
        7,
        "inner",
        0.5,
    )
    assert torch.equal(loaded(x), out)
    assert all(torch.equal(v, tuned[k]) for k, v in net.state_dict().items())
    loaded.detach()
    assert torch.equal(net(x), ref)
    with pytest.raises(FileNotFoundError):
        hc.load(net, tmp_path / "missing")


def test_force_replaces_whole_code_set_and_changes_output():
    net, x = _net(), torch.randn(2, 5, 8)
    cb = hc.attach(net, "block", n_codes=10, k=3, init={"block": torch.randn(60, 8)})
    layer = cb.layers["block"]
    base = cb(x)
    own = layer.last_codes.clone()
    with hc.force(net, {"block": [7, 2]}):
        forced = cb(x)
        assert (layer.last_codes == torch.tensor([7, 2])).all()
    assert not torch.allclose(forced, base)
    # The forced output is the model's head applied to exactly codes 7 + 2.
    expected = net.head(net.inner(layer.codes[7] + layer.codes[2])).expand_as(forced)
    torch.testing.assert_close(forced, expected)
    assert torch.equal(cb(x), base) and torch.equal(layer.last_codes, own)  # released
    with hc.force(cb, {"block": [4]}, positions=-1):
        last = cb(x)
        assert (layer.last_codes[:, -1, 0] == 4).all() and (layer.last_codes[:, -1, 1:] == -1).all()
        assert torch.equal(layer.last_codes[:, :-1], own[:, :-1])
    assert torch.equal(last[:, :-1], base[:, :-1]) and not torch.allclose(last[:, -1], base[:, -1])
    shift = hc.output_shift(cb, x, {"block": [7, 2]})
    assert shift["jsd"] > 0 and 0 <= shift["argmax_changed"] <= 1


def test_jsd_closed_form():
    a = torch.tensor([[0.0, -1e9], [1.0, 2.0]])
    b = torch.tensor([[-1e9, 0.0], [1.0, 2.0]])
    # Row 1: disjoint supports -> ln 2; row 2: identical -> 0; mean ln2 / 2.
    assert hc.jsd(a, b) == pytest.approx(0.5 * torch.log(torch.tensor(2.0)).item(), rel=1e-6)
    p, q = torch.tensor([0.2, 0.8]), torch.tensor([0.6, 0.4])
    m = (p + q) / 2
    ref = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    assert hc.jsd(p.log(), q.log()) == pytest.approx(ref.item(), rel=1e-6)


def test_bad_input():
    net = _net()
    with pytest.raises(ValueError, match="k=9 must be <= n_codes=4"):
        hc.attach(net, "inner.0", n_codes=4, k=9)
    with pytest.raises(ValueError, match="unknown hook point"):
        hc.attach(net, "nope", n_codes=4)
    with pytest.raises(ValueError, match="dimension mismatch .*'init rows': 3, 'the model': 8"):
        hc.attach(net, "inner.0", n_codes=4, init={"inner.0": torch.randn(10, 3)})
    with pytest.raises(ValueError, match="dimension mismatch .*'d': 6"):
        hc.attach(net, "inner.0", n_codes=4, d=6)
    cb = hc.attach(net, "block", n_codes=4, d=6)  # width not inferable: caught at run time
    with pytest.raises(ValueError, match="last dimension 8 but the codebook has d=6"):
        net(torch.randn(2, 8))
    cb.detach()
    cb = hc.attach(net, "inner.0", n_codes=4)
    with pytest.raises(ValueError, match="already attached"):
        hc.attach(net, ["inner.0"], n_codes=4)
    with pytest.raises(ValueError, match=r"out of range .* \[0, 4\)"):
        with hc.force(net, {"inner.0": [4]}):
            pass
    with pytest.raises(ValueError, match="no codebook attached"):
        with hc.force(net, {"head": [0]}):
            pass
    with pytest.raises(TypeError):
        with hc.force(net, {"inner.0": [1.5]}):
            pass
    cb.detach()
    hc.attach(net, "inner.0", n_codes=4).detach()  # attaching again after detach is fine


def test_transformer_lens_model_glob_and_record_codes(tmp_path):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        n_ctx=20,
        d_vocab=7,
        act_fn="gelu",
        seed=0,
    )
    model = HookedTransformer(cfg)
    tokens = torch.randint(0, 7, (3, 10))
    ref = model(tokens)
    cb = hc.attach(model, "blocks.*.hook_resid_post", n_codes=12, k=1)
    assert cb.hook_points == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    codes = hc.record_codes(cb, [tokens, tokens[:1]])
    assert codes["blocks.1.hook_resid_post"].shape == (40, 1)
    path = hc.save_codes(codes, tmp_path / "codes.safetensors")
    assert all(np.array_equal(v, codes[h]) for h, v in hc.load_codes(path).items())
    batch = {"input": tokens, "attention_mask": tokens > 2, "special_tokens_mask": tokens == 6}
    masked = hc.record_codes(cb, [batch], forward=lambda m, b: m(b["input"]))
    assert len(masked["blocks.0.hook_resid_post"]) == int(((tokens > 2) & (tokens != 6)).sum())
    with hc.force(model, {"blocks.1.hook_resid_post": [3]}):
        logits = model(tokens)
        generated = model.generate(
            tokens[:, :4], max_new_tokens=3, do_sample=False, stop_at_eos=False, verbose=False
        )
    expected = model.unembed(model.ln_final(cb.layers["blocks.1.hook_resid_post"].codes[3]))
    torch.testing.assert_close(logits, expected.expand_as(logits))
    # Forcing holds during generation too: every new token is the forced code's argmax.
    assert (generated[:, 4:] == int(expected.argmax())).all()
    cb.detach()
    assert torch.equal(model(tokens), ref)

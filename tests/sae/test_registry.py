"""The architecture registry: facts on each class, user architectures end to end."""

import pytest
import torch

from hiddenlens.sae import SAEConfig, TrainConfig, load, register_architecture, registry, train
from hiddenlens.sae.architectures.relu import ReluSAE
from tests.sae.fakes import FakeStore, planted_data


@register_architecture("abs_relu_test")
class AbsReluSAE(ReluSAE):
    """A user architecture defined outside the package: z = ReLU(|pre| - 0.5), L1 penalty."""

    saelens_architecture = "abs_relu_test"

    def encode(self, x):
        return torch.relu(self.pre_acts(self._check_input(x)).abs() - 0.5)

    def forward(self, x, *, coefs=None, **_):
        z = self.encode(x)
        l1 = float((coefs or {}).get("l1", 0.0)) * z.sum(-1).mean()
        return self._dense_output(self._check_input(x), z, {"l1": l1})


def test_facts_of_the_builtins():
    assert registry.facts("batchtopk") == {
        "architecture": "batchtopk",
        "saelens_architecture": "jumprelu",
        "inference_architecture": "jumprelu",
        "topk_family": True,
        "store_hooks": ("",),
    }
    assert registry.store_hooks("gradient_topk", "h") == ["h", "h#grad"]
    assert registry.from_saelens("standard") == "relu"
    assert registry.from_saelens("topk") == "topk"
    assert registry.from_saelens("nope") is None
    assert "abs_relu_test" in registry.names()


def test_user_architecture_trains_saves_and_loads(tmp_path):
    x, _ = planted_data(n=2048, d=16, m=32, k_true=2, seed=3)
    cfg = SAEConfig(d_in=16, d_sae=32, architecture="abs_relu_test")
    tc = TrainConfig(total_tokens=64 * 10, batch_size=64, lr=3e-3, checkpoint_every=0)
    sae = train(FakeStore({"h": x}), "h", cfg, tc, out_dir=tmp_path)
    assert isinstance(sae, AbsReluSAE)
    back = load(tmp_path)
    assert type(back) is AbsReluSAE and back.cfg.architecture == "abs_relu_test"
    xt = torch.from_numpy(x[:50])
    assert torch.equal(back.encode(xt), sae.encode(xt))


def test_bad_registrations():
    with pytest.raises(TypeError, match="saelens_architecture"):

        @register_architecture("broken_test")
        class Broken(ReluSAE):
            saelens_architecture = ""

    with pytest.raises(TypeError, match="store_hooks"):

        @register_architecture("broken_hooks_test")
        class BrokenHooks(ReluSAE):
            store_hooks = ("#grad",)

    with pytest.raises(ValueError, match="already registered"):

        @register_architecture("topk")
        class Other(ReluSAE):
            pass

    with pytest.raises(ValueError, match="unknown architecture 'nope'; known: \\['relu'"):
        SAEConfig(d_in=4, d_sae=8, architecture="nope")

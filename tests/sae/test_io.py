import json

import pytest
import torch
from safetensors.torch import save_file

from hiddenlens.sae import architecture_names, build_sae, load, load_sparsity, registry
from tests.sae.fakes import small_config


def _randomised(arch, seed=0):
    sae = build_sae(small_config(arch, d_sae=24), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name != "log_threshold":
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
        if registry.facts(arch)["inference_architecture"] != arch:  # BatchTopK family
            sae.threshold.fill_(0.05)
    return sae.eval()


@pytest.mark.parametrize("arch", architecture_names())
def test_save_load_round_trip(arch, tmp_path):
    sae = _randomised(arch)
    density = torch.linspace(0, 0.5, 24)
    sae.save(tmp_path, sparsity=density)
    assert {p.name for p in tmp_path.iterdir()} == {
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    }
    back = load(tmp_path)
    x = torch.randn(50, 8)
    assert torch.equal(back.encode(x), sae.encode(x))
    z = sae.encode(x)
    assert torch.equal(back.decode(z), sae.decode(z))
    assert torch.allclose(load_sparsity(tmp_path)[1:], density[1:], rtol=1e-4)
    expected = registry.facts(arch)["inference_architecture"]
    assert back.cfg.architecture == expected


def test_corrupt_and_missing_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load(tmp_path)
    sae = _randomised("topk")
    sae.save(tmp_path / "a")
    (tmp_path / "a" / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(tmp_path / "a")
    sae.save(tmp_path / "b")
    w = tmp_path / "b" / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read safetensors"):
        load(tmp_path / "b")
    sae.save(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "cfg.json").read_text())
    cfg["d_sae"] = 30
    cfg["metadata"].pop("hiddenlens")
    (tmp_path / "c" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape"):
        load(tmp_path / "c")
    sae.save(tmp_path / "d")
    (tmp_path / "d" / "sae_weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="neither"):
        load(tmp_path / "d")


def test_loads_sparsify_directory(tmp_path):
    d_in, n, k = 6, 20, 3
    g = torch.Generator().manual_seed(0)
    enc_w, enc_b = torch.randn(n, d_in, generator=g), torch.randn(n, generator=g) * 0.1
    w_dec, b_dec = torch.randn(n, d_in, generator=g), torch.randn(d_in, generator=g)
    save_file(
        {"encoder.weight": enc_w, "encoder.bias": enc_b, "W_dec": w_dec, "b_dec": b_dec},
        str(tmp_path / "sae.safetensors"),
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {
                "d_in": d_in,
                "k": k,
                "num_latents": n,
                "expansion_factor": 32,
                "normalize_decoder": True,
                "multi_topk": False,
                "skip_connection": False,
            }
        )
    )
    sae = load(tmp_path)
    x = torch.randn(10, d_in, generator=g)
    # sparsify: ReLU(encoder(x - b_dec)), keep the top k, decode with W_dec + b_dec
    pre = torch.relu((x - b_dec) @ enc_w.t() + enc_b)
    v, i = pre.topk(k, dim=1)
    ref = (v[..., None] * w_dec[i]).sum(1) + b_dec
    assert torch.allclose(sae.reconstruct(x), ref, atol=1e-5)

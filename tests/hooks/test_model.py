import io
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from hiddenlens.hooks import ModelHandle, load_model, save_hooked_transformer
from hiddenlens.hooks.device import resolve_device
from tests import _models


def test_minilm_loads_offline_and_embeds_like_sentence_transformers():
    handle = load_model("minilm")
    assert handle.kind == "hf-encoder" and handle.max_length == 512 and not handle.has_lm_head
    assert "encoder.layer.5" in handle.hook_points
    emb = handle.embed(["The cat sat on the mat.", "Python is a programming language."])
    assert emb.shape == (2, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    from sentence_transformers import SentenceTransformer

    from hiddenlens.hooks.model import minilm_path

    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        ["The cat sat on the mat.", "Python is a programming language."], convert_to_tensor=True
    )
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-4)


def test_missing_hf_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(TypeError, match="accepts"):
        load_model(42)


def test_module_and_transformer_lens(mlp, tiny_tl):
    assert load_model(mlp).kind == "module" and not load_model(mlp).has_lm_head
    handle = load_model(tiny_tl)
    assert handle.kind == "transformerlens" and handle.max_length == 12 and handle.has_lm_head


def test_legacy_kinds_are_resolved(tiny_bert, tiny_tl):
    assert ModelHandle(tiny_bert[0], kind="hf").kind == "hf-encoder"
    assert ModelHandle(_models.tiny_gpt2(), kind="hf").kind == "hf-causal-lm"
    assert ModelHandle(tiny_tl, kind="transformer_lens").kind == "transformerlens"
    with pytest.raises(ValueError, match="kind must be one of"):
        ModelHandle(tiny_tl, kind="gpt")


@pytest.mark.parametrize(
    ("builder", "block", "cls"),
    [
        ("tiny_gpt2_dir", "transformer.h.1", "GPT2LMHeadModel"),
        ("tiny_llama_dir", "model.layers.1", "LlamaForCausalLM"),
    ],
)
def test_causal_lm_directory_keeps_its_lm_head(builder, block, cls, request):
    from transformers import AutoModelForCausalLM

    path = request.getfixturevalue(builder)
    handle = load_model(str(path))
    assert handle.kind == "hf-causal-lm" and handle.has_lm_head
    assert type(handle.model).__name__ == cls and block in handle.hook_points
    assert handle.revision and handle.model_id == str(path)
    enc = handle.tokenize(["the cat sat on the mat .", "hello world"])
    ref = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    with torch.no_grad():
        got = handle.forward(enc).logits
        want = ref(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert got.shape == (2, enc["input_ids"].shape[1], len(handle.tokenizer))
    torch.testing.assert_close(got, want)


def test_encoder_directory_loads_bare(tiny_bert_dir):
    handle = load_model(str(tiny_bert_dir))
    assert handle.kind == "hf-encoder" and not handle.has_lm_head
    assert type(handle.model).__name__ == "BertModel" and "encoder.layer.1" in handle.hook_points
    assert handle.embed(["the cat sat", "a dog ran"]).shape == (2, 16)


def test_tl_directory_round_trip(tiny_tl_dir, tmp_path):
    handle = load_model(f"tl:{tiny_tl_dir}")
    assert handle.kind == "transformerlens" and handle.has_lm_head and handle.revision
    original = _models.tiny_hooked_transformer(tokenizer_dir=tmp_path / "tok")
    texts = ["the cat sat on the mat .", "hello world"]
    enc = handle.tokenize(texts)
    np.testing.assert_array_equal(
        enc["input_ids"], load_model(original).tokenize(texts)["input_ids"]
    )
    with torch.no_grad():
        torch.testing.assert_close(handle.forward(enc), load_model(original).forward(enc))
    assert load_model(str(tiny_tl_dir)).kind == "transformerlens"  # no prefix needed
    # a model without a tokenizer round-trips too
    bare = save_hooked_transformer(_models.tiny_hooked_transformer(), tmp_path / "bare")
    again = load_model(f"tl:{bare}")
    assert again.tokenizer is None and again.model.cfg.d_vocab == 20


def test_tl_name_loads_through_transformer_lens_cache(tiny_tl, monkeypatch):
    from transformer_lens import HookedTransformer

    calls = []

    def fake_from_pretrained(name, **kwargs):
        calls.append((name, kwargs))
        return tiny_tl

    monkeypatch.setattr(HookedTransformer, "from_pretrained", fake_from_pretrained)
    handle = load_model("tl:gpt2-small")
    assert calls == [("gpt2-small", {"device": "cpu"})]
    assert handle.model is tiny_tl and handle.kind == "transformerlens"
    assert handle.model_id == "gpt2-small"


def test_tl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no tl_config.json"):
        load_model(f"tl:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="not-a-model"):
        load_model("tl:not-a-model")
    with pytest.raises(ValueError, match="needs a directory"):
        load_model("tl:")
    with pytest.raises(TypeError, match="needs a HookedTransformer"):
        save_hooked_transformer(torch.nn.Linear(2, 2), tmp_path / "x")


FACTORY = """
import torch
from hiddenlens.hooks import ModelHandle

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU())

def make_handle():
    return ModelHandle(make(), model_id="custom", has_lm_head=False)

def make_nothing():
    return 3

not_callable = 5
"""


def test_factory_spec(tmp_path, monkeypatch):
    (tmp_path / "tinyfactory_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    handle = load_model("tinyfactory_mod:make")
    assert handle.kind == "module" and handle.hook_points == ["0", "1"]
    assert handle.model_id == "tinyfactory_mod:make"
    assert load_model("tinyfactory_mod:make_handle").model_id == "custom"
    with pytest.raises(TypeError, match="returned int"):
        load_model("tinyfactory_mod:make_nothing")
    with pytest.raises(TypeError, match="not callable"):
        load_model("tinyfactory_mod:not_callable")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        load_model("tinyfactory_mod:nope")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg_xyz.mod'"):
        load_model("no_such_pkg_xyz.mod:make")
    sys.modules.pop("tinyfactory_mod", None)


def test_in_memory_model_with_tokenizer_caches_text(tmp_path):
    from hiddenlens.store import cache_activations

    tok = _models.tiny_tokenizer()
    model = _models.tiny_gpt2(tok)
    handle = load_model(model, tokenizer=tok)
    assert handle.kind == "hf-causal-lm" and handle.is_text
    texts = _models.SENTENCES[:3]
    store = cache_activations(handle, texts, "transformer.h.0", tmp_path / "s")
    enc = handle.tokenize(texts)
    with torch.no_grad():
        out = model(
            **{k: enc[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True
        )
    meta = store.meta
    # hidden_states[1] is block 0's output (the last entry has ln_f applied)
    want = out.hidden_states[1][meta["sample_idx"], meta["position"]]
    np.testing.assert_allclose(store.rows("transformer.h.0"), want.numpy(), atol=1e-5)
    # a handle can be given a tokenizer too
    assert load_model(load_model(model), tokenizer=tok).tokenizer is tok


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert", "tl", "factory", "minilm"])
def test_cli_hooks_lists_each_spec(kind, request, tmp_path, monkeypatch):
    from hiddenlens.cli import main

    spec, match, expect = {
        "gpt2": (lambda: str(request.getfixturevalue("tiny_gpt2_dir")), "transformer.h.*", 2),
        "llama": (lambda: str(request.getfixturevalue("tiny_llama_dir")), "model.layers.*", 2),
        "bert": (lambda: str(request.getfixturevalue("tiny_bert_dir")), "encoder.layer.*", 2),
        "tl": (
            lambda: f"tl:{request.getfixturevalue('tiny_tl_dir')}",
            "blocks.*.hook_resid_post",
            2,
        ),
        "factory": (lambda: "tinyfactory_cli:make", "*", 2),
        "minilm": (lambda: "minilm", "encoder.layer.*", 6),
    }[kind]
    if kind == "factory":
        (tmp_path / "tinyfactory_cli.py").write_text(FACTORY)
        monkeypatch.syspath_prepend(str(tmp_path))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["hooks", spec(), "--match", match]) == 0
    assert len(buf.getvalue().split()) == expect
    sys.modules.pop("tinyfactory_cli", None)


def test_device_cuda_without_gpu_is_a_clear_error(mlp, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="asks for a GPU but torch sees no CUDA"):
        load_model(mlp, device="cuda")
    with pytest.raises(ValueError, match="is not a device; accepted"):
        load_model(mlp, device="gpu")
    from hiddenlens.cli import main

    assert main(["hooks", "minilm", "--device", "cuda"]) == 2


def test_device_follows_torchrun_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("cuda") == torch.device("cuda", 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="has 4 CUDA device"):
        resolve_device("cuda:7")
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device(None) is None and resolve_device("cpu") == torch.device("cpu")


def test_device_cpu_moves_and_runs(mlp):
    handle = load_model(mlp, device="cpu")
    assert handle.device == torch.device("cpu")
    assert handle.forward(torch.randn(2, 8)).shape == (2, 3)

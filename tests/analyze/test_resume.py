"""Every stage resumes: interrupted after the cache, the same call continues; a finished run
is skipped stage by stage; a changed section config recomputes that section only."""

from __future__ import annotations

import json

import pytest
import torch

import hiddenlens
from hiddenlens import cli
from hiddenlens.analyze import pipeline
from tests import _models


def _raw():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    return {
        "model": {"spec": _models.mlp()},
        "data": {"source": {"x": x, "cls": (x[:, 1] > 0).long().numpy()}, "labels": ["cls"]},
        "cache": {"hooks": ["0", "2"]},
        "sae": {"hooks": ["2"], "k": 4, "expansion": 2, "total_tokens": 2048, "batch_size": 128,
                "eval_rows": 200, "top_latents": 0, "checkpoint_every": 4},
        "probe": {"rows": 200, "mdl_rows": 150, "cka_rows": 150, "cv": 2, "n_boot": 10},
        "collapse": {"ufm_steps": 0},
        "activations": {},
    }


def test_interrupt_after_cache_then_resume(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(pipeline, "_sae_stage", interrupted)
        with pytest.raises(KeyboardInterrupt):
            hiddenlens.analyze(_raw(), out, progress=False)
    assert (out / "store" / "manifest.json").exists() and not (out / "report.html").exists()

    first = hiddenlens.analyze(_raw(), out, progress=False)
    assert first.stages == {"cache": "skipped", "sae:2": "ran", "sae": "ran", "probe": "ran",
                            "collapse": "ran", "activations": "ran"}
    again = hiddenlens.analyze(_raw(), out, progress=False)
    assert set(again.stages.values()) == {"skipped"}
    assert again.metrics == first.metrics
    assert json.loads((out / "metrics.json").read_text())["metrics"].keys() == first.metrics.keys()

    raw = _raw()
    raw["probe"]["cv"] = 3
    changed = hiddenlens.analyze(raw, out, progress=False)
    assert changed.stages["probe"] == "ran"
    assert {k: v for k, v in changed.stages.items() if k != "probe"} == {
        "cache": "skipped", "sae:2": "skipped", "sae": "skipped", "collapse": "skipped",
        "activations": "skipped"}

    raw["sae"]["k"] = 2  # a different SAE: retrained, and the sections that read it rerun
    retrained = hiddenlens.analyze(raw, out, progress=False)
    assert retrained.stages["sae:2"] == "ran" and retrained.stages["sae"] == "ran"
    assert retrained.stages["probe"] == "skipped"


def test_interrupted_sae_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C inside SAE training: the rerun continues from the saved checkpoint."""
    from hiddenlens.sae import trainer

    out = tmp_path / "run"
    calls = {"n": 0}
    real = trainer._checkpoint

    def checkpoint_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(trainer, "_checkpoint", checkpoint_then_stop)
        with pytest.raises(KeyboardInterrupt):
            hiddenlens.analyze(_raw(), out, progress=False)
    assert calls["n"] == 1 and list((out / "sae" / "2").glob("checkpoints/*"))
    steps = {"n": 0}
    real_step = trainer._step

    def counted(*args, **kwargs):
        steps["n"] += 1
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "_step", counted)
    resumed = hiddenlens.analyze(_raw(), out, progress=False)
    log = json.loads((out / "sae" / "2" / "train_log.json").read_text())["log"]
    assert resumed.stages["sae:2"] == "ran" and log[-1]["step"] == 2048 // 128
    assert steps["n"] == 2048 // 128 - 4  # only the steps after the checkpoint at step 4


def test_cli_analyze_toml(tmp_path, tiny_bert_dir, capsys):
    corpus = tmp_path / "c.jsonl"
    docs = ["the cat sat on the mat .", "hello world , the big red dog .", "a dog ran fast ."]
    corpus.write_text("".join(json.dumps({"text": docs[i % 3], "topic": i % 3 == 1}) + "\n"
                              for i in range(30)))
    toml = tmp_path / "run.toml"
    toml.write_text(f"""
[model]
spec = "{tiny_bert_dir}"
[data]
source = "{corpus}"
labels = ["topic"]
[cache]
hooks = ["encoder.layer.*"]
[probe]
labels = ["topic"]
rows = 200
mdl_rows = 150
cka_rows = 150
cv = 2
n_boot = 10
""")
    assert cli.main(["analyze", str(toml), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "cache: ran" in printed and "probe: ran" in printed
    assert cli.main(["analyze", str(toml), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "cache: skipped, probe: skipped" in capsys.readouterr().out
    toml.write_text(toml.read_text().replace("rows = 200", "rowz = 200"))
    assert cli.main(["analyze", str(toml), "--out", str(tmp_path / "run")]) == 2
    assert "unknown key(s) 'rowz' in [probe]" in capsys.readouterr().err


def test_a_section_is_redone_when_its_code_or_the_release_changes(tmp_path, monkeypatch):
    """The section fingerprint covers the section's source and hiddenlens' version, so a
    resumed run after an upgrade or an edit does not reuse stale results."""
    import types

    from hiddenlens.analyze import pipeline
    from hiddenlens.analyze.config import ProbeSectionConfig

    src = tmp_path / "section.py"
    src.write_text("X = 1\n")
    module = types.SimpleNamespace(__file__=str(src))
    data = types.SimpleNamespace(labels=[], token_labels=[])
    ctx = types.SimpleNamespace(
        store=types.SimpleNamespace(manifest={"run": {"model": "m"}}),
        cfg=types.SimpleNamespace(data=data), seed=0, saes={}, out_dir=tmp_path,
    )
    fp = pipeline._section_fingerprint(ctx, "probe", ProbeSectionConfig(), module)
    assert pipeline._section_fingerprint(ctx, "probe", ProbeSectionConfig(), module) == fp
    src.write_text("X = 2\n")
    edited = pipeline._section_fingerprint(ctx, "probe", ProbeSectionConfig(), module)
    assert edited != fp
    monkeypatch.setattr(pipeline, "_version", lambda: "99.0")
    assert pipeline._section_fingerprint(ctx, "probe", ProbeSectionConfig(), module) != edited


def test_a_changed_library_default_retrains_the_sae_on_resume(tmp_path, monkeypatch):
    """A resumed run must not reuse an SAE trained under other defaults (a new release)."""
    import dataclasses

    out = tmp_path / "run"
    assert hiddenlens.analyze(_raw(), out, progress=False).stages["sae:2"] == "ran"
    assert hiddenlens.analyze(_raw(), out, progress=False).stages["sae:2"] == "skipped"
    real = pipeline._train_configs

    def new_default(*args):  # what a release that changes a TrainConfig default gives
        cfg, tcfg = real(*args)
        return cfg, dataclasses.replace(tcfg, encoder_init_scale=0.9)

    monkeypatch.setattr(pipeline, "_train_configs", new_default)
    again = hiddenlens.analyze(_raw(), out, progress=False)
    assert again.stages["sae:2"] == "ran" and again.stages["sae"] == "ran"

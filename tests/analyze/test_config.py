"""The run config: the issue's minimal TOML parses as written; bad input names what is valid."""

import pytest

from hiddenlens.analyze import bundled_config, load_config
from hiddenlens.analyze.config import RunConfig, tomllib

MINIMAL = """
[model]
spec = "path/to/hf_model_dir"   # also "minilm", "tl:<dir or cached name>", "pkg.module:factory"
[data]
source = "corpus.jsonl"          # "demo", .txt, .jsonl, or a saved HF dataset directory
text_column = "text"
labels = ["topic"]               # per-document columns; string or numeric
max_rows = 20000
[cache]
hooks = ["transformer.h.*"]
[sae]
hooks = ["transformer.h.1"]
architecture = "topk"
k = 16
expansion = 4
total_tokens = 200000
[probe]
labels = ["topic"]
[collapse]
labels = ["topic"]
"""


def test_minimal_toml_from_the_issue(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(MINIMAL)
    cfg = load_config(path)
    assert cfg.model.spec == "path/to/hf_model_dir"
    assert cfg.data.labels == ["topic"] and cfg.data.max_rows == 20000
    assert cfg.cache.hooks == ["transformer.h.*"]
    assert list(cfg.sections) == ["sae", "probe", "collapse"]
    assert cfg.sections["sae"].k == 16 and cfg.sections["sae"].expansion == 4
    assert cfg.sections["probe"].labels == ["topic"]
    assert load_config(tomllib.loads(MINIMAL)).to_dict() == cfg.to_dict()


def test_bundled_configs_parse():
    cfg = load_config(bundled_config("demo"))
    assert set(cfg.sections) == {
        "activations", "sae", "probe", "collapse", "info", "shortcut", "attribution", "lens",
        "structural", "codebook",
    }
    assert load_config(bundled_config("tinylm")).sections["lens"].steps == 250
    with pytest.raises(FileNotFoundError, match="bundled: "):
        bundled_config("nope")


def _raw(**extra):
    raw = tomllib.loads(MINIMAL)
    for table, values in extra.items():
        raw.setdefault(table, {}).update(values)
    return raw


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'kk' in \[sae\]; valid keys: hooks, architecture, k"):
        RunConfig.from_dict(_raw(sae={"kk": 3}))


def test_unknown_table_names_the_valid_ones():
    raw = _raw()
    raw["prob"] = {}
    with pytest.raises(ValueError, match=r"unknown table\(s\) 'prob'; valid: seed, model"):
        RunConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("table", "values", "message"),
    [
        ("sae", {"architecture": "bogus"}, "sae.architecture = 'bogus'; accepted: 'relu'"),
        ("sae", {"k": 0}, "sae.k must be a positive int"),
        ("data", {"max_rows": -1}, "data.max_rows must be a positive int"),
        ("cache", {"hooks": []}, "cache.hooks must name at least one hook point"),
        ("cache", {"dtype": "int8"}, "cache.dtype = 'int8'; accepted"),
        ("probe", {"cv": 1}, "probe.cv must be an int >= 2, got 1"),
        ("lens", {"steps": 0}, "lens.steps must be a positive int"),
        ("lens", {"lr": -1.0}, "lens.lr must be a positive finite number, got -1.0"),
        ("lens", {"lr": float("inf")}, "lens.lr must be a positive finite number, got inf"),
        ("data", {"labels": "topic"}, None),
    ],
)
def test_bad_values(table, values, message):
    if message is None:  # accepted: a string is a one-item list
        cfg = RunConfig.from_dict(_raw(**{table: values}))
        assert cfg.data.labels == ["topic"]
        return
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RunConfig.from_dict(_raw(**{table: values}))


def test_missing_tables_and_keys():
    raw = _raw()
    del raw["cache"]
    with pytest.raises(ValueError, match=r"needs a \[cache\] table"):
        RunConfig.from_dict(raw)
    raw = _raw()
    del raw["sae"]["hooks"]
    with pytest.raises(ValueError, match=r"\[sae\] needs 'hooks'"):
        RunConfig.from_dict(raw)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nspec = 1")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    with pytest.raises(TypeError, match="TOML path, a dict or a RunConfig"):
        load_config(3)


def test_a_mistyped_hook_beside_a_good_one_is_named_not_dropped():
    import types

    from hiddenlens.analyze.context import Context

    ctx = types.SimpleNamespace(hooks=["encoder.layer.0", "encoder.layer.1"])
    assert Context.hooks_for(ctx, ["encoder.layer.*"]) == ["encoder.layer.0", "encoder.layer.1"]
    assert Context.hooks_for(ctx, ["encoder.layer.1", "encoder.layer.0"]) == ctx.hooks  # store order
    with pytest.raises(ValueError, match=r"hooks \['encoder.layr.1'\] match no cached hook"):
        Context.hooks_for(ctx, ["encoder.layer.0", "encoder.layr.1"])

import copy

import numpy as np
import pytest

from hiddenlens.report.features import feature_cards
from hiddenlens.report.neuronpedia import (
    SCHEMA,
    NeuronpediaTarget,
    layer_of,
    to_neuronpedia,
    validate_neuronpedia,
)


def _batch():
    acts = np.zeros((40, 3))
    acts[np.arange(0, 40, 2), 1] = np.arange(1, 21)  # latent 1 fires 1..20 on even rows
    cards = feature_cards(
        acts,
        np.arange(40),
        np.repeat(np.arange(4), 10),
        latents=[1],
        n_top=3,
        n_quantiles=4,
        per_quantile=2,
        context=2,
    )
    target = NeuronpediaTarget("gpt2-small", 3, "res-hl", dataset="tiny", n_prompts_total=4)
    return to_neuronpedia(cards, target)


def test_batch_has_saedashboards_fields_and_planted_values():
    batch = _batch()
    assert set(batch) == set(SCHEMA["batch"]) and batch["layer"] == 3
    (f,) = batch["features"]
    assert set(f) == set(SCHEMA["feature"])
    assert f["feature_index"] == 1 and f["frac_nonzero"] == pytest.approx(0.5)
    assert f["n_prompts_total"] == 4 and f["dataset"] == "tiny"
    top, quant = f["activations"][:3], f["activations"][3:]
    # top group: bin_min = bin_contains = -1, bin_max = max activation (SAEDashboard's parse)
    assert [(a["bin_min"], a["bin_max"], a["bin_contains"]) for a in top] == [(-1, 20, -1)] * 3
    assert [a["values"][a["qualifying_token_index"]] for a in top] == [20, 19, 18]
    assert top[0]["tokens"] == ["36", "37", "38", "39"]  # row 38 inside document 3
    assert len(quant) == 8 and quant[0]["bin_min"] == 1 and quant[-1]["bin_max"] == 20
    assert sum(a["bin_contains"] for a in quant[::2]) == pytest.approx(1.0, abs=0.16)
    for a in quant:
        v = a["values"][a["qualifying_token_index"]]
        assert a["bin_min"] <= v <= a["bin_max"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b.update(layer="3"), r"batch.layer must be int"),
        (lambda b: b["features"][0].pop("dataset"), r"missing fields \['dataset'\]"),
        (lambda b: b["features"][0].update(minValue=0.0), r"unknown fields \['minValue'\]"),
        (
            lambda b: b["features"][0]["activations"][0].update(tokens=[1]),
            r"tokens\[0\] must be str",
        ),
        (lambda b: b["features"][0].update(frac_nonzero=True), r"frac_nonzero must be"),
    ],
)
def test_validator_names_the_bad_field(edit, message):
    batch = copy.deepcopy(_batch())
    validate_neuronpedia(copy.deepcopy(batch))  # the untouched batch passes
    edit(batch)
    with pytest.raises(ValueError, match=message):
        validate_neuronpedia(batch)


def test_target_rejects_a_hook_name_as_layer():
    assert layer_of("blocks.3.hook_resid_post") == 3 and layer_of("encoder.layer.11") == 11
    assert layer_of("embed") == 0
    with pytest.raises(ValueError, match="layer must be an integer"):
        NeuronpediaTarget("gpt2-small", "blocks.3.hook_resid_post", "res")
    with pytest.raises(ValueError, match="sae_set must be a non-empty"):
        NeuronpediaTarget("gpt2-small", 3, "")

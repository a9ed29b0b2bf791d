"""The README's shipped-run numbers agree with the shipped metrics files they come from.

``test_readme.py`` runs the README's code; nothing else re-read its prose numbers, so a re-run
that rewrote ``docs/*/metrics.json`` could leave the README quoting the old run. Each entry:
a README phrase holding the numbers, and the metric keys they print (rounded as printed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NUM = r"(−?-?\d+\.\d+)"

# (metrics file, README pattern with one group per number, the keys in the same order)
CLAIMS = [
    ("docs/tinylm/metrics.json",
     rf"FVU {NUM} / {NUM}, CE-loss score {NUM} / {NUM} \(CE clean {NUM}, spliced\s+{NUM} / {NUM}",
     ["sae/fvu/transformer.h.1", "sae/fvu/transformer.h.3", "sae/ce_loss_score/transformer.h.1",
      "sae/ce_loss_score/transformer.h.3", "sae/ce_clean/transformer.h.1",
      "sae/ce_spliced/transformer.h.1", "sae/ce_spliced/transformer.h.3"]),
    ("docs/tinylm/metrics.json",
     rf"`transformer.h.0` {NUM} → {NUM} nats\)",
     ["attribution/logit_lens_kl/transformer.h.0", "attribution/tuned_lens_kl/transformer.h.0"]),
    ("docs/tinylm/metrics.json",
     rf"best UUAS {NUM} vs {NUM}\)",
     ["probe/structural_uuas/transformer.h.1", "probe/structural_chain_uuas"]),
    ("docs/gsae_tinylm/metrics.json",
     rf"documents: {NUM} \[{NUM}, {NUM}\] / {NUM} \[{NUM}, {NUM}\] / {NUM} \[{NUM}, {NUM}\]",
     [f"sae/ce_increase{s}/gsae_minus_topk_k{k}" for k in (8, 16, 32)
      for s in ("", "_ci_low", "_ci_high")]),
    ("docs/gsae_tinylm/metrics.json",
     rf"FVU {NUM} / {NUM} / {NUM} vs {NUM} / {NUM} / {NUM}:",
     [f"sae/fvu/{m}_k{k}" for m in ("gsae", "topk") for k in (8, 16, 32)]),
]


@pytest.mark.parametrize("path, pattern, keys", CLAIMS, ids=[c[2][0] for c in CLAIMS])
def test_readme_quotes_the_shipped_metrics(path, pattern, keys):
    data = json.loads((ROOT / path).read_text(encoding="utf-8"))
    metrics = data.get("metrics", data)
    found = re.search(pattern, README)
    assert found, f"README no longer has the sentence {pattern!r} quoting {path}"
    for text, key in zip(found.groups(), keys, strict=True):
        printed = float(text.replace("−", "-"))
        decimals = len(text.split(".")[1])
        assert abs(metrics[key] - printed) <= 0.5 * 10**-decimals + 1e-12, (
            f"README prints {text} for {key}; {path} has {metrics[key]:.6g}"
        )

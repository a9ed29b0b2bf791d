"""experiments/tuned_lens: the verdict follows the numbers, and the script runs end to end."""

from __future__ import annotations

import json

import numpy as np

from experiments.tuned_lens.run import main, summary, verdict
from hiddenlens.attribution import LensComparison

HOOKS = ["e", "h0", "h1"]


def _res(kl_tuned, ppl_tuned):
    return LensComparison(HOOKS, np.array([3.0, 0.3, 0.0]), np.array(kl_tuned),
                          np.log([900.0, 400.0, 380.0]), np.log(ppl_tuned), float(np.log(380.0)),
                          100, 90)


def test_verdict_reads_every_seed_and_the_early_gain():
    good = summary([_res([1.0, 0.05, 0.0], [500.0, 390.0, 380.0]),
                    _res([1.2, 0.04, 0.0], [520.0, 392.0, 380.0])])
    word, lines = verdict(good)
    assert word == "reproduces" and "(1.900, 0.255)" in lines[2]
    one_bad_seed = summary([_res([1.0, 0.05, 0.0], [500.0, 390.0, 380.0]),
                            _res([1.0, 0.35, 0.0], [500.0, 390.0, 380.0])])
    assert verdict(one_bad_seed)[0] == "does not reproduce"
    late = summary([_res([2.95, 0.01, 0.0], [800.0, 390.0, 380.0])])
    assert verdict(late)[0] == "partly reproduces"  # 0.05 nats removed early, 0.29 later


def test_fast_run_on_a_tiny_gpt2(tmp_path, tiny_gpt2_dir):
    out = tmp_path / "run"
    assert main(["--model", str(tiny_gpt2_dir), "--out", str(out), "--fast",
                 "--train-rows", "600"]) == 0
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["attribution/tuned_lens_kl/transformer.drop"] < m["attribution/logit_lens_kl/transformer.drop"]
    assert (out / "figures" / "lens_kl.png").stat().st_size > 1000
    assert "Verdict:" in (out / "report.md").read_text()

"""The shortcut-foundations experiment runs end to end on tiny settings and writes its report."""

import json

import torch

from hiddenlens import parse_key


def test_experiment_tiny_run_writes_report(tmp_path):
    from experiments.shortcut_foundations.run import main

    n = torch.get_num_threads()
    try:
        rc = main(
            [
                "--out", str(tmp_path), "--seeds", "2", "--steps", "4", "--vector-steps", "4",
                "--sizes", "1,2", "--predictivities", "0.75,0.9", "--amplitudes", "1,2",
                "--pop-items", "5000",
            ]
        )  # fmt: skip
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    flat = json.dumps(metrics)
    keys = (
        "shortcut/bias/relu_s2",
        "shortcut/bias/cnn_s1",
        "shortcut/vector_final_bias/tanh_amp2",
        "run/seconds/sweep",
    )
    for key in keys:
        assert key in flat
    for key in metrics["metrics"]:  # one grammar: <analyzer>/<metric>[/<hook or split>]
        parse_key(key)
    assert (tmp_path / "report.html").stat().st_size > 1000
    assert len(list((tmp_path / "figures").iterdir())) >= 5

"""benchmarks/sae_train.py refuses a device it cannot use before any work (no GPU here)."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sae_train.py"


def _bench():
    spec = importlib.util.spec_from_file_location("sae_train_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "cuda:99"], "cuda:99"),  # no such GPU, with or without CUDA
        (["--device", "tpu"], "not a device"),
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    ],
)
def test_sae_train_benchmark_refuses_bad_arguments(argv, message, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["sae_train.py", *argv])
    with pytest.raises(SystemExit) as err:
        _bench()._args()
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_sae_train_benchmark_without_cuda_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("sys.argv", ["sae_train.py", "--device", "cuda"])
    with pytest.raises(SystemExit):
        _bench()._args()
    assert "no CUDA device" in capsys.readouterr().err

"""The CLI: bad arguments are refused before any work, and errors are one line + exit 2.

Each case is a defect of issue 14: ``--max-docs -3570`` cached 7 documents, ``--seq-len 1``
kept every token, bad ``train-sae`` settings surfaced only after the store was read, and an
``OSError`` reached the user as a traceback. (``--d-sae 0``, ``--eval-rows 0`` and ``--device
cuda`` without a GPU are in ``test_sae_faults.py``.)
"""

import pytest

from hiddenlens import cli


def _cache(*extra):
    return ["cache", "--model", "minilm", "--data", "demo", "--hooks", "x", "--out", "o", *extra]


@pytest.mark.parametrize(
    "flag,value,accepted",
    [
        ("--max-rows", "0", ">= 1"),
        ("--batch-size", "-1", ">= 1"),
        ("--seq-len", "1", ">= 2"),
        ("--seq-len", "-5", ">= 2"),
        ("--seq-len", "ten", "not an integer"),
    ],
)
def test_cache_arguments_refused_at_parse_time(capsys, flag, value, accepted):
    with pytest.raises(SystemExit) as exc:
        cli.main(_cache(flag, value))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and accepted in err


@pytest.mark.parametrize("value", ["-3570", "0"])
def test_max_docs_refused_before_the_model_loads(capsys, monkeypatch, value):
    import hiddenlens.hooks

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(hiddenlens.hooks, "load_model", no_model)
    assert cli.main(_cache("--max-docs", value)) == 2
    assert f"--max-docs must be a positive number of documents, got {value}" in (
        capsys.readouterr().err
    )


def _train(tmp_path, *extra):
    # the store does not exist: a bad flag must be reported before the store is opened
    store, out = str(tmp_path / "no_store"), str(tmp_path / "sae")
    return ["train-sae", "--store", store, "--hook", "h", "--out", out, *extra]


@pytest.mark.parametrize(
    "flag,value,field",
    [
        ("--total-tokens", "-1", "total_tokens"),
        ("--batch-size", "0", "batch_size"),
        ("--threads", "0", "num_threads"),
        ("--lr", "0", "lr"),
        ("--device", "tpu", "device"),
    ],
)
def test_train_sae_arguments_checked_before_work(tmp_path, capsys, flag, value, field):
    assert cli.main(_train(tmp_path, flag, value)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiddenlens: error:") and field in err and "\n" not in err
    assert "no_store" not in err  # refused before the (missing) store is opened
    assert not (tmp_path / "sae").exists()


@pytest.mark.parametrize(
    "error", [PermissionError(13, "Permission denied", "/x"), OSError(28, "No space left")]
)
def test_oserror_is_one_line_and_exit_2(monkeypatch, capsys, error):
    def boom(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_report", boom)
    assert cli.main(["report", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hiddenlens: error:")
    assert "Traceback" not in err


def test_verbose_adds_the_traceback_and_messages_stay_one_line(monkeypatch, capsys):
    def boom(args):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(cli, "_cmd_report", boom)
    assert cli.main(["report", "somewhere"]) == 2
    assert capsys.readouterr().err == "hiddenlens: error: first line second line\n"
    assert cli.main(["-v", "report", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("hiddenlens: error: first line second line\n")

import json

from hiddenlens.cli import main
from hiddenlens.store import ActivationStore


def _saved_bert(tiny_bert, tmp_path):
    model, tok = tiny_bert
    path = tmp_path / "bert"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_hooks_and_cache_commands(tiny_bert, tmp_path, capsys):
    path = _saved_bert(tiny_bert, tmp_path)
    assert main(["hooks", path, "--match", "encoder.layer.*"]) == 0
    assert capsys.readouterr().out.split() == ["encoder.layer.0", "encoder.layer.1"]
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps({"text": t}) for t in ["the cat sat", "a dog ran ."]))
    out = tmp_path / "store"
    args = ["cache", "--model", path, "--data", str(data), "--hooks", "encoder.layer.*",
            "--out", str(out)]
    assert main(args) == 0
    store = ActivationStore.open(out)
    assert store.hook_points == ["encoder.layer.0", "encoder.layer.1"] and len(store) == 7
    assert main(args) == 0  # the same command again reopens the finished store


def test_cache_command_labels_and_max_docs(tiny_bert, tmp_path, capsys):
    path = _saved_bert(tiny_bert, tmp_path)
    data = tmp_path / "docs.jsonl"
    rows = [("the cat sat", "pets"), ("hello world", "greeting"), ("a dog ran .", "pets")]
    data.write_text("\n".join(json.dumps({"text": t, "topic": c}) for t, c in rows))
    out = tmp_path / "store"
    args = ["cache", "--model", path, "--data", str(data), "--hooks", "encoder.layer.0",
            "--out", str(out), "--labels", "topic", "--max-docs", "2"]
    assert main(args) == 0
    store = ActivationStore.open(out)
    assert set(store.meta["sample_idx"]) == {0, 1}
    names = store.label_names["topic"]
    got = [names[c] for c in store.meta["topic"]]
    assert got == [rows[s][1] for s in store.meta["sample_idx"]]
    assert main(args[:-2] + ["--max-docs", "0"]) == 2
    assert "--max-docs must be a positive" in capsys.readouterr().err
    assert main(args[:-4] + ["--labels", "nope"]) == 2
    assert "not in the data; columns: ['text', 'topic']" in capsys.readouterr().err


def test_errors_are_messages_not_tracebacks(tiny_bert, tmp_path, capsys):
    path = _saved_bert(tiny_bert, tmp_path)
    assert main(["hooks", path, "--match", "encoder.layr.*"]) == 2
    assert "closest valid names" in capsys.readouterr().err
    code = main(["cache", "--model", path, "--data", str(tmp_path / "missing.txt"),
                 "--hooks", "encoder.layer.0", "--out", str(tmp_path / "o")])
    assert code == 2 and "does not exist" in capsys.readouterr().err

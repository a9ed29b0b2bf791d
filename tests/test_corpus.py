import json

import numpy as np
import pytest

from hiddenlens.corpus import demo_corpus, load_texts, token_properties
from hiddenlens.hooks import load_model


def test_demo_corpus_is_real_prose_over_100k_minilm_tokens():
    docs = demo_corpus()
    assert docs == demo_corpus()  # fixed order
    assert len(set(docs)) == len(docs) and all(len(d.split()) >= 8 for d in docs)
    tok = load_model("minilm").tokenizer
    n_tokens = sum(len(ids) - 2 for ids in tok(docs, truncation=False)["input_ids"])
    assert n_tokens >= 100_000
    assert load_texts("demo") == docs


def test_load_texts_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("first  para\nstill first\n\nsecond para\n")
    assert load_texts(tmp_path / "a.txt") == ["first para still first", "second para"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "x y"}) + "\n\n" + json.dumps({"t": 1}))
    with pytest.raises(ValueError, match="b.jsonl:3 has no field 'text'"):
        load_texts(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="c.jsonl:1 is not valid JSON"):
        load_texts(tmp_path / "c.jsonl")
    from datasets import Dataset

    Dataset.from_dict({"body": ["one", "two"]}).save_to_disk(str(tmp_path / "ds"))
    assert load_texts(tmp_path / "ds", text_column="body") == ["one", "two"]
    with pytest.raises(ValueError, match="no column 'text'"):
        load_texts(tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match="accepted: 'demo'"):
        load_texts(tmp_path / "missing.txt")


def test_token_properties_read_the_original_casing():
    tok = load_model("minilm").tokenizer  # uncased: the ids alone cannot tell "Hello"
    text = "Hello World, 2024 is unbelievable!"
    ids = tok(text)["input_ids"]
    positions = np.arange(1, len(ids) - 1)
    props = token_properties(tok, [text], np.zeros(len(positions), int), positions)
    pieces = tok.convert_ids_to_tokens(ids[1:-1])  # hello world , 202 ##4 is unbelievable !
    assert pieces[:5] == ["hello", "world", ",", "202", "##4"]
    assert props["is_capitalised"].tolist()[:3] == [True, True, False]
    assert props["is_punct"].tolist() == [p in ",!" for p in pieces]
    assert props["is_digit"].tolist()[3:5] == [True, True]
    assert props["is_continuation"].tolist() == [p.startswith("##") for p in pieces]

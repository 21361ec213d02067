"""Stage 06: loading, prompt formats, scoring, averages and the kit's exam (fast; no stage models)."""
import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from zhllm import artifacts, ceval
from zhllm.ceval import kit_exam as exam, scoring as sc, stage as ceval_stage
from zhllm.ceval.subjects import CATEGORIES, CEVAL_HARD, CEVAL_SUBJECTS, CMMLU_SUBJECTS
from zhllm.errors import DataError, MissingDependencyError, ZhllmError


def _real(name):
    try:
        return ceval.reference_dir(name)
    except MissingDependencyError as exc:
        pytest.skip(f"real {name} files absent (they live in ../shared/data, never in the repo): {exc}")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random Llama with a byte-level BPE that covers Chinese (same as the lm-eval parity test)."""
    from zhllm.ceval.lmeval import tiny_chinese_model

    return tiny_chinese_model(tmp_path_factory.mktemp("tiny") / "model", paragraphs=300)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), AutoTokenizer.from_pretrained(tiny_dir)


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
                 "{% if m['role'] == 'assistant' %}</s>{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _q(i=0, answer="B", question="下列哪个是质数？____", explanation="1. 2只能被1和自身整除。"):
    return ceval.Question("logic", str(i), question, ("1", "2", "4", "6"), answer, explanation)


# ---- subject tables ----------------------------------------------------------------------------

def test_ceval_tables_have_52_subjects_in_four_categories():
    counts = {c: sum(cat == c for _, cat in CEVAL_SUBJECTS.values()) for c in CATEGORIES}
    assert counts == {"STEM": 20, "Social Science": 10, "Humanities": 11, "Other": 11}
    assert len(CEVAL_HARD) == 8 and set(CEVAL_HARD) <= set(CEVAL_SUBJECTS)
    assert len(CMMLU_SUBJECTS) == 67 and {c for _, c, _ in CMMLU_SUBJECTS.values()} == set(CATEGORIES)


def test_ceval_table_matches_the_official_mapping_file():
    mapping = json.loads((_real("ceval") / "subject_mapping.json").read_text(encoding="utf-8"))
    assert {s: (v[1], v[2]) for s, v in mapping.items()} == CEVAL_SUBJECTS


# ---- loading -----------------------------------------------------------------------------------

def test_real_ceval_val_counts_per_category():
    val = ceval.load_folder(_real("ceval"), "val")
    assert len(val) == 1346 and len(val.questions) == 52
    per_cat = {c: sum(len(qs) for s, qs in val.questions.items() if val.subjects[s][1] == c)
               for c in CATEGORIES}
    assert per_cat == {"STEM": 430, "Social Science": 275, "Humanities": 257, "Other": 384}
    assert all(len(qs) == 5 and all(q.explanation for q in qs) for qs in val.dev.values())
    assert val.hard == CEVAL_HARD


def test_quoted_crlf_inside_a_question_is_kept():
    """pandas and the hub keep the \\r\\n inside quoted fields; so must we (the tokenizer sees it)."""
    val = ceval.load_folder(_real("ceval"), "val", subjects=["high_school_chinese"])
    assert "\r\n" in val.questions["high_school_chinese"][8].question


def test_real_cmmlu_layout():
    root = _real("cmmlu")
    test = ceval.load_folder(root, "test", subjects=["agronomy", "ancient_chinese"])
    assert test.subjects["ancient_chinese"] == ("古汉语", "Social Science")
    assert test.questions["agronomy"][0].answer in ceval.LETTERS and len(test.dev["agronomy"]) == 5
    assert sum(1 for _ in (root / "test").glob("*.csv")) == len(CMMLU_SUBJECTS)


def _write_csv(root: Path, rows, header=("id", "question", "A", "B", "C", "D", "answer")):
    (root / "val").mkdir(parents=True)
    path = root / "val" / "logic_val.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.parametrize("rows,header,field,row", [
    ([[0, "q", "a", "b", "c", "d", "A"], [1, "q", "a", "b", "c", "d", "E"]], None, "answer", 2),
    ([[0, "  ", "a", "b", "c", "d", "A"]], None, "question", 1),
    ([[0, "q", "a", "b", "c", "A"]], ("id", "question", "A", "B", "C", "answer"), "D", 0),
    ([[0, "q", "a", "b", "c", "d", "e", "A"]], ("id", "question", "A", "B", "C", "D", "E", "answer"), "E", 0),
])
def test_malformed_files_name_file_row_and_field(tmp_path, rows, header, field, row):
    path = _write_csv(tmp_path, rows, header or ("id", "question", "A", "B", "C", "D", "answer"))
    with pytest.raises(DataError) as info:
        ceval.load_folder(tmp_path, "val", dev_split=None)
    err = info.value
    assert isinstance(err, ZhllmError) and (err.source, err.row, err.field) == (str(path), row, field)
    assert str(path) in str(err) and f"row {row}" in str(err) and field in str(err)


def test_excel_csv_utf8_with_bom_is_read(tmp_path):
    path = _write_csv(tmp_path, [[0, "q", "1", "2", "3", "4", "B"]])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # what Excel's "CSV UTF-8" writes
    q = ceval.load_folder(tmp_path, "val", dev_split=None).questions["logic"][0]
    assert (q.id, q.options, q.answer) == ("0", ("1", "2", "3", "4"), "B")


def test_gbk_file_is_named_with_the_fix(tmp_path):
    path = _write_csv(tmp_path, [[0, "q", "a", "b", "c", "d", "A"]])
    path.write_bytes("id,question,A,B,C,D,answer\n0,下列哪个是质数,2,4,6,8,A\n".encode("gbk"))
    with pytest.raises(DataError, match="re-save it as UTF-8") as info:
        ceval.load_folder(tmp_path, "val", dev_split=None)
    assert info.value.source == str(path)


def test_an_unclosed_quote_is_named_not_a_csv_traceback(tmp_path):
    """An unclosed quote swallows the rows after it into one field past the csv module's 131,072 characters."""
    path = _write_csv(tmp_path, [[0, "q", "a", "b", "c", "d", "A"]])
    rows = "".join(f"{i},问题{i},a,b,c,d,A\n" for i in range(1, 12_000))
    path.write_text('id,question,A,B,C,D,answer\n0,"下列哪个,a,b,c,d,A\n' + rows, encoding="utf-8")
    with pytest.raises(DataError, match="unclosed quote") as info:
        ceval.load_folder(tmp_path, "val", dev_split=None)
    assert info.value.source == str(path) and "line" in str(info.value)


def test_a_question_is_never_among_its_own_shots(tmp_path):
    """Scoring the dev split with dev shots: each question's shots are the other dev rows, in file order."""
    (tmp_path / "dev").mkdir()
    with open(tmp_path / "dev" / "logic_dev.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(("id", "question", "A", "B", "C", "D", "answer", "explanation"))
        w.writerows([i, f"第{i}题", "a", "b", "c", "d", "ABCDAB"[i], f"解析{i}"] for i in range(6))
    dev = ceval.load_folder(tmp_path, "dev", dev_split="dev")
    for q in dev.questions["logic"]:
        shots = dev.shots(q)
        assert q not in shots and [s.id for s in shots] == [str(i) for i in range(6) if str(i) != q.id]
        for fmt in ("official_5shot", "lmeval_ceval_valid_5shot", "official_cot_5shot"):
            prompt = sc.prompt_of(dev, q, fmt)
            assert prompt.count(q.question) == 1 and prompt.count("答案：") == 6, fmt
        assert ceval.render(q, "official_5shot", "逻辑学", dev.dev["logic"]).count(q.question) == 1


def test_folder_without_dev_loads_without_shots(tmp_path):
    _write_csv(tmp_path, [[0, "q", "a", "b", "c", "d", "A"]])
    (tmp_path / "subject_mapping.json").write_text('{"logic": ["Logic", "逻辑学", "Humanities"]}')
    val = ceval.load_folder(tmp_path, "val")
    assert val.dev == {} and len(val) == 1 and val.subjects == {"logic": ("逻辑学", "Humanities")}


def test_hub_loader_uses_the_same_validation(monkeypatch):
    """`ceval/ceval-exam` has one config per subject; rows become Questions with the same checks."""
    import datasets

    def fake(repo, subject, split, **kwargs):
        assert (repo, subject) == ("ceval/ceval-exam", "logic")
        answer = "Z" if split == "test" and fake.bad else ("A" if split != "test" else "")
        return [{"id": 0, "question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": answer,
                 "explanation": "e" if split == "dev" else ""}]

    fake.bad = False
    monkeypatch.setattr(datasets, "load_dataset", fake)
    test = ceval.load_hub("ceval", "test", subjects=["logic"])
    assert test.questions["logic"][0].answer is None and test.dev["logic"][0].explanation == "e"
    assert test.subjects == {"logic": ("逻辑学", "Humanities")}
    fake.bad = True
    with pytest.raises(DataError, match="hf://ceval/ceval-exam/logic/test, row 1, field 'answer'"):
        ceval.load_hub("ceval", "test", subjects=["logic"])


def test_short_row_is_an_error(tmp_path):
    _write_csv(tmp_path, [[0, "q", "a", "b"]])
    with pytest.raises(DataError, match="row 1"):
        ceval.load_folder(tmp_path, "val", dev_split=None)


# ---- prompts -----------------------------------------------------------------------------------

def test_official_and_lmeval_prompts_differ_exactly_where_documented():
    q = _q(question="  下列哪个是质数？____ ")
    official = ceval.render(q, "official_zero_shot", "逻辑学")
    lmeval = ceval.render(q, "lmeval_ceval_valid", "逻辑学")
    assert official == ("以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
                        "  下列哪个是质数？____ \nA. 1\nB. 2\nC. 4\nD. 6\n答案：")
    assert lmeval == ("以下是中国关于逻辑学的单项选择题，请选出其中的正确答案。\n\n"
                      "下列哪个是质数？____\nA. 1\nB. 2\nC. 4\nD. 6\n答案：")
    assert ceval.FORMATS["official_5shot"].delimiter == ""
    assert ceval.FORMATS["lmeval_ceval_valid"].delimiter == " "


def test_five_shot_uses_dev_in_file_order_and_cot_uses_explanations():
    shots = [_q(i, answer="ABCDAB"[i], explanation=f"解析{i}") for i in range(6)]
    five = ceval.render(_q(9), "official_5shot", "逻辑学", shots)
    assert five.count("以下是中国关于") == 1 and five.count("答案：") == 6
    assert [five.index(f"答案：{x}\n\n") for x in "ABCD"] == sorted(five.index(f"答案：{x}\n\n") for x in "ABCD")
    lm5 = ceval.render(_q(9), "lmeval_ceval_valid_5shot", "逻辑学", shots)
    assert "答案： A\n\n" in lm5 and lm5.endswith("答案：")
    cot = ceval.render(_q(9), "official_cot_5shot", "逻辑学", shots)
    assert "解析4\n所以答案是A。\n\n" in cot and "解析5" not in cot and cot.endswith("让我们一步一步思考，\n")


def test_chat_format_needs_a_chat_template(tiny):
    with pytest.raises(ZhllmError, match="chat template"):
        ceval.render(_q(), "chat_zero_shot", "逻辑学", tokenizer=tiny[1])
    with pytest.raises(ZhllmError, match="unknown prompt format"):
        ceval.get_format("nope")


def test_answer_token_is_explicit(tiny):
    _, tok = tiny
    plain = sc.answer_ids(tok, "答案：", "")
    spaced = sc.answer_ids(tok, "答案：", " ")
    assert plain != spaced and all(len(v) == 1 for v in plain.values())
    assert tok.decode(spaced["A"]) == " A" and tok.decode(plain["A"]) == "A"


def test_shots_are_dropped_to_fit_the_context(tiny):
    _, tok = tiny
    shots = [_q(i, question="很长的题目" * 40) for i in range(5)]
    prompt, used = ceval.render_fitting(_q(9), "official_5shot", "逻辑学", shots, tok, max_tokens=400)
    assert 0 < used < 5 and len(tok(prompt)["input_ids"]) <= 400


# ---- scoring -----------------------------------------------------------------------------------

@torch.no_grad()
def _brute_force(model, tok, prompt, delimiter):
    """Score each answer with its own full forward pass, no batching, no shortcuts."""
    out = []
    for ids in sc.answer_ids(tok, prompt, delimiter).values():
        ctx = tok(prompt)["input_ids"]
        logp = torch.log_softmax(model(torch.tensor([ctx + ids])).logits[0].float(), -1)
        out.append(sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(ids)))
    return out


@pytest.mark.parametrize("delimiter", ["", " "])
def test_one_pass_batched_scores_equal_brute_force(tiny, delimiter):
    model, tok = tiny
    prompts = [ceval.render(_q(i, question="题" * (3 + 7 * i)), "official_zero_shot", "逻辑学")
               for i in range(5)]
    batched, lengths = sc.letter_logprobs(model, tok, prompts, delimiter, batch_size=3)
    single, _ = sc.letter_logprobs(model, tok, prompts, delimiter, batch_size=1)
    for p, b, s in zip(prompts, batched, single):
        assert b == pytest.approx(_brute_force(model, tok, p, delimiter), abs=1e-4)
        assert b == pytest.approx(s, abs=1e-4)
    assert lengths == [len(tok(p)["input_ids"]) for p in prompts]


def test_cot_generates_then_extracts(tiny):
    model, tok = tiny
    shots = [_q(i, answer="ABCDE"[i], explanation=f"{i}. 解析") for i in range(5)]
    toy = ceval.Exam("toy", "val", {"logic": [_q(0), _q(1, question="另一题____")]}, dev={"logic": shots},
                     subjects={"logic": ("逻辑学", "Humanities")})
    side = tok.padding_side
    results = sc.generate_answers(model, tok, toy, max_new_tokens=6, batch_size=2)
    assert [r.id for r in results] == ["0", "1"] and all(isinstance(r.completion, str) for r in results)
    assert all(r.pred == sc.extract_answer(r.completion) for r in results)
    assert tok.padding_side == side  # generation pads on the left, then puts things back


def test_summary_names_both_averages():
    a = [replace(_q(i), subject="a") for i in range(2)]
    b = [replace(_q(i), subject="b") for i in range(2, 10)]
    val = ceval.Exam("toy", "val", {"a": a, "b": b},
                     subjects={"a": ("甲", "STEM"), "b": ("乙", "Other")}, hard=("a",))
    preds = ["B", "B"] + ["A"] * 8  # subject a: 2/2, subject b: 0/8
    results = [sc.Result(q.subject, q.id, q.answer, p) for q, p in zip(val.all(), preds)]
    s = sc.summarize(results, val)
    assert s["average"]["subject_mean"] == pytest.approx(0.5)  # official: (1.0 + 0.0) / 2
    assert s["average"]["question_weighted"] == pytest.approx(0.2)  # lm-eval: 2 / 10
    assert s["hard"]["subject_mean"] == 1.0 and s["categories"]["Other"]["n"] == 8
    assert "subject_mean" in sc.summary_table(s)


def test_extract_answer():
    assert sc.extract_answer("1. 首先……\n2. 因此\n所以答案是C。") == "C"
    assert sc.extract_answer("我认为答案为：B") == "B"
    assert sc.extract_answer("选项D正确") == "D"
    assert sc.extract_answer("A和B都有可能") is None
    assert sc.extract_answer("无法判断") is None


def test_submission_is_the_official_json_shape():
    results = [sc.Result("logic", "0", None, "C"), sc.Result("logic", "1", None, None),
               sc.Result("law", "0", None, "A")]
    assert sc.submission(results) == {"logic": {"0": "C", "1": "A"}, "law": {"0": "A"}}


def test_wilson_interval():
    low, high = sc.wilson_interval(60, 240)
    assert 0.19 < low < 0.25 < high < 0.31
    assert sc.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_chat_models_are_scored_through_their_template(tiny):
    model, tok = tiny
    tok.chat_template = CHAT_TEMPLATE
    try:
        assert ceval_stage.exam_format(tok) == "chat_zero_shot"
        shots = [_q(i, answer="ABCDE"[i]) for i in range(5)]
        fmt = ceval.with_shots("chat_zero_shot", 2)
        prompt = ceval.render(_q(9), fmt, "逻辑学", shots, tokenizer=tok)
        assert prompt.startswith("<|user|>以下是中国关于逻辑学考试") and prompt.endswith("答案：<|assistant|>")
        assert prompt.count("<|assistant|>A</s>") == 1 and "<|assistant|>C</s>" not in prompt
        toy = ceval.Exam("toy", "val", {"logic": [_q(0), _q(1)]}, dev={"logic": shots},
                         subjects={"logic": ("逻辑学", "Humanities")})
        results = sc.score_exam(model, tok, toy, "chat_zero_shot")
        rendered = sc.prompt_of(toy, _q(0), "chat_zero_shot", tok)
        # a chat prompt carries its own special tokens: no second <s> in front
        assert results[0].prompt_tokens == len(tok(rendered, add_special_tokens=False)["input_ids"])
    finally:
        tok.chat_template = None
    assert ceval_stage.exam_format(tok) == "official_zero_shot"


# ---- the kit's exam ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_exam(tmp_path_factory):
    return exam.build_exam(tmp_path_factory.mktemp("exam"))


def test_exam_is_in_the_official_layout(built_exam):
    val = ceval.load_folder(built_exam, "val")
    test = ceval.load_folder(built_exam, "test")
    assert len(val.questions) == len(exam.SUBJECTS) and len(val) == 30 * len(exam.SUBJECTS)
    assert {cat for _, cat in val.subjects.values()} == set(CATEGORIES)
    assert all(len(qs) == 5 and all(q.explanation and q.answer for q in qs) for qs in val.dev.values())
    assert all(q.answer is None for q in test.all())
    with open(built_exam / "test" / "verbs_test.csv", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["id", "question", "A", "B", "C", "D"]
    letters = [q.answer for q in val.all()]
    assert all(abs(letters.count(x) / len(letters) - 0.25) < 0.05 for x in ceval.LETTERS)
    assert all(len(set(q.options)) == 4 for q in val.all())


def test_exam_val_comes_only_from_heldout_text(built_exam):
    from zhllm.corpora import people_daily, reviews

    heldout = "\n".join(people_daily("heldout"))
    train = "\n".join(people_daily("train"))
    heldout_reviews = {t for t, _ in reviews("heldout")}
    val = ceval.load_folder(built_exam, "val")
    for q in val.all():
        if q.subject == "review_sentiment":
            assert set(q.options) <= heldout_reviews
            continue
        if q.subject == "word_segmentation":
            continue  # a 3-5 word stretch of a held-out sentence may also occur in training text
        quoted = re.match("^“(.*)”(?:中，|括号处)", q.question).group(1)
        if q.subject == "word_cloze":
            quoted = quoted.replace("（　）", q.options["ABCD".index(q.answer)])
        assert quoted in heldout, q
        assert quoted not in train, q


def test_exam_is_reproducible(built_exam, tmp_path):
    again = exam.build_exam(tmp_path / "again")
    for path in sorted(built_exam.rglob("*.csv")):
        assert path.read_bytes() == (again / path.relative_to(built_exam)).read_bytes()


def test_questions_can_be_made_from_train_text_for_sft():
    """A later stage may teach the format on training text; the exam itself stays held out."""
    qs = exam.make_questions("person_names", 8, split="train")
    assert len(qs) == 8 and all(all(o in q.question for o in q.options) for q in qs)


def test_format_rows_for_sft_match_the_chat_prompt():
    rows = exam.format_training_rows(n_per_subject=2)
    assert len(rows) == 2 * len(exam.SUBJECTS)
    user, assistant = rows[0]["messages"]
    assert user["content"].startswith("以下是中国关于人名识别考试") and user["content"].endswith("答案：")
    assert assistant["content"] in ceval.LETTERS


@pytest.mark.slow
def test_stage_build_writes_metrics_predictions_and_submission(tmp_path, monkeypatch, tiny_dir):
    import shutil

    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path / "runs"))
    base = artifacts.stage_dir("base", "tiny")
    shutil.copytree(tiny_dir, base / "model")
    artifacts.write_metrics(base, {"params": 1})
    # lm-eval parity has its own test; here only the wiring of its metrics
    fake = ({"ceval_val_questions": 1346, "lmeval_agreement": 1.0}, {"agreement": 1.0})
    monkeypatch.setattr(ceval_stage, "real_ceval_metrics", lambda work: fake)
    with artifacts.building("ceval", "tiny") as out:
        metrics = ceval_stage.build(out, "tiny")
    saved = artifacts.read_metrics("ceval", "tiny")
    assert saved == metrics
    assert {"exam_acc_base", "exam_chance", "exam_questions", "ceval_val_questions",
            "lmeval_agreement"} <= set(saved)
    assert saved["exam_questions"] == 240 and saved["exam_chance"] == 0.25
    assert saved["exam_acc_base_ci_low"] <= saved["exam_acc_base"] <= saved["exam_acc_base_ci_high"]
    where = artifacts.stage_dir("ceval", "tiny")
    sub = json.loads((where / "submission_exam_base.json").read_text(encoding="utf-8"))
    assert set(sub) == set(exam.SUBJECTS) and all(len(v) == 10 for v in sub.values())
    record = json.loads((where / "exam_base.json").read_text(encoding="utf-8"))
    assert record["format"] == "official_zero_shot" and len(record["predictions"]) == 240
    assert set(record["answer_ids"]) == set(ceval.LETTERS)
    assert (where / "exam" / "val" / "verbs_val.csv").exists() and (where / "lmeval_agreement.json").exists()

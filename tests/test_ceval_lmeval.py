"""Parity with lm-evaluation-harness on the real C-Eval and CMMLU files (skipped when they or lm-eval are absent).

Same tiny model, same CSVs: lm-eval's own `ceval-valid` / `cmmlu` task (only pointed at local files)
and our scorer with the `lmeval_ceval_valid` / `lmeval_cmmlu` format must pick the same letter for
every question.
"""
import pytest

from tests.test_ceval import _real
from zhllm import ceval

pytest.importorskip("lm_eval", reason="lm-eval is not installed (`pip install lm-eval`, dev extra)")


@pytest.fixture(scope="module")
def ceval_root():
    return _real("ceval")


@pytest.fixture(scope="module")
def cmmlu_root():
    return _real("cmmlu")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("lmeval")


def _check(report):
    assert report["only_ours"] == 0 and report["only_lmeval"] == 0
    assert report["agreement"] == 1.0, f"disagree on {report['disagreements'][:10]}"
    assert report["acc_ours"] == report["acc_lmeval"]
    assert report["question_weighted_ours"] == pytest.approx(report["group_acc_lmeval"], abs=1e-12)
    # the agreement is not luck: no question came anywhere near a tie
    assert report["max_logprob_gap"] < 1e-3 < report["min_margin"]


DEV = [["0", "1+2=?", "1", "2", "3", "4", "C"]]
SCORED = [["0", "几?", "1", "2", "3.0", "4", "D"], ["1", "哪些?", "(1) (2) (3)", "(1) (3)", "None", "", "A"]]


def lmeval_task(root, header: str, scored_split: str, file_name, subject: str):
    """Write a dev and a scored CSV (BOM-prefixed) in a layout, write the lm-eval tasks, return (task, config)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from zhllm.ceval.lmeval import write_tasks

    for split, rows in (("dev", DEV), (scored_split, SCORED)):
        (root / split).mkdir()
        text = header + "\n" + "".join(",".join(r) + "\n" for r in rows)
        (root / split / file_name(split)).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    task = write_tasks(root, root / "tasks", [subject])
    return task, load_yaml(root / "tasks" / f"{task}_{subject}.yaml", resolve_func=True, recursive=False)


def test_lmeval_reads_every_cell_as_text(tmp_path):
    """Options that are all numbers stay text ("3", not 3.0), so do "None" and a BOM-prefixed header."""
    _, cfg = lmeval_task(tmp_path, "id,question,A,B,C,D,answer", "val", lambda split: f"logic_{split}.csv", "logic")
    data = cfg["custom_dataset"](version=2.0, **cfg["dataset_kwargs"])  # as lm-eval calls it
    assert data["val"][1] == {"id": "1", "question": "哪些?", "A": "(1) (2) (3)", "B": "(1) (3)", "C": "None",
                              "D": "", "answer": "A"}
    assert data["val"][0]["C"] == "3.0" and data["dev"][0] == {"id": "0", "question": "1+2=?", "A": "1", "B": "2",
                                                              "C": "3", "D": "4", "answer": "C"}


def test_lmeval_cmmlu_reads_every_cell_as_text(tmp_path):
    """CMMLU layout (`test/<subject>.csv`, an unnamed id column, `Question`/`Answer`): cells stay text too."""
    task, cfg = lmeval_task(tmp_path, ",Question,A,B,C,D,Answer", "test", lambda split: "logical.csv", "logical")
    assert task == "zhllm-cmmlu"
    assert cfg["description"] == "以下是关于逻辑学的单项选择题，请直接给出正确答案的选项。\n\n"  # lm-eval's own
    data = cfg["custom_dataset"](version=1.0, **cfg["dataset_kwargs"])  # as lm-eval calls it
    assert data["test"][1] == {"": "1", "Question": "哪些?", "A": "(1) (2) (3)", "B": "(1) (3)", "C": "None",
                               "D": "", "Answer": "A"}
    assert data["test"][0]["C"] == "3.0" and data["dev"][0] == {"": "0", "Question": "1+2=?", "A": "1", "B": "2",
                                                               "C": "3", "D": "4", "Answer": "C"}


@pytest.mark.slow
def test_same_prediction_on_all_1346_val_questions(ceval_root, work):
    from zhllm.ceval.lmeval import agreement_run

    report = agreement_run(ceval_root, work)
    assert report["questions"] == 1346
    _check(report)
    print(f"\nlm-eval agreement {report['agreement']:.4f} on {report['questions']} questions; "
          f"acc ours {report['acc_ours']:.4f} lm-eval {report['acc_lmeval']:.4f}; "
          f"max log-prob gap {report['max_logprob_gap']:.2e}, min margin {report['min_margin']:.3f}")


@pytest.mark.slow
def test_same_prediction_five_shot(ceval_root, work):
    """`--num_fewshot 5`: shots are the first five dev rows, each answered ' X' then a blank line."""
    from zhllm.ceval.lmeval import agreement_run

    subjects = ["computer_network", "high_school_chinese", "law", "physician"]
    report = agreement_run(ceval_root, work, subjects=subjects, num_fewshot=5)
    assert report["questions"] == sum(len(ceval.read_csv(ceval_root / "val" / f"{s}_val.csv", s))
                                      for s in subjects)
    _check(report)


@pytest.mark.slow
@pytest.mark.parametrize("shots", [0, 5])
def test_same_prediction_cmmlu(cmmlu_root, work, shots):
    """lm-eval's `cmmlu` on its test split: 0 shots (`lmeval_cmmlu`) and 5 (`lmeval_cmmlu_5shot`).

    college_actuarial_science's dev options are all numbers; machine_learning has questions to strip.
    """
    from zhllm.ceval.lmeval import agreement_run

    subjects = ["chinese_food_culture", "college_actuarial_science", "machine_learning"]
    report = agreement_run(cmmlu_root, work, subjects=subjects, num_fewshot=shots)
    assert report["questions"] == sum(len(ceval.read_csv(cmmlu_root / "test" / f"{s}.csv", s, "cmmlu"))
                                      for s in subjects)
    _check(report)
    print(f"\nCMMLU {shots}-shot: lm-eval agreement {report['agreement']:.4f} on {report['questions']} questions; "
          f"acc ours {report['acc_ours']:.4f} lm-eval {report['acc_lmeval']:.4f}; "
          f"max log-prob gap {report['max_logprob_gap']:.2e}, min margin {report['min_margin']:.3f}; "
          f"{report['seconds_lmeval']:.1f} s lm-eval, {report['seconds_ours']:.1f} s ours")

"""Classroom labs: Otter builds every lab; its autograder gives the solution full marks, the untouched student
notebook zero and each known wrong answer nothing for that question; every public check names the mistake."""
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zhllm import chat, cpt, evaluation, labs, scaling
from zhllm import tokenizer as tokenizer_expand
from zhllm.errors import ZhllmError
from zhllm.labs import LabCheckError
from zhllm.labs.ceval_scoring import _official_subject_mean
from zhllm.labs.dpo_loss import _formula_dpo_loss, _sequence_logps
from zhllm.labs.minhash_dedup import _shingles
from zhllm.labs.packing_and_bpc import _bpc_variant
from zhllm.labs.sft_label_mask import _transformers_loss
from zhllm.labs.tokenizer_expansion import _reject_reason
from zhllm.labs.unigram_bpc import _char_unigram, _token_unigram
from zhllm.tokenizer.sentencepiece import has_order_conflict, is_cjk_piece

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import make_labs  # noqa: E402

SOURCES = sorted((REPO / "labs").glob("[0-9]*.py"))
QUESTION = re.compile(r"^# # BEGIN QUESTION\n# name: (\w+)$", re.M)
CHECK_CALL = re.compile(r'^# %% tags=\["check"\]\nlabs\.(check_\w+)\((\w+)\)$', re.M)
QUESTIONS = {py.stem: QUESTION.findall(py.read_text()) for py in SOURCES}
LAB_OF = {q: lab for lab, qs in QUESTIONS.items() for q in qs}
PUBLIC, HIDDEN = 1, 2  # points per question: the public check, the hidden tests


def test_eight_labs_one_per_stage():
    assert [p.name[:2] for p in SOURCES] == ["00", "01", "02", "03", "04", "05", "06", "07"]


# ---- the sources: Otter master notebooks with the kit's lab anatomy ------------------------------

@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_lab_anatomy(py):
    text = py.read_text()
    assert f"# # ASSIGNMENT CONFIG\n# name: {py.stem}\n" in text, "an Otter assignment config named after the lab"
    assert "colab-badge.svg" in text and f"labs/student/{py.stem}.ipynb" in text, "a Colab badge"
    assert 'if "google.colab" in sys.modules' in text and "torch==" not in text, "a Colab-only install cell"
    assert "runtime.banner()" in text, "the version and device banner"
    assert "## Learning goals" in text and "90-minute" in text, "goals and the class slot at the top"
    tail = text[text.index("## Open questions"):]
    assert re.findall(r"^# (\d)\. ", tail, flags=re.M) == ["1", "2"], "ends with two open questions"
    assert "# %%" not in tail, "the open questions are the last cell"
    questions, checks = QUESTIONS[py.stem], CHECK_CALL.findall(text)
    assert len(questions) >= 2 and [fn for _, fn in checks] == questions, "one check cell per question"
    for check, fn in checks:
        assert f"def {fn}(" in text and hasattr(labs, check)
        assert f"def test_{fn}_public(labs, {fn}):\n    labs.{check}({fn})\n" in text
        assert f'points: {HIDDEN}\nhidden: true\n""" # END TEST CONFIG\ndef test_{fn}_hidden({fn}):' in text
    assert text.count("# BEGIN SOLUTION NO PROMPT") == len(questions) == text.count("# BEGIN PROMPT")


def test_every_check_is_used_by_a_lab():
    used = {check for py in SOURCES for check, _ in CHECK_CALL.findall(py.read_text())}
    assert used == {name for name in dir(labs) if name.startswith("check_")}


def test_no_reference_answer_is_exported():
    assert not [name for name in dir(labs) if name.startswith(("reference", "formula", "loss_to", "reject"))]


# ---- what `make labs` builds --------------------------------------------------------------------

@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Every lab through `otter assign`: {lab: {"student": text, "solution": text, "tests": {question: source}}}."""
    out = {}
    for py in SOURCES:
        lab = make_labs.build(py, tmp_path_factory.mktemp(py.stem))
        with zipfile.ZipFile(lab["autograder"]) as z:
            tests = {Path(n).stem: z.read(n).decode() for n in z.namelist() if n.startswith("tests/")}
        out[py.stem] = {"student": lab["student"], "solution": lab["solution"], "tests": tests,
                        "zip": lab["autograder"]}
    return out


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_committed_student_notebook_is_the_build(py, built):
    student = REPO / "labs" / "student" / f"{py.stem}.ipynb"
    assert student.exists() and student.read_text() == built[py.stem]["student"], f"{student} is stale: `make labs`"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_student_notebook_gives_nothing_away(py, built):
    notebook = json.loads(built[py.stem]["student"])
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "BEGIN" not in code and "hidden" not in json.dumps(notebook["metadata"]).lower().replace(
        "hidden=false", "")
    assert code.count("raise NotImplementedError(") == len(QUESTIONS[py.stem])
    solution = re.compile(r"# BEGIN SOLUTION NO PROMPT\n(.*?)# END SOLUTION", flags=re.S)
    outside = solution.sub("", py.read_text())  # lines that also occur outside an answer give nothing away
    for block in solution.findall(py.read_text()):
        for line in filter(None, (x.strip() for x in block.splitlines())):
            assert line not in code or line in outside, f"{py.name}: the student notebook gives away {line!r}"
    assert set(built[py.stem]["tests"]) == set(QUESTIONS[py.stem])


def test_solution_notebook_has_no_stubs(built):
    for lab in built.values():
        code = "".join(c.source for c in nbformat.reads(lab["solution"], 4).cells if c.cell_type == "code")
        assert 'NotImplementedError("TODO' not in code and "# BEGIN PROMPT" not in code and "SOLUTION" not in code


def test_make_labs_check_mode(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert make_labs.main(["--check", "labs/00_unigram_bpc.py"]) == 0


# ---- grading, in this process: the notebook's cells run as Otter runs them, then its tests ---------

def run_cells(notebook_text: str) -> dict:
    """The global names a notebook leaves after running top to bottom, errors ignored as when grading."""
    env = {"__name__": "__main__"}
    for cell in nbformat.reads(notebook_text, 4).cells:
        if cell.cell_type == "code":
            try:
                exec(compile(cell.source, "<lab>", "exec"), env)
            except Exception:  # noqa: BLE001 - a failing cell scores through the tests, as in Otter
                pass
    return env


def grade(built_lab: dict, env: dict, questions=None) -> dict:
    """Otter's score of each question (public and hidden tests) on the names in `env`."""
    from otter.test_files.exception_test import ExceptionTestFile

    scores = {}
    for name in questions or built_lab["tests"]:
        test = ExceptionTestFile.from_string(built_lab["tests"][name], path=f"{name}.py")
        test.run(env)
        scores[name] = (test.score, test.possible)
    return scores


@pytest.fixture(scope="session")
def solution_env(built):
    cache = {}

    def env(lab: str) -> dict:
        if lab not in cache:
            torch.manual_seed(0)
            cache[lab] = run_cells(built[lab]["solution"])
        return cache[lab]
    return env


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_solution_gets_full_marks_and_student_notebook_zero(py, built, solution_env):
    lab = built[py.stem]
    full = {q: (PUBLIC + HIDDEN, PUBLIC + HIDDEN) for q in QUESTIONS[py.stem]}
    assert grade(lab, solution_env(py.stem)) == full
    assert grade(lab, run_cells(lab["student"])) == {q: (0, PUBLIC + HIDDEN) for q in QUESTIONS[py.stem]}


GUIDE = REPO / "labs" / "README.md"
QUOTED = re.compile(r"<!-- (\d\d_\w+):(.+?) -->(\d+\.\d+)")


def test_numbers_in_the_answer_keys_come_from_the_solutions(solution_env):
    quoted = QUOTED.findall(GUIDE.read_text())
    assert 3 <= len(quoted) <= 12, "a few quoted numbers, each tied to the solution"
    for lab, expression, number in quoted:
        value = eval(expression, dict(solution_env(lab)))  # noqa: S307 - our own guide
        assert f"{value:.{len(number.split('.')[1])}f}" == number, f"{lab}: {expression} = {value}, quoted {number}"


def test_guide_covers_every_lab_and_notebook():
    guide = GUIDE.read_text()
    for py in SOURCES:
        assert f"student/{py.stem}.ipynb" in guide and f"**Lab {py.stem[:2]}.**" in guide
    for notebook in sorted((REPO / "notebooks").glob("[0-9]*.py")):
        assert f"**{notebook.stem[:2]} " in guide, f"answer key for the Try-its of {notebook.name}"
    readme = (REPO / "README.md").read_text()
    assert "make grade SUBMISSIONS=" in readme and "labs/README.md" in readme


# ---- every check names known mistakes; each such answer scores nothing for its question --------------

def stub(*args):
    raise NotImplementedError("TODO: write it")


@pytest.mark.parametrize("name", sorted(n for n in dir(labs) if n.startswith("check_")))
def test_stub_and_crash_fail_every_check(name):
    check = getattr(labs, name)
    fails(check, stub, "`stub` is not implemented yet", "TODO: write it")

    def crashes(*args):
        return 1 / 0

    fails(check, crashes, "`crashes` crashed with ZeroDivisionError")
    assert issubclass(LabCheckError, ZhllmError)


def fails(check, fn, *fragments):
    with pytest.raises(LabCheckError) as info:
        check(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def accept_reference(piece, vocab):
    return _reject_reason(piece, vocab) is None


def buildable(p, v):
    return len(p) == 1 or any(p[:k] in v and p[k:] in v for k in range(1, len(p)))


def packer(bos=True, eos=True, special=False, partial=False, off_by_one=False, extra=0):
    def pack_documents(tok, texts, size):
        stream = []
        for text in texts:
            ids = tok(text, add_special_tokens=special)["input_ids"]
            stream += [tok.bos_token_id] * bos + ids + [tok.eos_token_id] * eos
        stop = len(stream) if partial else len(stream) - size + (0 if off_by_one else 1)
        return [stream[i:i + size + extra] for i in range(0, stop, size)]
    return pack_documents


def bpc(bos=True, shift=True, per_text=False, unit=math.log(2), per="char"):
    return lambda model, tok, texts: _bpc_variant(model, tok, texts, bos, shift, per_text, unit, per)


def relabel(change):
    def build_labels(tok, messages):
        row = chat.build_labels(tok, messages)
        return {"input_ids": row["input_ids"], "labels": change(tok, row["input_ids"], row["labels"])}
    return build_labels


def keep_after_eos(tok, ids, labels):
    out = list(labels)
    for i in range(1, len(ids)):
        if labels[i - 1] == ids[i - 1] == tok.eos_token_id and labels[i] == -100:
            out[i] = ids[i]
    return out


def only_last_reply(tok, ids, labels):
    eos = [i for i, (t, lab) in enumerate(zip(ids, labels)) if t == lab == tok.eos_token_id]
    return [lab if i > eos[-2] else -100 for i, lab in enumerate(labels)] if len(eos) > 1 else labels


def with_header(t, ids, lab):
    header = len(t("### Assistant:\n", add_special_tokens=False)["input_ids"])
    out = list(lab)
    for i in range(len(lab)):
        if lab[i] != -100 and (i == 0 or lab[i - 1] == -100):
            out[max(0, i - header):i] = ids[max(0, i - header):i]
    return out


def v(lg):
    return lg.shape[-1]


def every_position(lg, lb):
    nll = F.cross_entropy(lg[:, :-1].reshape(-1, v(lg)), lb[:, 1:].reshape(-1), reduction="none")
    return nll.sum() / nll.numel()


def per_row(lg, lb):
    return torch.stack([_transformers_loss(lg[i:i + 1], lb[i:i + 1]) for i in range(len(lg))]).mean()


def logp(lg):
    return torch.log_softmax(lg, -1)


def objective(mean=False, squared=False, no_half=False, raw=False):
    def huber_objective(theta, log_n, log_d, log_loss, delta=1e-3):
        a, b, e, alpha, beta = theta
        pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
        r = pred - (np.exp(log_loss) if raw else log_loss)
        quad = (1 if no_half else 0.5) * r * r
        h = quad if squared else np.where(np.abs(r) <= delta, quad, delta * (np.abs(r) - 0.5 * delta))
        return h.mean() if mean else h.sum()
    return huber_objective


def with_n(n_of):
    return lambda law, c: (n_of(law, c), c / (6 * n_of(law, c)))


def letters(position=-1, raw=False, probs=False, renorm=False, bos=True):
    def letter_logprobs(model, tok, prompt, ids):
        x = tok(prompt)["input_ids"][0 if bos else 1:]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([x])).logits[0, position].float()
        if raw:
            return logits[ids].tolist()
        if probs:
            return torch.softmax(logits, -1)[ids].tolist()
        if renorm:
            return torch.log_softmax(logits[ids], -1).tolist()
        return torch.log_softmax(logits, -1)[ids].tolist()
    return letter_logprobs


def signature(pick=min, seed=None, hash_min=False):
    def minhash_signature(shingle_set, k):
        if hash_min:
            return [labs.shingle_hash(min(shingle_set), j) for j in range(k)]
        return [pick(labs.shingle_hash(s, j if seed is None else seed) for s in shingle_set) for j in range(k)]
    return minhash_signature


# (question, words the check's message must contain, a wrong answer)
WRONG = [
    ("unigram_bpc", ["nats"], lambda a, b: _char_unigram(a, b, log=math.log)),
    ("unigram_bpc", ["log10"], lambda a, b: _char_unigram(a, b, log=math.log10)),
    ("unigram_bpc", ["each text"], lambda a, b: _char_unigram(a, b, per_text=True)),
    ("unigram_bpc", ["unseen"], lambda a, b: _char_unigram(a, b, unseen_slot=0)),
    ("unigram_bpc", ["not to the total"], lambda a, b: _char_unigram(a, b, unseen_slot=None)),
    ("unigram_bpc", ["evaluation texts"], lambda a, b: _char_unigram(b, b)),
    ("token_unigram_bpc", ["bits per token"], lambda t, a, b: _token_unigram(t, a, b, per="token")),
    ("token_unigram_bpc", ["nats"], lambda t, a, b: _token_unigram(t, a, b, log=math.log)),
    ("token_unigram_bpc", ["special tokens"], lambda t, a, b: _token_unigram(t, a, b, special=True)),
    ("token_unigram_bpc", ["len(tokenizer)"], lambda t, a, b: _token_unigram(t, a, b, vocab=len)),
    ("accept_piece", ["you accepted", "BPE can never build it"],
     lambda p, v: p not in v and is_cjk_piece(p) and not has_order_conflict(p, v)),
    ("accept_piece", ["not Chinese"], lambda p, v: p not in v and buildable(p, v) and not has_order_conflict(p, v)),
    ("accept_piece", ["哈哈哈"], lambda p, v: p not in v and is_cjk_piece(p) and buildable(p, v)),
    ("accept_piece", ["already in the vocabulary"], lambda p, v: _reject_reason(p, v) in (None, "in_vocab")),
    ("accept_piece", ["you rejected", "should be accepted"], lambda p, v: accept_reference(p, v) and len(p) == 1),
    ("accept_piece", ["True or False"], lambda p, v: "yes"),
    ("chars_per_token", ["tokens per character"], lambda t, xs: 1 / tokenizer_expand.chars_per_token(t, xs)),
    ("chars_per_token", ["special tokens"], lambda t, xs: sum(map(len, xs)) / sum(len(t(x)["input_ids"]) for x in xs)),
    ("chars_per_token", ["averaged the ratio"],
     lambda t, xs: np.mean([tokenizer_expand.chars_per_token(t, [x]) for x in xs])),
    ("pack_documents", ["forgot the EOS"], packer(eos=False)),
    ("pack_documents", ["forgot the BOS"], packer(bos=False)),
    ("pack_documents", ["two <s>"], packer(special=True)),
    ("pack_documents", ["partial block"], packer(partial=True)),
    ("pack_documents", ["off by one"], packer(off_by_one=True)),
    ("pack_documents", ["exactly block_size"], packer(extra=1)),
    ("pack_documents", ["list of blocks"], lambda t, xs, n: 7),
    ("loss_to_bpc", ["nats"], lambda m, n, c: m * n / c),
    ("loss_to_bpc", ["bits per token"], lambda m, n, c: m / math.log(2)),
    ("loss_to_bpc", ["log10"], lambda m, n, c: m * n / c / math.log(10)),
    ("loss_to_bpc", ["swapped"], lambda m, n, c: m * c / math.log(2) / n),
    ("bits_per_character", ["nats"], bpc(unit=1.0)),
    ("bits_per_character", ["<s> in front"], bpc(bos=False)),
    ("bits_per_character", ["not shifted"], bpc(shift=False)),
    ("bits_per_character", ["averaged the bits per character of each text"], bpc(per_text=True)),
    ("bits_per_character", ["number of tokens"], bpc(per="token")),
    ("build_labels", ["drop the EOS"], relabel(lambda t, ids, lab: [x if x != t.eos_token_id else -100 for x in lab])),
    ("build_labels", ["the user's turn", "should be -100"], relabel(lambda t, ids, lab: list(ids))),
    ("build_labels", ["after a reply's EOS"], relabel(keep_after_eos)),
    ("build_labels", ["not only the last"], relabel(only_last_reply)),
    ("build_labels", ["own token id"], relabel(lambda t, ids, lab: lab[1:] + [-100])),
    ("build_labels", ["assistant header"], relabel(with_header)),
    ("build_labels", ["chat template's rendering"],
     lambda t, m: {"input_ids": t(chat.render(t, m))["input_ids"], "labels": []}),
    ("build_labels", ["a dict"], lambda t, m: chat.build_labels(t, m)["labels"]),
    ("masked_loss", ["did not shift"], lambda lg, lb: F.cross_entropy(lg.reshape(-1, v(lg)), lb.reshape(-1))),
    ("masked_loss", ["the sum"], lambda lg, lb: F.cross_entropy(lg[:, :-1].reshape(-1, v(lg)), lb[:, 1:].reshape(-1),
                                                                reduction="sum")),
    ("masked_loss", ["every position"], every_position),
    ("masked_loss", ["each conversation first"], per_row),
    ("sequence_logps", ["did not shift"], lambda lg, ids, m: (logp(lg).gather(-1, ids[..., None])[..., 0] * m).sum(1)),
    ("sequence_logps", ["prompt"], lambda lg, ids, m: logp(lg)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].sum(1)),
    ("sequence_logps", ["averaged"], lambda lg, ids, m: _sequence_logps(lg, ids, m) / m[:, 1:].sum(1)),
    ("sequence_logps", ["raw logits"],
     lambda lg, ids, m: (lg[:, :-1].gather(-1, ids[:, 1:, None])[..., 0] * m[:, 1:]).sum(1)),
    ("sequence_logps", ["one summed"], lambda lg, ids, m: _sequence_logps(lg, ids, m).sum()),
    ("dpo_loss", ["sign is flipped"], lambda pc, pr, rc, rr, b: _formula_dpo_loss(pr, pc, rr, rc, b)),
    ("dpo_loss", ["left out β"], lambda pc, pr, rc, rr, b: _formula_dpo_loss(pc, pr, rc, rr, 1.0)),
    ("dpo_loss", ["outside"], lambda pc, pr, rc, rr, b: -b * F.logsigmoid((pc - rc) - (pr - rr)).mean()),
    ("dpo_loss", ["reference model"], lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean()),
    ("dpo_loss", ["summed"], lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).sum()),
    ("dpo_loss", ["not connected"], lambda *a: torch.tensor(_formula_dpo_loss(*a).item())),
    ("dpo_loss", ["scalar tensor"], lambda *a: -F.logsigmoid(a[4] * ((a[0] - a[2]) - (a[1] - a[3])))),
    ("huber_objective", ["mean over runs"], objective(mean=True)),
    ("huber_objective", ["squared error"], objective(squared=True)),
    ("huber_objective", ["1/2"], objective(no_half=True)),
    ("huber_objective", ["loss itself"], objective(raw=True)),
    ("huber_objective", ["log(A/N^α + B/D^β + E)"], lambda t, n, d, lo, de: objective()(t, n, d, lo, de) + 1),
    ("compute_optimal", ["C instead of C/6"], with_n(lambda law, c: law.G * c ** law.a)),
    ("compute_optimal", ["exponents are swapped"], with_n(lambda law, c: law.G * (c / 6) ** (1 - law.a))),
    ("compute_optimal", ["inverted G"], with_n(lambda law, c: (c / 6) ** law.a / law.G)),
    ("compute_optimal", ["6·N·D"], lambda law, c: (law.optimal(c)[0], law.optimal(c)[1] * 6)),
    ("compute_optimal", ["two numbers"], lambda law, c: law.optimal(c)[0]),
    ("letter_logprobs", ["raw logits"], letters(raw=True)),
    ("letter_logprobs", ["probabilities"], letters(probs=True)),
    ("letter_logprobs", ["four letters only"], letters(renorm=True)),
    ("letter_logprobs", ["one position too early"], letters(position=-2)),
    ("letter_logprobs", ["no <s>"], letters(bos=False)),
    ("letter_logprobs", ["returned 3 numbers"], lambda *a: letters()(*a)[:3]),
    ("subject_mean", ["pooled all questions"], lambda rs: sum(p == a for _, p, a in rs) / len(rs)),
    ("subject_mean", ["unanswered"], lambda rs: _official_subject_mean([r for r in rs if r[1] is not None])),
    ("subject_mean", ["percentage"], lambda rs: 100 * _official_subject_mean(rs)),
    ("shingles", ["normalise"], lambda t, n: _shingles(t, n, normalize=False)),
    ("shingles", ["off by one"], lambda t, n: _shingles(t, n, stop=1)),
    ("shingles", ["word shingles"], lambda t, n: _shingles(t, n, words=True)),
    ("shingles", ["return a set"], lambda t, n: sorted(_shingles(t, n))),
    ("minhash_signature", ["largest hash"], signature(pick=max)),
    ("minhash_signature", ["same hash function"], signature(seed=0)),
    ("minhash_signature", ["smallest shingle"], signature(hash_min=True)),
    ("estimated_jaccard", ["sets of signature values"], lambda a, b: len(set(a) & set(b)) / len(set(a) | set(b))),
    ("estimated_jaccard", ["divide by the signature length"], lambda a, b: float(sum(x == y for x, y in zip(a, b)))),
    ("estimated_jaccard", ["differ"], lambda a, b: 1 - sum(x == y for x, y in zip(a, b)) / len(a)),
]
CHECK_OF = {fn: check for py in SOURCES for check, fn in CHECK_CALL.findall(py.read_text())}


def test_every_question_has_known_wrong_answers():
    assert {q for q, _, _ in WRONG} == set(LAB_OF)


@pytest.mark.parametrize("question,fragments,wrong", WRONG, ids=[f"{q}-{f[0]}" for q, f, _ in WRONG])
def test_wrong_answer_is_named_and_scores_nothing(question, fragments, wrong, built, solution_env):
    fails(getattr(labs, CHECK_OF[question]), wrong, *fragments)
    lab = LAB_OF[question]
    env = dict(solution_env(lab), **{question: wrong})
    assert grade(built[lab], env, [question]) == {question: (0, PUBLIC + HIDDEN)}


# the kit's own implementation passes the public check, but the hidden tests switch it off
DELEGATES = [("unigram_bpc", evaluation.unigram_bits_per_character),
             ("chars_per_token", tokenizer_expand.chars_per_token),
             ("pack_documents", lambda t, xs, n: [r["input_ids"] for r in cpt.pack_documents(t, xs, n)]),
             ("bits_per_character", evaluation.bits_per_character),
             ("build_labels", chat.build_labels),
             ("masked_loss", _transformers_loss),
             ("huber_objective", lambda *a: scaling.huber_objective(*a)[0]),
             ("compute_optimal", lambda law, c: law.optimal(c))]


@pytest.mark.parametrize("question,kit", DELEGATES, ids=[q for q, _ in DELEGATES])
def test_calling_the_kit_earns_only_the_public_point(question, kit, built, solution_env):
    lab = LAB_OF[question]
    env = dict(solution_env(lab), **{question: kit})
    assert grade(built[lab], env, [question]) == {question: (PUBLIC, PUBLIC + HIDDEN)}


def test_kit_switched_off_restores_everything():
    original = chat.build_labels
    with labs.kit_switched_off((chat, "build_labels")):
        with pytest.raises(RuntimeError, match="switched off"):
            original(None, [])
    assert chat.build_labels is original
    assert original(labs.lab_tokenizer(), [{"role": "user", "content": "你好"}])["labels"]


# ---- the grading command, end to end: kernels, the autograder zip, the CSV --------------------------

def test_grade_labs_writes_scores_per_student_and_question(built, tmp_path):
    lab = "00_unigram_bpc"
    autograders = tmp_path / "autograders"
    autograders.mkdir()
    (autograders / f"{lab}.zip").write_bytes(Path(built[lab]["zip"]).read_bytes())
    submissions = tmp_path / "submissions"
    (submissions / "class_a").mkdir(parents=True)
    (submissions / "class_a" / "li_lei.ipynb").write_text(built[lab]["solution"])
    (submissions / "han_meimei.ipynb").write_text(built[lab]["student"])
    (submissions / "notes.ipynb").write_text(json.dumps(nbformat.v4.new_notebook()))
    out = tmp_path / "scores.csv"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))  # the kernels grade this checkout's kit, wherever they run
    subprocess.run([sys.executable, str(REPO / "scripts" / "grade_labs.py"), str(submissions), "--autograders",
                    str(autograders), "--out", str(out)], check=True, cwd=REPO, capture_output=True, env=env)
    rows = {(r["student"], r["question"]): r for r in csv.DictReader(io.StringIO(out.read_text()))}
    full = (PUBLIC + HIDDEN) * len(QUESTIONS[lab])
    assert rows["class_a/li_lei", "total"]["score"] == str(full) == rows["class_a/li_lei", "total"]["possible"]
    assert rows["han_meimei", "total"]["score"] == "0"
    for q in QUESTIONS[lab]:
        assert rows["class_a/li_lei", q]["score"] == str(PUBLIC + HIDDEN) and rows["han_meimei", q]["score"] == "0"
    assert rows["notes", "total"]["note"] == "not a lab notebook"

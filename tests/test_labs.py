"""Classroom labs: generated notebooks in sync, solutions pass, stubs fail, and every check catches wrong answers."""
import json
import math
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zhllm import chat, cpt, evaluation, labs, scaling
from zhllm import tokenizer as tokenizer_expand
from zhllm.errors import ZhllmError
from zhllm.labs import LabCheckError
from zhllm.tokenizer.sentencepiece import has_order_conflict, is_cjk_piece

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from make_labs import MarkerError, rendered, targets, transform  # noqa: E402

SOURCES = sorted((REPO / "labs").glob("[0-9]*.py"))
CHECK_CALL = re.compile(r"labs\.(check_\w+)\((\w+)\)")


def test_six_labs():
    assert [p.name[:2] for p in SOURCES] == ["01", "02", "03", "04", "05", "06"]


# ---- (a) generated notebooks are in sync with their sources ---------------------------------------

@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_generated_notebooks_in_sync(py):
    for kind, ipynb in targets(py).items():
        assert ipynb.exists(), f"{ipynb} is missing: run `make labs`"
        assert ipynb.read_text() == rendered(py, kind), f"{ipynb} is stale: run `make labs`"
        cells = json.loads(ipynb.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_lab_anatomy(py):
    text = py.read_text()
    assert "colab-badge.svg" in text and f"labs/student/{py.stem}.ipynb" in text, "a Colab badge"
    assert 'if "google.colab" in sys.modules' in text and "torch==" not in text, "a Colab-only install cell"
    assert "runtime.banner()" in text, "the version and device banner"
    assert "## Learning goals" in text and "90-minute" in text, "goals and the class slot at the top"
    tail = text[text.index("## Open questions"):]
    assert re.findall(r"^# (\d)\. ", tail, flags=re.M) == ["1", "2"], "ends with two open questions"
    assert "# %%" not in tail, "the open questions are the last cell"
    solutions = text.count("# BEGIN SOLUTION")
    checks = CHECK_CALL.findall(text)
    assert solutions >= 2 and solutions == text.count("# END SOLUTION") == len(checks)
    for check, fn in checks:
        assert f"def {fn}(" in text, f"{check} checks {fn}, which the lab defines"
        assert f'# %% tags=["check"]\nlabs.{check}({fn})' in text, f"{check} sits alone in a cell tagged check"


def test_every_check_is_used_by_a_lab():
    used = {check for py in SOURCES for check, _ in CHECK_CALL.findall(py.read_text())}
    defined = {name for name in dir(labs) if name.startswith("check_")}
    assert used == defined


# ---- the generator ------------------------------------------------------------------------------

def test_transform_student_and_solution():
    source = ('def f(x):\n    """Doc."""\n    # BEGIN SOLUTION: square it\n    y = x * x\n    return y\n'
              "    # END SOLUTION\n")
    assert transform(source, "student", "t") == ('def f(x):\n    """Doc."""\n'
                                                 '    raise NotImplementedError("TODO: square it")')
    assert transform(source, "solution", "t") == 'def f(x):\n    """Doc."""\n    y = x * x\n    return y'
    assert "TODO: write this part" in transform("    # BEGIN SOLUTION\n    pass\n    # END SOLUTION", "student", "t")


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_student_notebook_holds_no_solution_line(py):
    student = json.loads(targets(py)["student"].read_text())
    code = "\n".join("".join(c["source"]) for c in student["cells"] if c["cell_type"] == "code")
    pattern = re.compile(r"# BEGIN SOLUTION.*?\n(.*?)# END SOLUTION", flags=re.S)
    outside = pattern.sub("", py.read_text())  # lines that also occur outside an answer give nothing away
    for block in pattern.findall(py.read_text()):
        for line in filter(None, (x.strip() for x in block.splitlines())):
            assert line not in code or line in outside, f"{py.name}: the student notebook gives away {line!r}"


def test_make_labs_check_mode(tmp_path, monkeypatch, capsys):
    from make_labs import main

    monkeypatch.chdir(REPO)
    assert main(["--check"]) == 0
    source = tmp_path / "07_new.py"
    source.write_text("# %%\ndef f():\n    # BEGIN SOLUTION: one\n    return 1\n    # END SOLUTION\n")
    assert main(["--check", str(source)]) == 1 and "07_new.ipynb" in capsys.readouterr().out
    assert not (tmp_path / "student").exists()
    assert main([str(source)]) == 0 and main(["--check", str(source)]) == 0
    assert 'NotImplementedError(\\"TODO: one\\")' in (tmp_path / "student" / "07_new.ipynb").read_text()


@pytest.mark.parametrize("source", ["# BEGIN SOLUTION\nx = 1", "x = 1\n# END SOLUTION",
                                    "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION",
                                    '# BEGIN SOLUTION: say "hi"\n# END SOLUTION'])
def test_transform_rejects_bad_markers(source):
    with pytest.raises(MarkerError, match="cell 3"):
        transform(source, "student", "lab.py, cell 3")


# ---- (b) solutions pass and (c) stubs fail, executing the generated notebooks -------------------

def _execute(ipynb: Path):
    """Run a notebook top to bottom in a fresh kernel, errors recorded in the outputs, not raised."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ipynb, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ipynb.parent)}}).execute()
    return nb


def _errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_solution_passes_and_student_stubs_fail(py):
    paths = targets(py)
    done = {}
    # the two versions run side by side: two kernels, each mostly single-threaded
    threads = [threading.Thread(target=lambda k=k: done.__setitem__(k, _execute(paths[k]))) for k in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    solution, student = done["solution"], done["student"]

    for cell in solution.cells:
        if cell.cell_type == "code":
            assert not _errors(cell), f"{py.stem} solution, {cell.id}: {_errors(cell)[0].evalue}"
            if "check" in cell.metadata.get("tags", []):
                assert "✓" in _text(cell), f"{py.stem} solution, {cell.id}: the check printed no success line"

    code = [c for c in student.cells if c.cell_type == "code"]
    first_stub = next(i for i, c in enumerate(code) if "raise NotImplementedError" in c.source)
    for cell in code[:first_stub]:
        assert not _errors(cell), f"{py.stem} student setup, {cell.id}: {_errors(cell)[0].evalue}"
    checks = [c for c in code if "check" in c.metadata.get("tags", [])]
    assert len(checks) >= 2
    for cell in checks:
        _, fn = CHECK_CALL.search(cell.source).groups()
        errors = _errors(cell)
        assert errors, f"{py.stem} student, {cell.id}: the check passed with the stub in place"
        assert errors[0].ename == "LabCheckError", f"{py.stem} student, {cell.id}: {errors[0].ename}"
        assert f"`{fn}` is not implemented yet" in errors[0].evalue


# ---- every check fails on plausible wrong answers, with the right message ------------------------

@pytest.fixture(scope="module")
def tok():
    return labs.lab_tokenizer()


def fails(check, fn, *fragments):
    with pytest.raises(LabCheckError) as info:
        check(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


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


def accept_reference(piece, vocab):
    return labs.reject_reason(piece, vocab) is None


def test_check_accept_piece():
    labs.check_accept_piece(accept_reference)
    fails(labs.check_accept_piece, lambda p, v: p not in v and is_cjk_piece(p) and not has_order_conflict(p, v),
          "you accepted", "BPE can never build it")
    fails(labs.check_accept_piece, lambda p, v: p not in v and (len(p) == 1 or any(
        p[:k] in v and p[k:] in v for k in range(1, len(p)))) and not has_order_conflict(p, v), "not Chinese")
    fails(labs.check_accept_piece, lambda p, v: p not in v and is_cjk_piece(p) and (len(p) == 1 or any(
        p[:k] in v and p[k:] in v for k in range(1, len(p)))), "哈哈哈")
    fails(labs.check_accept_piece, lambda p, v: labs.reject_reason(p, v) in (None, "in_vocab"),
          "already in the vocabulary")
    fails(labs.check_accept_piece, lambda p, v: accept_reference(p, v) and len(p) == 1,
          "you rejected", "should be accepted")
    fails(labs.check_accept_piece, lambda p, v: "yes", "True or False")


def test_check_chars_per_token():
    labs.check_chars_per_token(tokenizer_expand.chars_per_token)
    fails(labs.check_chars_per_token, lambda t, xs: 1 / tokenizer_expand.chars_per_token(t, xs), "tokens per character")
    fails(labs.check_chars_per_token, lambda t, xs: sum(map(len, xs)) / sum(len(t(x)["input_ids"]) for x in xs),
          "special tokens")
    fails(labs.check_chars_per_token, lambda t, xs: np.mean([tokenizer_expand.chars_per_token(t, [x]) for x in xs]),
          "averaged the ratio")


def packer(bos=True, eos=True, special=False, partial=False, off_by_one=False, extra=0):
    def pack_documents(tok, texts, size):
        stream = []
        for text in texts:
            ids = tok(text, add_special_tokens=special)["input_ids"]
            stream += [tok.bos_token_id] * bos + ids + [tok.eos_token_id] * eos
        stop = len(stream) if partial else len(stream) - size + (0 if off_by_one else 1)
        return [stream[i:i + size + extra] for i in range(0, stop, size)]
    return pack_documents


def test_check_pack_documents():
    labs.check_pack_documents(lambda t, xs, n: [r["input_ids"] for r in cpt.pack_documents(t, xs, n)])
    labs.check_pack_documents(packer())
    fails(labs.check_pack_documents, packer(eos=False), "forgot the EOS")
    fails(labs.check_pack_documents, packer(bos=False), "forgot the BOS")
    fails(labs.check_pack_documents, packer(special=True), "two <s>")
    fails(labs.check_pack_documents, packer(partial=True), "partial block")
    fails(labs.check_pack_documents, packer(off_by_one=True), "off by one")
    fails(labs.check_pack_documents, packer(extra=1), "exactly block_size")
    fails(labs.check_pack_documents, lambda t, xs, n: 7, "list of blocks")


def test_check_loss_to_bpc():
    labs.check_loss_to_bpc(labs.loss_to_bpc)
    fails(labs.check_loss_to_bpc, lambda m, n, c: m * n / c, "nats")
    fails(labs.check_loss_to_bpc, lambda m, n, c: m / math.log(2), "bits per token")
    fails(labs.check_loss_to_bpc, lambda m, n, c: m * n / c / math.log(10), "log10")
    fails(labs.check_loss_to_bpc, lambda m, n, c: m * c / math.log(2) / n, "swapped")


def bpc(bos=True, shift=True, per_text=False, unit=math.log(2), per="char"):
    return lambda model, tok, texts: labs._bpc_variant(model, tok, texts, bos, shift, per_text, unit, per)


def test_check_bits_per_character():
    labs.check_bits_per_character(lambda m, t, xs: evaluation.bits_per_character(m, t, xs))
    labs.check_bits_per_character(bpc())
    fails(labs.check_bits_per_character, bpc(unit=1.0), "nats")
    fails(labs.check_bits_per_character, bpc(bos=False), "<s> in front")
    fails(labs.check_bits_per_character, bpc(shift=False), "not shifted")
    fails(labs.check_bits_per_character, bpc(per_text=True), "averaged the bits per character of each text")
    fails(labs.check_bits_per_character, bpc(per="token"), "number of tokens")
    assert torch.get_num_threads() >= 1


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


def test_check_build_labels(tok):
    labs.check_build_labels(chat.build_labels)
    fails(labs.check_build_labels, relabel(lambda t, ids, lab: [x if x != t.eos_token_id else -100 for x in lab]),
          "drop the EOS")
    fails(labs.check_build_labels, relabel(lambda t, ids, lab: list(ids)), "the user's turn", "should be -100")
    fails(labs.check_build_labels, relabel(keep_after_eos), "after a reply's EOS")
    fails(labs.check_build_labels, relabel(only_last_reply), "not only the last")
    fails(labs.check_build_labels, relabel(lambda t, ids, lab: lab[1:] + [-100]), "own token id")
    header = len(tok("### Assistant:\n", add_special_tokens=False)["input_ids"])

    def with_header(t, ids, lab):
        out = list(lab)
        for i in range(len(lab)):
            if lab[i] != -100 and (i == 0 or lab[i - 1] == -100):
                out[max(0, i - header):i] = ids[max(0, i - header):i]
        return out

    fails(labs.check_build_labels, relabel(with_header), "assistant header")
    fails(labs.check_build_labels, lambda t, m: {"input_ids": t(chat.render(t, m))["input_ids"],
                                                 "labels": []}, "chat template's rendering")
    fails(labs.check_build_labels, lambda t, m: chat.build_labels(t, m)["labels"], "a dict")


def test_check_masked_loss():
    labs.check_masked_loss(labs.reference_masked_loss)
    v = lambda lg: lg.shape[-1]  # noqa: E731
    fails(labs.check_masked_loss, lambda lg, lb: F.cross_entropy(lg.reshape(-1, v(lg)), lb.reshape(-1)),
          "did not shift")
    fails(labs.check_masked_loss, lambda lg, lb: F.cross_entropy(lg[:, :-1].reshape(-1, v(lg)), lb[:, 1:].reshape(-1),
                                                                 reduction="sum"), "the sum")

    def every_position(lg, lb):
        nll = F.cross_entropy(lg[:, :-1].reshape(-1, v(lg)), lb[:, 1:].reshape(-1), reduction="none")
        return nll.sum() / nll.numel()

    def per_row(lg, lb):
        return torch.stack([labs.reference_masked_loss(lg[i:i + 1], lb[i:i + 1]) for i in range(len(lg))]).mean()

    fails(labs.check_masked_loss, every_position, "every position")
    fails(labs.check_masked_loss, per_row, "each conversation first")


def test_check_sequence_logps():
    labs.check_sequence_logps(labs.reference_sequence_logps)

    def logp(lg):
        return torch.log_softmax(lg, -1)

    fails(labs.check_sequence_logps, lambda lg, ids, m: (logp(lg).gather(-1, ids[..., None])[..., 0] * m).sum(1),
          "did not shift")
    fails(labs.check_sequence_logps, lambda lg, ids, m: logp(lg)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].sum(1),
          "prompt")
    fails(labs.check_sequence_logps, lambda lg, ids, m: labs.reference_sequence_logps(lg, ids, m) / m[:, 1:].sum(1),
          "averaged")
    fails(labs.check_sequence_logps,
          lambda lg, ids, m: (lg[:, :-1].gather(-1, ids[:, 1:, None])[..., 0] * m[:, 1:]).sum(1), "raw logits")
    fails(labs.check_sequence_logps, lambda lg, ids, m: labs.reference_sequence_logps(lg, ids, m).sum(), "one summed")


def test_trl_dpo_loss_runs_trls_code_and_matches_the_formula(monkeypatch):
    from trl.trainer.dpo_trainer import DPOTrainer

    calls = []
    original = DPOTrainer._compute_loss
    monkeypatch.setattr(DPOTrainer, "_compute_loss", lambda *a: calls.append(1) or original(*a))
    g = torch.Generator().manual_seed(1)
    tensors = [-torch.rand(6, generator=g, dtype=torch.float64) * 40 for _ in range(4)]
    for beta in (0.05, 0.1, 0.5):
        assert torch.allclose(labs.trl_dpo_loss(*tensors, beta), labs.formula_dpo_loss(*tensors, beta))
    assert len(calls) == 3


def test_check_dpo_loss():
    labs.check_dpo_loss(labs.formula_dpo_loss)
    fails(labs.check_dpo_loss, lambda pc, pr, rc, rr, b: labs.formula_dpo_loss(pr, pc, rr, rc, b), "sign is flipped")
    fails(labs.check_dpo_loss, lambda pc, pr, rc, rr, b: labs.formula_dpo_loss(pc, pr, rc, rr, 1.0), "left out β")
    fails(labs.check_dpo_loss, lambda pc, pr, rc, rr, b: -b * F.logsigmoid((pc - rc) - (pr - rr)).mean(), "outside")
    fails(labs.check_dpo_loss, lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(), "reference model")
    fails(labs.check_dpo_loss, lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).sum(), "summed")
    fails(labs.check_dpo_loss, lambda *a: torch.tensor(labs.formula_dpo_loss(*a).item()), "not connected")
    fails(labs.check_dpo_loss, lambda *a: -F.logsigmoid(a[4] * ((a[0] - a[2]) - (a[1] - a[3]))), "scalar tensor")


def objective(mean=False, squared=False, no_half=False, raw=False):
    def huber_objective(theta, log_n, log_d, log_loss, delta):
        a, b, e, alpha, beta = theta
        pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
        r = pred - (np.exp(log_loss) if raw else log_loss)
        quad = (1 if no_half else 0.5) * r * r
        h = quad if squared else np.where(np.abs(r) <= delta, quad, delta * (np.abs(r) - 0.5 * delta))
        return h.mean() if mean else h.sum()
    return huber_objective


def test_check_huber_objective():
    labs.check_huber_objective(lambda *a: scaling.huber_objective(*a)[0])
    labs.check_huber_objective(objective())
    fails(labs.check_huber_objective, objective(mean=True), "mean over runs")
    fails(labs.check_huber_objective, objective(squared=True), "squared error")
    fails(labs.check_huber_objective, objective(no_half=True), "1/2")
    fails(labs.check_huber_objective, objective(raw=True), "loss itself")
    fails(labs.check_huber_objective, lambda t, n, d, lo, de: objective()(t, n, d, lo, de) + 1,
          "log(A/N^α + B/D^β + E)")


def test_check_compute_optimal():
    labs.check_compute_optimal(lambda law, c: law.optimal(c))

    def with_n(n_of):
        return lambda law, c: (n_of(law, c), c / (6 * n_of(law, c)))

    fails(labs.check_compute_optimal, with_n(lambda law, c: law.G * c ** law.a), "C instead of C/6")
    fails(labs.check_compute_optimal, with_n(lambda law, c: law.G * (c / 6) ** (1 - law.a)), "exponents are swapped")
    fails(labs.check_compute_optimal, with_n(lambda law, c: (c / 6) ** law.a / law.G), "inverted G")
    fails(labs.check_compute_optimal, lambda law, c: (law.optimal(c)[0], law.optimal(c)[1] * 6), "6·N·D")
    fails(labs.check_compute_optimal, lambda law, c: law.optimal(c)[0], "two numbers")


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


def test_check_letter_logprobs():
    labs.check_letter_logprobs(letters())
    fails(labs.check_letter_logprobs, letters(raw=True), "raw logits")
    fails(labs.check_letter_logprobs, letters(probs=True), "probabilities")
    fails(labs.check_letter_logprobs, letters(renorm=True), "four letters only")
    fails(labs.check_letter_logprobs, letters(position=-2), "one position too early")
    fails(labs.check_letter_logprobs, letters(bos=False), "no <s>")
    fails(labs.check_letter_logprobs, lambda *a: letters()(*a)[:3], "returned 3 numbers")


def test_check_subject_mean():
    labs.check_subject_mean(labs.reference_subject_mean)
    fails(labs.check_subject_mean, lambda rs: sum(p == a for _, p, a in rs) / len(rs), "pooled all questions")

    def skips_none(rs):
        return labs.reference_subject_mean([r for r in rs if r[1] is not None])

    fails(labs.check_subject_mean, skips_none, "unanswered")
    fails(labs.check_subject_mean, lambda rs: 100 * labs.reference_subject_mean(rs), "percentage")

"""Stage 06 — C-Eval / CMMLU (中文知识评测): load exams, render prompts in named formats.

Published C-Eval numbers differ mostly through choices nobody states: the prompt header, whether the
scored answer is "A" or " A", how many dev shots and in which order, and how the average is taken.
Here every choice is a named field of a `PromptFormat` and every average is named in the summary;
scoring itself is in `scoring`, the kit's own exam in `kit_exam`, lm-eval parity in `lmeval`.
"""
import csv
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import hub
from ..errors import ConfigError, DataError, MissingDependencyError
from .subjects import CEVAL_HARD, CEVAL_SUBJECTS, CMMLU_SUBJECTS

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; `answer` is None in a test split (answers are not published)."""
    subject: str
    id: str
    question: str
    options: tuple
    answer: str | None
    explanation: str = ""
    source: str = ""
    row: int = 0


@dataclass
class Exam:
    """One split of a benchmark with its dev shots and the tables that name and group its subjects."""
    name: str
    split: str
    questions: dict  # subject -> [Question], file order
    dev: dict = field(default_factory=dict)  # subject -> [Question], the few-shot pool, file order
    subjects: dict = field(default_factory=dict)  # subject -> (Chinese name, category)
    hard: tuple = ()

    def shots(self, q: Question) -> list:
        """The dev shots for `q`: its subject's pool in file order, without `q` itself."""
        return without(q, self.dev.get(q.subject, []))

    def all(self) -> list:
        return [q for qs in self.questions.values() for q in qs]

    def __len__(self):
        return sum(len(qs) for qs in self.questions.values())


def without(q: Question, shots) -> list:
    """`shots` less `q` itself (the same row: every field equal), file order kept.

    Scoring the dev split with dev shots would otherwise show a question, solved, before asking
    it; lm-evaluation-harness leaves the scored document out of its shots the same way, and the
    next row takes its place.
    """
    return [s for s in shots if s != q]


# ---- reading files -----------------------------------------------------------------------------

# column names per layout: (id, question, answer, explanation); options are always A-D
LAYOUTS = {"ceval": ("id", "question", "answer", "explanation"),
           "cmmlu": ("", "Question", "Answer", None)}


def _make_question(rec: dict, layout: str, subject: str, source: str, row: int,
                   need_answer: bool) -> Question:
    """Validate one record and turn it into a Question; errors name the file, the row and the field."""
    id_col, q_col, a_col, e_col = LAYOUTS[layout]
    extra = extra_options(rec)
    if extra:
        raise DataError(f"option column(s) {extra} beyond A-D: this scorer handles four options only",
                        source=source, row=row, field=extra[0])
    if None in rec or any(v is None for v in rec.values()):
        raise DataError("wrong number of fields (an unquoted comma or a missing value?)",
                        source=source, row=row)
    text = rec[q_col]
    if not str(text).strip():
        raise DataError("empty question", source=source, row=row, field=q_col)
    answer = rec.get(a_col)
    answer = None if answer is None else str(answer).strip()
    if need_answer or answer:
        if answer not in LETTERS:
            raise DataError(f"answer {answer!r} is not one of A, B, C, D", source=source, row=row,
                            field=a_col)
    return Question(subject=subject, id=str(rec[id_col]).strip(), question=str(text),
                    options=tuple(str(rec[c]) for c in LETTERS), answer=answer or None,
                    explanation=str(rec.get(e_col) or "") if e_col else "", source=source, row=row)


def extra_options(columns) -> list[str]:
    """Option columns after D (E, F, ...): a five-choice exam this scorer must not half-read."""
    return sorted(c for c in columns if isinstance(c, str) and len(c) == 1 and "E" <= c <= "Z")


def read_csv(path: Path, subject: str, layout: str = "ceval", need_answer: bool = True) -> list[Question]:
    """Read one subject file; row numbers in errors count data rows from 1 (the header is row 0).

    `newline=""` keeps the "\\r\\n" inside quoted questions, as pandas and the hub copy do: a
    tokenizer sees those bytes, so dropping them would change scores. "utf-8-sig" also reads the
    byte-order mark Excel writes in front of "CSV UTF-8" files.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            id_col, q_col, a_col, _ = LAYOUTS[layout]
            required = [id_col, q_col, *LETTERS] + ([a_col] if need_answer else [])
            for col in required:
                if col not in header:
                    raise DataError(f"missing column {col!r}; the header is {header}", source=str(path),
                                    row=0, field=col)
            extra = extra_options(header)
            if extra:
                raise DataError(f"option column(s) {extra} beyond A-D: this scorer handles four options "
                                "only", source=str(path), row=0, field=extra[0])
            out = [_make_question(rec, layout, subject, str(path), i, need_answer)
                   for i, rec in enumerate(reader, start=1)]
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 (byte {exc.start}: {exc.object[exc.start:exc.start + 2]!r}; a GBK file?): "
                        "re-save it as UTF-8, e.g. Excel's \"CSV UTF-8\"", source=str(path)) from None
    except csv.Error as exc:  # e.g. a field over the csv module's 131,072-character limit
        raise DataError(f"line {reader.line_num}: {exc}. A field this long is almost always an unclosed quote "
                        "that runs on into the rows after it: close it, or double each quote inside a cell",
                        source=str(path)) from None
    if not out:
        raise DataError("no questions in file", source=str(path))
    return out


def _subject_files(root: Path, split: str) -> tuple[str, dict]:
    """Find `<split>/<subject>_<split>.csv` (C-Eval layout) or `<split>/<subject>.csv` (CMMLU)."""
    folder = Path(root) / split
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise DataError(f"no CSV files in {folder}", source=str(folder))
    suffix = f"_{split}.csv"
    if all(f.name.endswith(suffix) for f in files):
        return "ceval", {f.name[:-len(suffix)]: f for f in files}
    return "cmmlu", {f.stem: f for f in files}


def subject_table(root: Path | None, layout: str) -> dict:
    """subject -> (Chinese name, category): the folder's `subject_mapping.json`, else the known table."""
    path = Path(root) / "subject_mapping.json" if root else None
    if path and path.exists():
        return {s: (v[1], v[2]) for s, v in json.loads(path.read_text(encoding="utf-8")).items()}
    if layout == "cmmlu":
        return {s: (zh, cat) for s, (zh, cat, _) in CMMLU_SUBJECTS.items()}
    return dict(CEVAL_SUBJECTS)


def load_folder(root: Path, split: str = "val", dev_split: str | None = "dev",
                subjects: list | None = None, name: str | None = None) -> Exam:
    """Load a local benchmark folder (C-Eval or CMMLU layout) into an Exam, dev shots included."""
    layout, files = _subject_files(root, split)
    table = subject_table(root, layout)
    subjects = subjects or list(files)
    missing = [s for s in subjects if s not in files]
    if missing:
        raise DataError(f"no {split} file for subjects {missing}", source=str(Path(root) / split))
    unknown = [s for s in subjects if s not in table]
    if unknown:
        raise DataError(f"subjects {unknown} have no Chinese name/category; add a "
                        "subject_mapping.json beside the splits", source=str(root))
    need_answer = split != "test"
    questions = {s: read_csv(files[s], s, layout, need_answer) for s in subjects}
    dev = {}
    if dev_split and (Path(root) / dev_split).is_dir():  # a folder may come without shots
        _, dev_files = _subject_files(root, dev_split)
        dev = {s: read_csv(dev_files[s], s, layout) for s in subjects if s in dev_files}
    hard = tuple(s for s in CEVAL_HARD if s in questions) if layout == "ceval" else ()
    return Exam(name=name or Path(root).name, split=split, questions=questions, dev=dev,
                subjects={s: table[s] for s in subjects}, hard=hard)


HUB = {name: hub.DATASETS[name].id for name in ("ceval", "cmmlu")}


def scored_split(benchmark: str) -> str:
    """The split scored by default: C-Eval's `val` (its test answers are withheld), CMMLU's `test` (no val)."""
    splits = hub.DATASETS[benchmark].splits
    return "val" if "val" in splits else "test"


def load_hub(benchmark: str = "ceval", split: str | None = None, subjects: list | None = None,
             dev_split: str | None = "dev") -> Exam:
    """Load C-Eval (`ceval/ceval-exam`) or CMMLU (`haonan-li/cmmlu`) from the hub, one config per subject.

    Splits come from `zhllm.hub.DATASETS`: C-Eval has dev/val/test, CMMLU dev/test; `split` defaults to
    `scored_split(benchmark)`, and a split the benchmark lacks is refused before anything is downloaded.
    """
    if benchmark not in HUB:
        raise ConfigError(f"unknown benchmark {benchmark!r}; the hub ones are {', '.join(HUB)}")
    split = split or scored_split(benchmark)
    info = hub.DATASETS[benchmark]
    for which in (split, dev_split):
        if which:
            hub.check_split(info, which)
    layout = "cmmlu" if benchmark == "cmmlu" else "ceval"
    table = subject_table(None, layout)
    subjects = subjects or list(table)

    def rows(subject, which):
        data = hub.load_dataset(benchmark, which, config=subject)
        source = f"hf://{HUB[benchmark]}/{subject}/{which}"
        id_col = LAYOUTS[layout][0]
        return [_make_question({**r, id_col: r.get(id_col, i)}, layout, subject, source, i + 1,
                               need_answer=which != "test" or layout == "cmmlu") for i, r in enumerate(data)]

    questions = {s: rows(s, split) for s in subjects}
    dev = {s: rows(s, dev_split) for s in subjects} if dev_split else {}
    hard = tuple(s for s in CEVAL_HARD if s in questions) if layout == "ceval" else ()
    return Exam(name=benchmark, split=split, questions=questions, dev=dev,
                subjects={s: table[s] for s in subjects}, hard=hard)


def reference_dir(name: str) -> Path:
    """The real benchmark files: `../shared/data/<name>` beside the checkout, or $ZHLLM_SHARED_DATA/<name>.

    The files are CC BY-NC-SA and never ship with the kit; callers must handle their absence.
    """
    base = os.environ.get("ZHLLM_SHARED_DATA")
    root = Path(base) if base else Path(__file__).resolve().parents[4] / "shared" / "data"
    path = root / name
    if not path.is_dir():
        raise MissingDependencyError(f"no {name} files at {path}: put the official dev/val CSVs there "
                                     "or set ZHLLM_SHARED_DATA; on the hub use load_hub()")
    return path


# ---- prompt formats ----------------------------------------------------------------------------

OFFICIAL_HEADER = "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"
LMEVAL_HEADER = "以下是中国关于{subject}的单项选择题，请选出其中的正确答案。\n\n"  # no 考试
CMMLU_HEADER = "以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n"
COT_OPENING = "让我们一步一步思考，\n"


@dataclass(frozen=True)
class PromptFormat:
    """Every choice that changes a C-Eval score, named.

    header: first line, `{subject}` = Chinese subject name; shots: dev examples in file order;
    delimiter: text between the answer cue and the scored letter ("" scores "A", " " scores " A");
    cue: what ends a question block; strip_question: strip the question text (lm-eval does);
    cot: shots show the dev explanation and the model generates; chat: go through the chat template.
    """
    name: str
    header: str
    shots: int = 0
    delimiter: str = ""
    cue: str = "答案："
    question_prefix: str = ""
    strip_question: bool = False
    cot: bool = False
    chat: bool = False
    doc: str = ""


FORMATS = {f.name: f for f in (
    PromptFormat("official_5shot", OFFICIAL_HEADER, shots=5,
                 doc="C-Eval paper/README: header with 考试, 5 dev shots in file order, scores 'A'"),
    PromptFormat("official_zero_shot", OFFICIAL_HEADER,
                 doc="C-Eval header, no shots, scores 'A'"),
    PromptFormat("official_cot_5shot", OFFICIAL_HEADER, shots=5, cot=True,
                 doc="C-Eval chain-of-thought: dev explanations as worked answers; generate, then extract"),
    PromptFormat("lmeval_ceval_valid", LMEVAL_HEADER, delimiter=" ", strip_question=True,
                 doc="lm-evaluation-harness ceval-valid: no 考试, question stripped, 0 shots, scores ' A'"),
    PromptFormat("lmeval_ceval_valid_5shot", LMEVAL_HEADER, shots=5, delimiter=" ", strip_question=True,
                 doc="ceval-valid with --num_fewshot 5: shots answered ' A', first 5 dev rows"),
    PromptFormat("lmeval_cmmlu", CMMLU_HEADER, delimiter=" ", strip_question=True,
                 doc="lm-evaluation-harness cmmlu: CMMLU header, question stripped, 0 shots, scores ' A'"),
    PromptFormat("lmeval_cmmlu_5shot", CMMLU_HEADER, shots=5, delimiter=" ", strip_question=True,
                 doc="cmmlu with --num_fewshot 5: shots answered ' A', first 5 dev rows"),
    PromptFormat("cmmlu_5shot", CMMLU_HEADER, shots=5, cue="答案是：", question_prefix="题目：",
                 doc="CMMLU's own prompt: 题目： before the question, 答案是： as the cue"),
    PromptFormat("chat_zero_shot", OFFICIAL_HEADER, chat=True,
                 doc="C-Eval header inside the chat template; the letter follows the generation prompt"),
)}


def get_format(fmt) -> PromptFormat:
    """A PromptFormat from its name (or itself); unknown names list the known ones."""
    if isinstance(fmt, PromptFormat):
        return fmt
    if fmt not in FORMATS:
        raise ConfigError(f"unknown prompt format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt]


def question_block(q: Question, fmt: PromptFormat) -> str:
    """Question, the four options on their own lines, then the answer cue."""
    text = q.question.strip() if fmt.strip_question else q.question
    options = "".join(f"\n{letter}. {option}" for letter, option in zip(LETTERS, q.options))
    return f"{fmt.question_prefix}{text}{options}\n{fmt.cue}"


def shot_answer(q: Question, fmt: PromptFormat) -> str:
    """What follows the cue in a solved shot: the letter, or the explanation then the letter (CoT)."""
    if fmt.cot:
        return f"{COT_OPENING}{q.explanation.strip()}\n所以答案是{q.answer}。"
    return f"{fmt.delimiter}{q.answer}"


def render(q: Question, fmt, subject_name: str, shots=(), tokenizer=None) -> str:
    """The exact text the model reads before its answer (the scored letter is not included)."""
    fmt = get_format(fmt)
    shots = without(q, shots)[:fmt.shots]
    header = fmt.header.format(subject=subject_name)
    if fmt.chat:
        return _render_chat(q, fmt, header, shots, tokenizer)
    solved = "".join(question_block(s, fmt) + shot_answer(s, fmt) + "\n\n" for s in shots)
    tail = COT_OPENING if fmt.cot else ""
    return header + solved + question_block(q, fmt) + tail


def _render_chat(q, fmt, header, shots, tokenizer) -> str:
    """Shots become earlier user/assistant turns; the header opens the first user turn."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"format {fmt.name!r} needs a tokenizer with a chat template")
    messages = []
    for s in shots:
        messages += [{"role": "user", "content": question_block(s, fmt)},
                     {"role": "assistant", "content": s.answer}]
    messages.append({"role": "user", "content": question_block(q, fmt)})
    messages[0] = {**messages[0], "content": header + messages[0]["content"]}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_fitting(q: Question, fmt, subject_name: str, shots, tokenizer, max_tokens: int) -> tuple:
    """Render with as many shots (from the front, file order kept) as fit in `max_tokens`.

    Returns (prompt, shots used). A tiny model's context cannot hold five C-Eval shots; CMMLU's
    script also drops shots, C-Eval's does not — so the count used is reported, never hidden.
    """
    fmt = get_format(fmt)
    shots = without(q, shots)
    n = min(fmt.shots, len(shots))
    while True:
        prompt = render(q, fmt, subject_name, shots[:n], tokenizer)
        if n == 0 or len(tokenizer(prompt)["input_ids"]) + 2 <= max_tokens:
            return prompt, n
        n -= 1


def with_shots(fmt, shots: int) -> PromptFormat:
    """A copy of a format with another number of shots (and a name that says so)."""
    fmt = get_format(fmt)
    return replace(fmt, name=f"{fmt.name}@{shots}shot", shots=shots)

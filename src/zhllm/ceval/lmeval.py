"""Parity with lm-evaluation-harness (`lm-eval`): run its `ceval-valid` or `cmmlu` on local CSVs, compare with ours.

lm-eval's own task files define the prompt; we only point them at a folder instead of the hub. The
model is a tiny random Llama with a byte-level BPE trained on People's Daily, so Chinese is covered
and a run over all 1,346 val questions takes seconds: agreement is about the scoring, not the model.
"""
import csv
import io
import logging
import sys
import time
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import MissingDependencyError, StageError
from .exams import LAYOUTS, _subject_files, get_format, load_folder, subject_table, with_shots
from .scoring import Result, _argmax, score_exam, summarize

READER = "zhllm_text_csv"  # the module, written beside the task files, that lm-eval reads the CSVs with


@dataclass(frozen=True)
class Task:
    """One lm-eval task family as we point it at local files of one layout."""
    folder: str  # lm-eval's tasks/<folder>
    default: str  # its shared config (prompt, choices, target, metrics), pulled in with `include`
    own: str  # a subject's own file there, "{}" = subject
    split: str  # the scored split: its test or validation split, our folder
    format: str  # our PromptFormat configured like it (0 shots; "_5shot" names the 5-shot one)
    prefix: str  # the names of our tasks and group
    version: float  # its metadata version


TASKS = {"ceval": Task("ceval", "_default_ceval_yaml", "ceval-valid_{}.yaml", "val", "lmeval_ceval_valid",
                       "zhllm-ceval-valid", 2.0),
         "cmmlu": Task("cmmlu", "_default_template_yaml", "cmmlu_{}.yaml", "test", "lmeval_cmmlu",
                       "zhllm-cmmlu", 1.0)}


def task_of(data_dir: Path) -> tuple[str, Task]:
    """The layout of a folder (C-Eval or CMMLU, from its dev file names, as `load_folder` tells) and its task."""
    layout, _ = _subject_files(data_dir, "dev")
    return layout, TASKS[layout]


def _lm_eval_tasks_dir(folder: str) -> Path:
    try:
        import lm_eval
    except ImportError as exc:
        raise MissingDependencyError("lm-eval is not installed: `pip install lm-eval` "
                                     "(it is in the kit's dev extra)") from exc
    return Path(lm_eval.__file__).parent / "tasks" / folder


def write_tasks(data_dir: Path, task_dir: Path, subjects: list | None = None) -> str:
    """Write lm-eval task files that reuse its installed ceval-valid or cmmlu configs but read `data_dir`.

    The folder's layout picks the task (`task_of`). Only the data source changes: `include` pulls
    lm-eval's own default config, and each subject keeps lm-eval's own description; the files are
    read by `read_as_text` (through a small module written beside the tasks, which lm-eval's
    `!function` tag imports). Returns the group name to pass as the task.
    """
    data_dir = Path(data_dir).resolve()
    layout, task = task_of(data_dir)
    upstream = _lm_eval_tasks_dir(task.folder)
    task_dir = Path(task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    _, scored = _subject_files(data_dir, task.split)
    _, dev = _subject_files(data_dir, "dev")
    subjects = subjects or sorted(scored)
    names = []
    table = subject_table(data_dir, layout)
    for subject in subjects:
        own = upstream / task.own.format(subject)
        if own.exists():  # lm-eval's own file: its description, untouched
            cfg = yaml.safe_load(own.read_text(encoding="utf-8"))
        else:  # a subject lm-eval does not know (the kit's exam): our format's header, the same rule
            cfg = {"description": get_format(task.format).header.format(subject=table[subject][0])}
        cfg.pop("dataset_name", None)
        cfg.update(
            include=str(upstream / task.default), task=f"{task.prefix}_{subject}", dataset_path="csv",
            dataset_kwargs={"data_files": {task.split: str(scored[subject]), "dev": str(dev[subject])}})
        (task_dir / f"{task.prefix}_{subject}.yaml").write_text(
            yaml.safe_dump(cfg, allow_unicode=True) + f"custom_dataset: !function {READER}.load\n",
            encoding="utf-8")
        names.append(cfg["task"])
    (task_dir / f"{READER}.py").write_text(
        '"""lm-eval reads the exam CSVs through this: every cell as text (see zhllm.ceval.lmeval)."""\n'
        "from zhllm.ceval.lmeval import read_as_text as load  # noqa: F401\n", encoding="utf-8")
    group = {"group": task.prefix, "task": names, "metadata": {"version": task.version},
             "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}]}
    (task_dir / f"_{task.prefix}.yaml").write_text(yaml.safe_dump(group), encoding="utf-8")
    return task.prefix


def read_as_text(data_files: dict, **_):
    """Each split's CSV as a `datasets.Dataset` with every cell a string, "None" and "" included.

    Left to itself the CSV reader types a column of numbers as int or float: a subject whose
    options are all numbers then fails to parse ("(1) (2) (3)" as a double) or renders 3 as 3.0.
    The file's header names the columns, CMMLU's empty first one included (pandas would call it
    "Unnamed: 0"). lm-eval passes its metadata too (ignored here).
    """
    import datasets

    splits = {}
    for split, path in data_files.items():
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
        features = datasets.Features({column: datasets.Value("string") for column in header})
        splits[split] = datasets.load_dataset("csv", data_files=str(path), split="train", features=features,
                                              column_names=header, header=0, keep_default_na=False,
                                              encoding="utf-8-sig")
    return datasets.DatasetDict(splits)


@contextmanager
def _quiet():
    """Hold back lm-eval's per-task log lines and progress bars (hundreds for 52 subjects).

    They go to stderr; it is captured and replayed only if the run fails.
    """
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            yield
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
    finally:
        logger.setLevel(level)


def run_lmeval(model, data_dir: Path, task_dir: Path, subjects: list | None = None,
               batch_size: int = 16, num_fewshot: int | None = None) -> dict:
    """Run lm-eval (its Python API, `hf` backend, CPU) and return per-question results.

    `model` is a model directory (lm-eval loads it in fp32) or an `lm_eval` HFLM built already
    (so a benchmark can leave loading out of the timing). Returns {"results": {(subject, id):
    Result}, "group_acc": lm-eval's question-weighted group accuracy, "seconds": time of the run}.
    """
    group = write_tasks(data_dir, task_dir, subjects)
    id_col, _, answer_col, _ = LAYOUTS[task_of(data_dir)[0]]
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if isinstance(model, (str, Path)):
        model_kwargs = {"model": "hf", "model_args": f"pretrained={model},dtype=float32",
                        "batch_size": batch_size, "device": "cpu"}
    else:
        model_kwargs = {"model": model}
    start = time.perf_counter()
    with _quiet():
        out = simple_evaluate(
            **model_kwargs, tasks=[group], num_fewshot=num_fewshot or None, log_samples=True,
            task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
            bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    seconds = time.perf_counter() - start
    results = {}
    for task, samples in out["samples"].items():
        subject = task[len(group) + 1:]
        for s in samples:
            logprobs = tuple(float(ll) for ll, _ in s["filtered_resps"])
            doc = s["doc"]
            r = Result(subject, str(doc[id_col]), doc[answer_col], "ABCD"[_argmax(logprobs)], logprobs)
            if r.correct != bool(s["acc"]):  # our reading of its log-probs must give its own verdict
                raise StageError(f"lm-eval scored {subject} id {r.id} acc={s['acc']}, we read {r.pred}")
            results[(subject, r.id)] = r
    return {"results": results, "group_acc": out["results"][group]["acc,none"], "seconds": seconds}


def compare(ours: list[Result], theirs: dict) -> dict:
    """How far our results and lm-eval's agree: same prediction share, accuracy both ways, log-prob gap."""
    ours_by_key = {(r.subject, r.id): r for r in ours}
    keys = sorted(set(ours_by_key) & set(theirs))
    same = sum(ours_by_key[k].pred == theirs[k].pred for k in keys)
    gap = max((abs(a - b) for k in keys for a, b in zip(ours_by_key[k].logprobs, theirs[k].logprobs)),
              default=0.0)
    return {"questions": len(keys), "only_ours": len(set(ours_by_key) - set(theirs)),
            "only_lmeval": len(set(theirs) - set(ours_by_key)), "agreement": same / max(len(keys), 1),
            "acc_ours": sum(ours_by_key[k].correct for k in keys) / max(len(keys), 1),
            "acc_lmeval": sum(theirs[k].correct for k in keys) / max(len(keys), 1),
            "max_logprob_gap": gap, "min_margin": min_margin(ours),
            "disagreements": [k for k in keys if ours_by_key[k].pred != theirs[k].pred]}


def min_margin(results: list[Result]) -> float:
    """Smallest gap between the best and second-best answer: how close any question came to a tie.

    Agreement means more when this margin is far above the log-prob differences between scorers.
    """
    return min((sorted(r.logprobs)[-1] - sorted(r.logprobs)[-2] for r in results if r.logprobs),
               default=float("inf"))


def tiny_chinese_model(out_dir: Path, seed: int = 0, vocab_size: int = 2000, paragraphs: int = 2000) -> Path:
    """Save a tiny random Llama + byte-level BPE tokenizer (trained on People's Daily) to `out_dir`.

    The output layer is re-drawn with a large scale so the four letters' log-probabilities differ
    by far more than float rounding: two correct scorers must then pick the same letter.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from ..corpora import people_daily
    from ..modeling import tiny_llama

    out_dir = Path(out_dir)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(people_daily("train")[:paragraphs], trainer)
    # like a Llama tokenizer, prepend <s>: lm-eval and our scorer must then agree on it too
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    model = tiny_llama(len(tokenizer), hidden_size=64, num_layers=2, num_heads=4, max_positions=4096,
                       bos_token_id=0, eos_token_id=1, pad_token_id=2, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape, generator=generator))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def agreement_run(data_dir: Path, work_dir: Path, subjects: list | None = None, batch_size: int = 16,
                  num_fewshot: int = 0) -> dict:
    """Score C-Eval val or CMMLU test with lm-eval and with our matching format on the same tiny model.

    `num_fewshot` 0 is lm-eval's default (`lmeval_ceval_valid`, `lmeval_cmmlu`); 5 compares the
    `_5shot` format. Returns `compare`'s dict plus both timings and group averages.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    work_dir = Path(work_dir)
    model_dir = work_dir / "model"
    if not (model_dir / "config.json").exists():
        tiny_chinese_model(model_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 64-wide matrices: a second thread costs more than it saves, on both sides
    try:
        theirs = run_lmeval(model_dir, data_dir, work_dir / "tasks", subjects, batch_size, num_fewshot)
        task = task_of(data_dir)[1]
        exam = load_folder(data_dir, task.split, subjects=subjects)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        fmt = task.format if not num_fewshot else with_shots(f"{task.format}_5shot", num_fewshot)
        start = time.perf_counter()
        ours = score_exam(model, tokenizer, exam, fmt, batch_size=batch_size)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    report = compare(ours, theirs["results"])
    report.update(seconds_ours=seconds, seconds_lmeval=theirs["seconds"],
                  group_acc_lmeval=theirs["group_acc"],
                  question_weighted_ours=summarize(ours, exam)["average"]["question_weighted"])
    return report

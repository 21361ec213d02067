"""Stage 06 builder: score every stage model that exists on the kit's exam; check parity with lm-eval.

Writes `runs/<profile>/ceval/`: `exam/` (the exam's CSVs), `exam_<stage>.json` (every prediction),
`submission_exam_<stage>.json` (test split, official format), `lmeval_agreement.json` when the real
C-Eval files are present, and `metrics.json`.
"""
import json
import shutil
import time
from pathlib import Path

from .. import artifacts, runtime
from ..errors import MissingDependencyError
from ..profiles import current
from .exams import get_format, load_folder, reference_dir
from .kit_exam import CHANCE, build_exam
from .scoring import answer_ids, prompt_of, score_exam, submission, summarize

MODEL_STAGES = ("base", "cpt", "shipped", "sft", "dpo")


def stage_models(profile: str | None = None) -> list[str]:
    """The models to score, in pipeline order: the stages already built, and the shipped start model."""
    return [s for s in MODEL_STAGES
            if (s == "shipped" and artifacts.start_from(profile) == "shipped")
            or (s != "shipped" and artifacts.is_built(s, profile) and (artifacts.stage_dir(s, profile) / "model").is_dir())]


def model_path(stage: str, profile: str | None = None) -> Path:
    """`runs/<profile>/<stage>/model/`, or the verified shipped checkpoint for `shipped`."""
    if stage == "shipped":
        return artifacts.start_model_dir(profile)
    return artifacts.stage_dir(stage, profile) / "model"


def load_stage_model(stage: str, profile: str | None = None):
    """(model, tokenizer) of a stage (or the shipped start model), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path(stage, profile)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=runtime.dtype_for()).to(runtime.device())
    return model.eval(), AutoTokenizer.from_pretrained(path)


def exam_format(tokenizer) -> str:
    """Chat models answer through their chat template (as trained); base models read the plain prompt."""
    return "chat_zero_shot" if getattr(tokenizer, "chat_template", None) else "official_zero_shot"


def score_stage(stage: str, val, test, profile: str | None = None, batch_size: int = 16) -> dict:
    """Score one stage model on the exam's val and test splits; returns results, summary and format."""
    model, tokenizer = load_stage_model(stage, profile)
    fmt = exam_format(tokenizer)
    results = score_exam(model, tokenizer, val, fmt, batch_size)
    test_results = score_exam(model, tokenizer, test, fmt, batch_size)
    spec = get_format(fmt)
    first = prompt_of(val, val.all()[0], spec, tokenizer)
    ids = answer_ids(tokenizer, first, spec.delimiter, False if spec.chat else None)  # logged with the scores
    return {"format": fmt, "answer_ids": ids, "results": results, "summary": summarize(results, val),
            "submission": submission(test_results)}


def stage_metrics(stage: str, summary: dict) -> dict:
    """`exam_acc_<stage>` with its 95% interval and the per-category averages, flat for metrics.json."""
    avg = summary["average"]
    low, high = avg["ci95_question_weighted"]
    out = {f"exam_acc_{stage}": avg["question_weighted"], f"exam_acc_{stage}_ci_low": low,
           f"exam_acc_{stage}_ci_high": high}
    for cat, group in summary["categories"].items():
        out[f"exam_acc_{stage}_{cat.lower().replace(' ', '_')}"] = group["subject_mean"]
    return out


def real_ceval_metrics(work_dir: Path) -> tuple[dict, dict | None]:
    """Question count of the real C-Eval val split and lm-eval agreement on it: (metrics, report).

    Returns ({}, None) when the real files are absent and no agreement when lm-eval is missing.
    """
    try:
        root = reference_dir("ceval")
    except MissingDependencyError as exc:
        print(f"[ceval] real C-Eval files absent, skipping: {exc}")
        return {}, None
    metrics = {"ceval_val_questions": len(load_folder(root, "val"))}
    try:
        from .lmeval import agreement_run

        report = agreement_run(root, Path(work_dir))
    except MissingDependencyError as exc:
        print(f"[ceval] lm-eval parity skipped: {exc}")
        return metrics, None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    metrics.update(lmeval_agreement=report["agreement"], lmeval_questions=report["questions"],
                   lmeval_acc_ours=report["acc_ours"], lmeval_acc_lmeval=report["acc_lmeval"],
                   lmeval_max_logprob_gap=report["max_logprob_gap"], lmeval_min_margin=report["min_margin"])
    return metrics, report


def save(out_dir: Path, exam_root: Path, scored: dict, metrics: dict, agreement: dict | None = None) -> None:
    """Write the stage layout (module docstring) from the exam folder and each stage's scores."""
    out_dir = Path(out_dir)
    if Path(exam_root).resolve() != (out_dir / "exam").resolve():
        shutil.copytree(exam_root, out_dir / "exam", dirs_exist_ok=True)
    for stage, s in scored.items():
        record = {"format": s["format"], "answer_ids": s["answer_ids"], "summary": s["summary"],
                  "predictions": [vars(r) for r in s["results"]]}
        (out_dir / f"exam_{stage}.json").write_text(
            json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        (out_dir / f"submission_exam_{stage}.json").write_text(
            json.dumps(s["submission"], ensure_ascii=False, indent=1), encoding="utf-8")
    if agreement is not None:
        (out_dir / "lmeval_agreement.json").write_text(json.dumps(agreement, indent=1, default=list))
    artifacts.write_metrics(out_dir, metrics)


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Build stage 06 into `out_dir` (see the module docstring); returns the metrics it wrote."""
    profile = current(profile)
    start = time.time()
    runtime.set_threads()
    artifacts.ensure("base", profile)
    root = build_exam(Path(out_dir) / "exam")
    val, test = load_folder(root, "val"), load_folder(root, "test")
    metrics = {"exam_chance": CHANCE, "exam_questions": len(val)}
    scored = {}
    for stage in stage_models(profile):
        scored[stage] = score_stage(stage, val, test, profile)
        metrics.update(stage_metrics(stage, scored[stage]["summary"]))
        print(f"[ceval] {stage}: exam accuracy {metrics[f'exam_acc_{stage}']:.3f} "
              f"({scored[stage]['format']}, answer token ids {scored[stage]['answer_ids']})")
    real, agreement = real_ceval_metrics(Path(out_dir) / "lmeval")
    metrics.update(real)
    metrics["seconds"] = round(time.time() - start, 1)
    save(out_dir, root, scored, metrics, agreement)
    return metrics

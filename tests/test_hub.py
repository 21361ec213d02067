"""Hub access through `zhllm.hub`: the table, the local mirror, and the colab loaders that go through it."""
import json
import re
from pathlib import Path

import pytest
import yaml

from zhllm import base, ceval, cli, corpora, dpo, hub, sft, tokenizer as tokenizer_expand
from zhllm.errors import ConfigError, DataError, MissingDependencyError, TokenizerError

from . import hub_mirror

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    hub_mirror.write_exams(root)
    hub_mirror.write_texts(root)
    return root


@pytest.fixture
def use_mirror(mirror, monkeypatch):
    monkeypatch.setenv(hub.MIRROR_VAR, str(mirror))
    corpora._HUB_STREAMS.clear()
    yield mirror
    corpora._HUB_STREAMS.clear()


def test_the_table_names_every_hub_id_the_kit_loads():
    ids = set(hub.MODELS) | set(hub.BY_ID)
    named = {cfg[key] for module in (base, tokenizer_expand, sft, dpo) for cfg in module.SETTINGS.values()
             for key in ("hub_model", "bl_base", "hub_dataset") if cfg.get(key)}
    for path in (REPO / "configs/recipes").glob("*/*.yaml"):
        recipe = yaml.safe_load(path.read_text())
        named |= {recipe[k] for k in ("hub_dataset",) if recipe.get(k)}
    named |= {hub.DATASETS[key].id for key in corpora.HUB_TEXT.values()} | set(ceval.HUB.values())
    assert named and named <= ids, f"not in zhllm.hub's table: {named - ids}"
    source = "\n".join(p.read_text() for p in (REPO / "src/zhllm").rglob("*.py") if p.name != "hub.py")
    assert not re.search(r"\bload_dataset\((?!\"(csv|json|parquet)\")", source.replace("hub.load_dataset(", "")), \
        "every hub data set loads through zhllm.hub.load_dataset"


def test_without_a_mirror_ids_pass_through_to_huggingface_hub(monkeypatch):
    monkeypatch.delenv(hub.MIRROR_VAR, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")  # read by huggingface_hub itself
    assert hub.model_path("TinyLlama/TinyLlama_v1.1") == "TinyLlama/TinyLlama_v1.1"


def test_mirror_keeps_the_real_configs_and_splits(use_mirror):
    val = list(hub.load_dataset("ceval", "val", config="logic"))
    assert len(val) == 3 and val[0]["answer"] == "B"
    assert list(hub.load_dataset("haonan-li/cmmlu", "test", config="agronomy"))[0]["Answer"] == "C"
    with pytest.raises(ConfigError, match="no split 'val'; its splits are dev, test"):
        hub.load_dataset("cmmlu", "val", config="agronomy")
    with pytest.raises(ConfigError, match="one config per subject"):
        hub.load_dataset("ceval", "val")
    english = hub.load_dataset("en_text", "validation")
    assert len(english) > 10 and english.column_names == ["text"]


def test_a_config_the_card_does_not_list_is_an_error_not_another_config(tmp_path, monkeypatch):
    folder = tmp_path / "shibing624/DPO-En-Zh-20k-Preference"
    hub_mirror._jsonl(folder / "dpo_zh.jsonl", hub_mirror.review_preferences(3))
    hub_mirror._card(folder / "README.md", "- config_name: zh\n  data_files: dpo_zh.jsonl\n")
    monkeypatch.setenv(hub.MIRROR_VAR, str(tmp_path))
    assert len(hub.load_dataset("dpo_zh", "train")) == 3
    with pytest.raises(ConfigError, match="has configs \\['zh'\\]; ask for one of them, not 'en'"):
        hub.load_dataset("dpo_zh", "train", config="en")


def test_a_repository_missing_from_the_mirror_names_the_folder(use_mirror):
    with pytest.raises(MissingDependencyError, match=re.escape(str(use_mirror / "TinyLlama/TinyLlama_v1.1"))):
        hub.model_path("TinyLlama/TinyLlama_v1.1")
    with pytest.raises(MissingDependencyError, match="shibing624/DPO-En-Zh-20k-Preference"):
        hub.load_dataset("dpo_zh", "train")


def test_sft_hub_rows_load_from_the_mirror(use_mirror):
    rows, report = sft.training.hub_examples("shibing624/alpaca-zh", 4)
    first = hub_mirror.alpaca_rows(1)[0]
    assert report["kept"] == 4 and rows[0]["messages"][-1] == {"role": "assistant", "content": first["output"]}


def test_sft_hub_rows_read_on_past_removed_rows_in_the_mirror(tmp_path, monkeypatch):
    rows = [{"instruction": f"问题{i}", "input": "", "output": f"答{i}"} for i in range(10)]
    rows[2]["output"], rows[5]["instruction"] = "", " "
    hub_mirror.write_alpaca(tmp_path, rows)
    monkeypatch.setenv(hub.MIRROR_VAR, str(tmp_path))
    examples, report = sft.training.hub_examples("shibing624/alpaca-zh", 8)
    assert [e["messages"][-1]["content"] for e in examples] == [f"答{i}" for i in (0, 1, 3, 4, 6, 7, 8, 9)]
    assert report["removed"] == {"empty_turn": 2} and (report["rows"], report["kept"]) == (10, 8)
    with pytest.raises(DataError) as info:
        sft.training.hub_examples("shibing624/alpaca-zh", 9)
    assert info.value.source == "shibing624/alpaca-zh"
    assert "9 valid rows asked for" in str(info.value) and "10 rows, kept 8, removed 2" in str(info.value)
    assert "ask for at most 8" in str(info.value) and "shibing624/alpaca-zh, row 2, field 'output'" in str(info.value)


# ---- stage 01 on a hub base -----------------------------------------------------------------------

def test_a_hub_base_keeps_its_sentencepiece_model_so_stage_01_can_expand_it(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(hub.MIRROR_VAR, str(mirror))
    hub_mirror.write_base_model(mirror)
    model, tokenizer, sp_model = base.load_hub_base("TinyLlama/TinyLlama_v1.1")
    base.save(tmp_path, model, tokenizer, {"params": 1}, sp_model)
    saved = tokenizer_expand.load_tokenizer(tmp_path / "model")
    assert not (tmp_path / "model" / "tokenizer.model").exists()  # transformers 5 writes tokenizer.json only
    with pytest.raises(TokenizerError, match="tokenizer.model was not found"):
        tokenizer_expand.find_sp_model(saved)  # what stage 01 met before the base kept its sp.model
    texts = corpora.people_daily("train")[:2000]
    exp = tokenizer_expand.expand(saved, texts, n_new=100, sp_model=tmp_path / "sp.model", zh_sp_vocab=4000)
    assert exp.kind == "sentencepiece" and len(exp.tokenizer) > len(saved)


# ---- DPO preference pairs -------------------------------------------------------------------------

def _pair(question: str, chosen: str) -> dict:
    return {"system": "", "history": [], "question": question, "response_chosen": chosen,
            "response_rejected": chosen[::-1]}


def test_dpo_pairs_use_the_zh_config_and_a_token_limit_and_count_what_they_remove(mirror, monkeypatch):
    from transformers import AutoTokenizer

    from zhllm import chat, shipped

    monkeypatch.setenv(hub.MIRROR_VAR, str(mirror))
    text = "".join(corpora.people_daily("train")[:200])
    long_but_fits, too_long = text[:1200], text[:4000]  # the old 1,000-character rule dropped both
    hub_mirror.write_preferences(mirror, [_pair("写一段新闻。", long_but_fits), _pair("再写一段。", too_long),
                                          _pair("短的。", "好的。")])
    tokenizer = AutoTokenizer.from_pretrained(shipped.model_dir())
    chat.set_chat_template(tokenizer)
    lengths = [dpo.preferences.token_length(tokenizer, {"prompt": [{"role": "user", "content": "写一段新闻。"}],
                                                        "chosen": [{"role": "assistant", "content": t}],
                                                        "rejected": [{"role": "assistant", "content": t[::-1]}]})
               for t in (long_but_fits, too_long)]
    max_length = (lengths[0] + lengths[1]) // 2
    rows, report = dpo.preferences.hub_pairs("shibing624/DPO-En-Zh-20k-Preference", tokenizer, max_length, limit=2)
    assert [r["chosen"][-1]["content"] for r in rows] == [long_but_fits, "好的。"]  # zh config, not en
    assert report["removed"] == {"too_long": 1} and (report["rows"], report["kept"]) == (3, 2)
    with pytest.raises(DataError, match=r"3 valid rows asked for, but the data ran out: 3 rows, kept 2, removed 1 "
                                        r"\(too_long 1\); ask for at most 2"):
        dpo.preferences.hub_pairs("shibing624/DPO-En-Zh-20k-Preference", tokenizer, max_length, limit=3)


def test_a_hub_set_trains_mixed_with_review_pairs_and_some_of_it_is_held_out(mirror, monkeypatch):
    """colab: the hub set's first valid pairs and the kit's review train pairs, shuffled with the seed; the hub
    pairs read after the training ones are held out as "hub", next to the reviews' held-out pairs."""
    from transformers import AutoTokenizer

    from zhllm import chat, shipped

    monkeypatch.setenv(hub.MIRROR_VAR, str(mirror))
    system = "你是一个乐于助人的助手。"  # marks the hub pairs: the mirror's rows are review pairs too
    hub_mirror.write_preferences(mirror, [{**row, "system": system} for row in hub_mirror.review_preferences(40)])
    tokenizer = AutoTokenizer.from_pretrained(shipped.model_dir())
    chat.set_chat_template(tokenizer)
    cfg = dict(dpo.SETTINGS["colab"], train_pairs=12, heldout_pairs=5, review_pairs=20, max_length=256)
    train, heldout, about = dpo.preferences.pairs_for("colab", cfg, tokenizer)
    read, _ = dpo.preferences.hub_pairs(cfg["hub_dataset"], tokenizer, 256, limit=17)
    reviews = dpo.preferences.review_pairs("train", 20, 0)
    key = lambda row: json.dumps(row, ensure_ascii=False, sort_keys=True)  # noqa: E731
    from_hub = [key(r) for r in train if r["prompt"][0]["content"] == system]
    assert sorted(from_hub) == sorted(map(key, read[:12])) and len(train) == 32
    assert sorted(key(r) for r in train if r["prompt"][0]["role"] == "user") == sorted(map(key, reviews))
    assert train != read[:12] + reviews, "shuffled"
    assert dpo.preferences.pairs_for("colab", cfg, tokenizer)[0] == train, "the same mix every time"
    assert set(heldout) == {"reviews", "hub"} and heldout["hub"] == read[12:]
    assert not set(map(key, heldout["hub"])) & set(from_hub)
    assert heldout["reviews"] == dpo.preferences.review_pairs("heldout", 5, 0)
    assert "train: 12 hub pairs + 20 review pairs, shuffled; held out: 5 hub pairs" in about
    assert about.endswith("+ 5 review pairs (held-out split)")


# ---- hub text: read once, as many characters as asked ----------------------------------------------

def test_hub_text_is_read_once_per_set_and_split(use_mirror, monkeypatch):
    calls = []
    real = hub.load_dataset
    monkeypatch.setattr(hub, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = corpora.chinese_text("train", "colab", max_chars=50_000)
    for _ in range(5):
        assert corpora.chinese_text("train", "colab", max_chars=50_000) == first
    corpora.chinese_text("train", "colab", limit=10)
    assert len(calls) == 1


def test_the_document_cap_follows_the_characters_asked_for(mirror, monkeypatch, tmp_path, capsys):
    docs = [f"第{i}篇。" + "中文文本" * 14 for i in range(30_000)]  # ~62 characters each
    hub_mirror.write_texts(tmp_path, docs)
    monkeypatch.setenv(hub.MIRROR_VAR, str(tmp_path))
    corpora._HUB_STREAMS.clear()
    asked = 1_500_000  # more than the first 20,000 documents hold
    got = corpora.chinese_text("train", "colab", max_chars=asked)
    assert len(got) > 20_000 and asked - 70 < sum(map(len, got)) <= asked
    assert "ran out" not in capsys.readouterr().out
    everything = corpora.chinese_text("train", "colab", max_chars=10**8)
    assert "ran out" in capsys.readouterr().out and len(everything) < len(docs)
    corpora._HUB_STREAMS.clear()


# ---- C-Eval / CMMLU splits ------------------------------------------------------------------------------

def test_cmmlu_scores_test_with_dev_shots_and_refuses_val(use_mirror):
    exam = ceval.load_hub("cmmlu", subjects=["agronomy"])
    assert exam.split == "test" and exam.questions["agronomy"][0].answer == "C" and exam.dev["agronomy"]
    assert ceval.load_hub("ceval", subjects=["logic"]).split == "val"
    with pytest.raises(ConfigError, match="its splits are dev, test"):
        ceval.load_hub("cmmlu", "val", subjects=["agronomy"])


def test_eval_ceval_hub_cmmlu_runs_on_its_own_splits(use_mirror, capsys):
    from zhllm import shipped

    assert cli.main(["eval", "ceval", "--hub", "cmmlu", "--split", "val", "--model", "no/such-model"]) == 2
    assert "haonan-li/cmmlu has no split 'val'" in capsys.readouterr().err
    assert cli.main(["eval", "ceval", "--hub", "cmmlu", "--model", str(shipped.model_dir()), "--limit", "1",
                     "--format", "cmmlu_5shot" if "cmmlu_5shot" in ceval.FORMATS else "official_zero_shot"]) == 0
    assert "on cmmlu test" in capsys.readouterr().out



def test_the_test_mirror_holds_every_repository_in_the_table(tmp_path):
    """`make test-colab` runs the colab notebooks against this mirror: a new hub id needs its stand-in."""
    root = hub_mirror.build(tmp_path, real=False)
    missing = [i for i in [*hub.MODELS, *hub.BY_ID] if not (root / i).is_dir()]
    assert not missing, f"add stand-ins for {missing} to tests/hub_mirror.py"
    assert (root / "TinyLlama/TinyLlama_v1.1/tokenizer.model").is_file(), "TinyLlama's repo keeps its tokenizer.model"

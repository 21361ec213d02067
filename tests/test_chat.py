"""Chat template and labels: pad != eos, one template for training and inference, loss only on replies + EOS,
packing without attention leaking across examples.

The tokenizers are built here, not taken from stage 00: a Llama-style SentencePiece BPE (byte fallback), the
same model behind stage 00's pipeline (always prepend "▁", split on "▁"), and a byte-level BPE (the hub's
other family).
"""
import io

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer, PreTrainedTokenizerFast

from zhllm import chat, corpora
from zhllm.errors import DataError, TokenizerError
from zhllm.sft import tasks as sft_data

SYSTEM = {"role": "system", "content": "你是一个乐于助人的中文助手。"}
CONVERSATIONS = [
    [{"role": "user", "content": "判断下面评论的情感是正面还是负面。\n质量很好，物流也快。"},
     {"role": "assistant", "content": "正面"}],
    [SYSTEM, {"role": "user", "content": "请对下面的句子分词。\n新华社北京１月１日电"},
     {"role": "assistant", "content": "新华社/北京/１月/１日/电"},
     {"role": "user", "content": "再找出这句话中的人名、地名和机构名。"},
     {"role": "assistant", "content": "人名：无；地名：北京；机构名：新华社"}],
    [{"role": "user", "content": "Write one line of English. 然后翻译。"},
     {"role": "assistant", "content": "The answer is 42. 答案是４２。"}],
]


def _lines():
    english = [line for doc in corpora.english("train")[:60] for line in doc.splitlines() if len(line) > 20]
    return corpora.people_daily("train")[:300] + english[:300]


def _sentencepiece(tmp_path_factory, stage00_pipeline: bool):
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_lines()), model_writer=model, vocab_size=2000, model_type="bpe",
        byte_fallback=True, character_coverage=0.98, split_digits=True, normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, num_threads=1, minloglevel=2)
    folder = tmp_path_factory.mktemp("sp")
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    # transformers 5 converts a SentencePiece model only through from_pretrained; LlamaTokenizer(vocab_file=)
    # silently gives an empty vocabulary
    tok = LlamaTokenizer.from_pretrained(folder, pad_token="<pad>")
    if stage00_pipeline:
        backend = tok._tokenizer
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                      unk_token="<unk>", pad_token="<pad>")
    return tok


def _byte_level():
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(_lines(), trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


@pytest.fixture(scope="module", params=["sentencepiece", "stage00_pipeline", "byte_level"])
def tok(request, tmp_path_factory):
    tokenizer = (_byte_level() if request.param == "byte_level"
                 else _sentencepiece(tmp_path_factory, request.param == "stage00_pipeline"))
    assert chat.set_chat_template(tokenizer) == "kit"
    return tokenizer


@pytest.fixture(scope="module")
def sp_tok(tmp_path_factory):
    tokenizer = _sentencepiece(tmp_path_factory, stage00_pipeline=False)
    chat.set_chat_template(tokenizer)
    return tokenizer


# ---- pad != eos ------------------------------------------------------------------------------------------

def test_pad_differs_from_eos(tok):
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_ensure_pad_token_repairs_pad_equal_to_eos(sp_tok):
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=sp_tok.backend_tokenizer, bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>", pad_token="</s>")
    with pytest.raises(TokenizerError):
        chat.collator(tokenizer)
    assert chat.ensure_pad_token(tokenizer) is False  # reuses <unk>: no new embedding row
    assert tokenizer.pad_token == "<unk>"
    no_unk = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0, "</s>": 1},
                                                                           merges=[])),
                                     eos_token="</s>", pad_token="</s>")
    assert chat.ensure_pad_token(no_unk) is True  # a new token: the caller must resize embeddings
    assert no_unk.pad_token_id not in (None, no_unk.eos_token_id)


# ---- one template for training and inference --------------------------------------------------------------

@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_training_render_is_inference_render_plus_reply_and_eos(tok, messages):
    train = chat.render(tok, messages)
    infer = chat.render(tok, messages[:-1], add_generation_prompt=True)
    assert train == infer + messages[-1]["content"] + tok.eos_token
    ids = chat.build_labels(tok, messages)["input_ids"]
    prompt = chat.encode_prompt(tok, messages[:-1])
    assert ids[:len(prompt)] == prompt  # the very tokens the model will see at inference
    assert prompt.count(tok.bos_token_id) == 1 and prompt[0] == tok.bos_token_id  # no double BOS


def test_kit_template_is_kept_and_hub_templates_are_respected(sp_tok):
    assert chat.set_chat_template(sp_tok) == "own"  # already has the kit's: left alone
    assert sp_tok.chat_template == chat.KIT_CHAT_TEMPLATE


# ---- labels: -100 exactly on non-assistant tokens, EOS kept -----------------------------------------------

def _expected_mask(tok, messages):
    """An independent mask: HF's `{% generation %}` character spans mapped to tokens."""
    out = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    return out["input_ids"], out["assistant_masks"]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_labels_are_exactly_the_replies_and_their_eos(tok, messages):
    row = chat.build_labels(tok, messages)
    ids, labels = row["input_ids"], row["labels"]
    hf_ids, hf_mask = _expected_mask(tok, messages)
    assert ids == hf_ids
    assert [label != -100 for label in labels] == [bool(m) for m in hf_mask]
    assert all(label in (-100, i) for label, i in zip(labels, ids))
    replies = [m for m in messages if m["role"] == "assistant"]
    assert sum(label == tok.eos_token_id for label in labels) == len(replies)  # one EOS closes each reply
    assert labels[-1] == tok.eos_token_id  # the final EOS is trained: the model learns to stop
    trained = tok.decode([label for label in labels if label != -100])
    assert trained == "".join(m["content"] + tok.eos_token for m in replies)


def test_labels_on_the_kits_own_instruction_data(sp_tok):
    examples, _ = sft_data.build("heldout", sizes={t: 4 for t in sft_data.TASKS})
    for ex in examples:
        row = chat.build_labels(sp_tok, ex["messages"], max_length=512)
        _, mask = _expected_mask(sp_tok, ex["messages"])
        assert [label != -100 for label in row["labels"]] == [bool(m) for m in mask]


def test_a_control_token_typed_in_a_message_is_text(sp_tok):
    messages = [{"role": "user", "content": "这里有个假的结束符</s>，别当真"},
                {"role": "assistant", "content": "好的"}]
    ids = chat.build_labels(sp_tok, messages)["input_ids"]
    assert ids.count(sp_tok.eos_token_id) == 1


def test_too_long_conversations_are_dropped_and_counted_never_cut(sp_tok):
    lengths = [len(chat.build_labels(sp_tok, m)["input_ids"]) for m in CONVERSATIONS]
    limit = sorted(lengths)[1]
    with pytest.raises(DataError):
        chat.build_labels(sp_tok, CONVERSATIONS[lengths.index(max(lengths))], max_length=limit)
    rows, report = chat.encode_conversations(sp_tok, CONVERSATIONS, max_length=limit)
    assert report["kept"] == len(rows) == sum(n <= limit for n in lengths)
    assert report["removed"] == {"too_long": sum(n > limit for n in lengths)}
    assert all(row["labels"][-1] == sp_tok.eos_token_id for row in rows)


def test_show_labels_marks_the_trained_text(sp_tok):
    row = chat.build_labels(sp_tok, CONVERSATIONS[0])
    shown = chat.show_labels(sp_tok, row["input_ids"], row["labels"])
    assert shown.endswith("⟦正面</s>⟧") and shown.count("⟦") == 1


# ---- templates that would break training are refused --------------------------------------------------

CHATML_EOS_THEN_NEWLINE = (
    "{% for m in messages %}{{ '<s>' + m['role'] + '\n' + m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}")
NO_EOS = ("{% for m in messages %}{{ m['role'] + ':\n' + m['content'] + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ 'assistant:\n' }}{% endif %}")
SPACE_BEFORE_REPLY = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
                      "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}{% endfor %}"
                      "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


def test_tokens_after_the_eos_of_a_turn_are_not_trained(sp_tok):
    messages = CONVERSATIONS[0]
    original = sp_tok.chat_template
    try:
        sp_tok.chat_template = CHATML_EOS_THEN_NEWLINE
        row = chat.build_labels(sp_tok, messages)
    finally:
        sp_tok.chat_template = original
    last = max(i for i, label in enumerate(row["labels"]) if label != -100)
    assert row["labels"][last] == sp_tok.eos_token_id and last < len(row["input_ids"]) - 1


@pytest.mark.parametrize("template,why", [(NO_EOS, "EOS"), (SPACE_BEFORE_REPLY, "prefix")])
def test_broken_templates_raise(sp_tok, template, why):
    messages = [{"role": "user", "content": "Say it"}, {"role": "assistant", "content": "the answer"}]
    original = sp_tok.chat_template
    try:
        sp_tok.chat_template = template
        with pytest.raises(TokenizerError, match=why):
            chat.build_labels(sp_tok, messages)
    finally:
        sp_tok.chat_template = original


# ---- packing: the collator keeps examples apart --------------------------------------------------------

def _tiny_llama(vocab_size: int, attn: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3, attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def _segments(packed) -> list[tuple[int, int, int]]:
    """(row, start, length) of each example in a packed batch, from where its position ids restart."""
    out = []
    for r, positions in enumerate(packed["position_ids"].tolist()):
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        out += [(r, a, b - a) for a, b in zip(starts, starts[1:])]
    return out


def test_pack_rows_keeps_every_token_once_and_examples_whole():
    lengths = [5, 9, 3, 4, 2, 8]
    examples = [{"input_ids": [10 * i + k for k in range(n)], "labels": [-100] + [10 * i + k for k in range(1, n)]}
                for i, n in enumerate(lengths)]
    packed = chat.pack_rows(examples, pad_token_id=3)
    assert packed["input_ids"].shape == (4, 9)  # as wide as the longest; first fit: [5 3] [9] [4 2] [8]
    ids, labels = packed["input_ids"].tolist(), packed["labels"].tolist()
    assert ids[0] == examples[0]["input_ids"] + examples[2]["input_ids"] + [3]
    assert ids[1] == examples[1]["input_ids"]
    assert ids[2] == examples[3]["input_ids"] + examples[4]["input_ids"] + [3, 3, 3]
    assert ids[3] == examples[5]["input_ids"] + [3]
    assert labels[2][-3:] == [-100] * 3 and labels[0][5] == -100  # padding and each example's first label
    kept = [t for row, lab in zip(ids, labels) for t, lb in zip(row, lab) if lb != -100]
    assert sorted(kept) == sorted(t for e in examples for t in e["labels"] if t != -100)
    assert packed["position_ids"].tolist()[2] == [0, 1, 2, 3, 0, 1, 2, 3, 4]  # padding follows the last example


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(sp_tok, attn):
    rows = [chat.build_labels(sp_tok, m) for m in CONVERSATIONS]
    model = _tiny_llama(len(sp_tok), attn)
    packed = chat.collator(sp_tok, packing=True)(rows)
    assert "attention_mask" not in packed
    segments = _segments(packed)
    assert any(r == s for (r, *_), (s, *_) in zip(segments, segments[1:])), "two examples share a row"
    with torch.no_grad():
        alone = {tuple(r["input_ids"]): model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows}
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                         use_cache=False).logits
        # the same batch with positions running on across examples: attention crosses the boundaries
        leaky = model(input_ids=packed["input_ids"], use_cache=False).logits
    found, crossed = 0, False
    for r, start, n in segments:  # the last segment of a row runs on into the row's padding
        segment = packed["input_ids"][r, start:start + n].tolist()
        [key] = [k for k in alone if list(k) == segment[:len(k)]]
        found += 1
        torch.testing.assert_close(together[r, start:start + len(key)], alone[key], atol=1e-5, rtol=1e-4)
        crossed |= start > 0 and not torch.allclose(leaky[r, start:start + len(key)], alone[key], atol=1e-3)
    assert found == len(rows) and crossed  # every example found alone-equal; the leaky check can fail


def test_packing_relies_on_use_cache_false(sp_tok):
    """Why SFTTrainer passes use_cache=False: with a KV cache, transformers 5 skips the block-diagonal mask
    it derives from position_ids, and packed examples attend to each other (sdpa and eager alike)."""
    rows = [chat.build_labels(sp_tok, m) for m in CONVERSATIONS[:2]]
    model = _tiny_llama(len(sp_tok), "sdpa")
    ids = torch.tensor([[t for r in rows for t in r["input_ids"]]])  # the two examples in one line
    positions = torch.tensor([[p for r in rows for p in range(len(r["input_ids"]))]])
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows])
        assert torch.allclose(model(input_ids=ids, position_ids=positions, use_cache=False).logits[0], alone,
                              atol=1e-5)
        cached = model(input_ids=ids, position_ids=positions, use_cache=True).logits[0]
    assert not torch.allclose(cached, alone, atol=1e-3), (
        "transformers now keeps packed examples apart even with a cache: update chat.collator's docstring")


def test_padded_batches_keep_labels_and_mask_pads(sp_tok):
    rows = [chat.build_labels(sp_tok, m) for m in CONVERSATIONS]
    batch = chat.collator(sp_tok, packing=False)(rows)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["labels"][i, :n].tolist() == row["labels"]
        assert (batch["labels"][i, n:] == -100).all() and (batch["attention_mask"][i, n:] == 0).all()
        assert (batch["input_ids"][i, n:] == sp_tok.pad_token_id).all()


# ---- end to end in miniature: trained on a reply, the model says it and stops ------------------------------

def test_a_model_trained_on_these_labels_answers_and_stops(sp_tok):
    model = _tiny_llama(len(sp_tok), "sdpa").train()
    rows = [chat.build_labels(sp_tok, m) for m in CONVERSATIONS[:1]] * 4
    batch = chat.collator(sp_tok)(rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    [(reply, stopped)] = chat.generate_replies(model, sp_tok, [CONVERSATIONS[0][:1]], max_new_tokens=8)
    assert (reply, stopped) == ("正面", True)

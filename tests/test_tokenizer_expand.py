"""Stage 01 vocabulary expansion: both paths on tokenizers the tests train themselves (no stage 00)."""
import numpy as np
import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from zhllm import corpora
from zhllm.tokenizer import bytelevel as bytelevel_expand, sentencepiece as sp_expand
from zhllm.tokenizer import expansion as tx
from zhllm.errors import TokenizerError

# Llama-2's SentencePiece settings (as stage 00 uses them), whitespace-only pieces included: the harder case
SP_SETTINGS = dict(model_type="bpe", byte_fallback=True, split_digits=True, normalization_rule_name="identity",
                   add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
                   unk_id=0, bos_id=1, eos_id=2, pad_id=3, unk_piece="<unk>", bos_piece="<s>",
                   eos_piece="</s>", pad_piece="<pad>", character_coverage=1.0, num_threads=1, minloglevel=2)


@pytest.fixture(scope="module")
def held_out():
    zh = corpora.people_daily("heldout")[:400] + ["中文 English 混合 123", "１９９８年", " 哈哈哈哈哈"]
    en = tx.english_lines(corpora.english("heldout")) + ["  two spaces", "trailing ", "a  b   c", "\tTab", "😀 ß"]
    return zh, en


@pytest.fixture(scope="module")
def sp_base(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("sp") / "base"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(tx.english_lines(corpora.english("train"))),
                                   model_prefix=str(prefix), vocab_size=1000, **SP_SETTINGS)
    return f"{prefix}.model"


@pytest.fixture(scope="module")
def sp_expansion(sp_base, tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("hf_base")
    sp_expand.hf_tokenizer(sp_expand.load_proto(sp_base)).save_pretrained(base_dir)
    return tx.expand(str(base_dir), corpora.people_daily("train")[:3000], 4000, sp_model=sp_base,
                     zh_sp_vocab=5000)


@pytest.fixture(scope="module")
def bl_base():
    return bytelevel_expand.train_byte_level_bpe(tx.english_lines(corpora.english("train")), 600)


@pytest.fixture(scope="module")
def bl_expansion(bl_base):
    return tx.expand(bl_base, corpora.people_daily("train")[:800], 300)


# ---- SentencePiece path -------------------------------------------------------------------------

def test_sp_invariants(sp_expansion, held_out):
    zh, en = held_out
    exp = sp_expansion
    m = tx.tokenizer_metrics(exp, zh, en)
    assert exp.kind == "sentencepiece"
    assert m["vocab_size"] % 64 == 0 and m["vocab_size"] == len(exp.sp_model.pieces)
    assert m["sp_hf_agreement"] == 1.0 and m["base_sp_hf_agreement"] == 1.0
    assert m["en_lines_unchanged"] == 1.0
    assert m["roundtrip_rate"] == 1.0 and m["base_ids_unchanged"] == 1.0
    assert m["dead_new_tokens"] == 0
    assert m["zh_token_reduction"] >= 0.5
    assert m["byte_fallback_share_after"] < m["byte_fallback_share_before"]


def test_sp_base_ids_and_scores(sp_expansion):
    base, new = sp_expansion.base_sp_model, sp_expansion.sp_model
    n = len(base.pieces)
    assert [(p.piece, p.score, p.type) for p in new.pieces[:n]] == [(p.piece, p.score, p.type) for p in base.pieces]
    scores = np.array([p.score for p in new.pieces[n:]], dtype=np.float32)
    lowest = min(p.score for p in base.pieces if p.type == sp_expand.NORMAL)
    assert (scores < lowest).all() and (np.diff(scores) < 0).all()  # distinct, below the base, in float32
    vocab = {p.piece for p in new.pieces}
    for p in new.pieces[n:]:
        assert sp_expand.is_cjk_piece(p.piece)
        assert len(p.piece) == 1 or sp_expand.splits(p.piece, vocab)


def test_sp_saved_files_agree(sp_expansion, held_out, tmp_path):
    zh, en = held_out
    sp_expand.save_proto(sp_expansion.sp_model, tmp_path / "sp.model")
    sp_expansion.tokenizer.save_pretrained(tmp_path / "hf")
    reloaded = tx.load_tokenizer(tmp_path / "hf")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    lines = zh + en
    assert tx.same_ids_rate(sp.encode(lines), tx.encode(reloaded, lines)) == 1.0
    assert reloaded("中国")["input_ids"][0] == reloaded.bos_token_id  # BOS kept, as the base has it


def test_anchor_style_zero_scores_leave_dead_pieces(sp_base):
    """Appending every Chinese-model piece with score 0 (the anchors' way) leaves dead pieces.

    With ties, the leftmost pair wins: in "▁中国" the piece ▁中 grabs 中 first, so 中国 never forms.
    """
    base = sp_expand.load_proto(sp_base)
    tied = sp_expand.append_pieces(base, [])
    for piece in ["中", "国", "▁中", "中国"]:
        tied.pieces.append(sp_expand.Piece(piece=piece, score=0.0, type=sp_expand.NORMAL))
    assert sp_expand.dead_pieces(tied, ["中国"]) == ["中国"]
    ours = sp_expand.append_pieces(base, ["中", "国", "中国"])  # ▁中 is not pure CJK: never added
    assert sp_expand.dead_pieces(ours, ["中国"]) == []


def test_scores_stay_distinct_below_sentinel_scores(sp_base):
    """Llama-2 scores whitespace pieces (▁▁) -1e9, where float32 values are 64 apart: no ties there."""
    base = sp_expand.load_proto(sp_base)
    base.pieces[-1].score = -1e9
    pieces = [chr(0x4E00 + i) for i in range(3000)]
    scores = np.array([p.score for p in sp_expand.append_pieces(base, pieces).pieces[-3000:]], dtype=np.float32)
    assert (np.diff(scores) < 0).all() and scores[0] < np.float32(-1e9)
    assert np.diff(sp_expand.scores_below(-5.0, 3)).tolist() == [-1.0, -1.0]  # plain steps of 1 where exact


def test_no_room_for_scores_is_refused():
    with pytest.raises(TokenizerError, match="float32"):
        sp_expand.scores_below(float(np.finfo(np.float32).min), 2)


def test_order_conflicts():
    vocab = {"哈", "哈哈", "人", "人人", "中", "国", "中国"}
    assert sp_expand.has_order_conflict("哈哈哈", vocab)  # 哈哈+哈 vs 哈+哈哈 can compete
    assert not sp_expand.has_order_conflict("人人", vocab)  # one split only
    assert not sp_expand.has_order_conflict("中国人", vocab)  # no border


def test_cjk_pieces():
    assert sp_expand.is_cjk_piece("中国") and sp_expand.is_cjk_piece("，") and sp_expand.is_cjk_piece("１")
    assert not sp_expand.is_cjk_piece("▁中国") and not sp_expand.is_cjk_piece("中a")
    assert not sp_expand.is_cjk_piece("１９")  # digits stay split, as in the base


# ---- byte-level path ----------------------------------------------------------------------------

def test_byte_level_invariants(bl_base, bl_expansion, held_out):
    zh, en = held_out
    m = tx.tokenizer_metrics(bl_expansion, zh, en)
    assert bl_expansion.kind == "byte_level"
    assert m["vocab_size"] % 64 == 0
    assert m["en_lines_unchanged"] == 1.0
    assert m["roundtrip_rate"] == 1.0 and m["base_ids_unchanged"] == 1.0
    assert m["dead_new_tokens"] == 0
    assert m["zh_chars_per_token_after"] > 1.5 * m["zh_chars_per_token_before"]


def test_byte_level_ids_and_merges(bl_base, bl_expansion):
    import json

    old = json.loads(bl_base.backend_tokenizer.to_str())
    new = json.loads(bl_expansion.tokenizer.backend_tokenizer.to_str())
    assert new["model"]["merges"][:len(old["model"]["merges"])] == old["model"]["merges"]  # appended
    old_vocab, new_vocab = bl_base.get_vocab(), bl_expansion.tokenizer.get_vocab()
    assert all(new_vocab[t] == i for t, i in old_vocab.items())
    first_new = max(old_vocab.values()) + 1  # after every existing id, special tokens included
    assert sorted(i for t, i in new_vocab.items() if t not in old_vocab) == list(range(first_new, len(new_vocab)))
    assert len(set(new_vocab)) == len(new_vocab) == len(bl_expansion.tokenizer)  # no duplicate strings
    assert all(bytelevel_expand.is_char_start(t) for t in bl_expansion.new_tokens)


def test_byte_level_keeps_special_ids_outside_the_model_vocab(bl_base, held_out, tmp_path):
    """Llama-3 and Qwen keep special tokens out of the BPE vocabulary, after its last id: they must keep their ids."""
    import copy

    zh, en = held_out
    base = copy.deepcopy(bl_base)
    base.add_special_tokens({"bos_token": "<|begin_of_text|>", "additional_special_tokens": ["<|im_end|>"]})
    bos = base.bos_token_id
    exp = tx.expand(base, corpora.people_daily("train")[:300], 100)
    assert exp.tokenizer.bos_token_id == bos and exp.tokenizer.convert_ids_to_tokens(bos) == "<|begin_of_text|>"
    m = tx.tokenizer_metrics(exp, zh, en)
    assert m["base_ids_unchanged"] == 1.0 and m["roundtrip_rate"] == 1.0
    exp.tokenizer.save_pretrained(tmp_path)
    assert tx.base_ids_unchanged(base, tx.load_tokenizer(tmp_path)) == 1.0
    assert min(exp.tokenizer.convert_tokens_to_ids(exp.new_tokens)) > max(base.get_vocab().values())


def test_base_ids_unchanged_sees_a_moved_token(bl_base):
    import copy

    moved = copy.deepcopy(bl_base)
    moved.add_special_tokens({"bos_token": "<s>"})
    base = copy.deepcopy(bl_base)
    base.add_special_tokens({"bos_token": "<other>"})  # same id, another string
    assert tx.base_ids_unchanged(bl_base, moved) == 1.0  # tokens only added
    assert tx.base_ids_unchanged(base, moved) == 1 - 1 / len(base)


def test_byte_level_saved_tokenizer_reloads(bl_expansion, held_out, tmp_path):
    zh, en = held_out
    bl_expansion.tokenizer.save_pretrained(tmp_path)
    reloaded = tx.load_tokenizer(tmp_path)
    assert tx.encode(reloaded, zh + en) == tx.encode(bl_expansion.tokenizer, zh + en)
    assert reloaded.eos_token == bl_expansion.tokenizer.eos_token


def test_add_tokens_is_the_wrong_tool(bl_expansion, held_out):
    """add_tokens bypasses pre-tokenisation and merges: English changes and 中国 gets a second id."""
    import copy

    _, en = held_out
    tok = copy.deepcopy(bl_expansion.tokenizer)
    tok.add_tokens(["in", "中国"])
    assert tx.same_ids_rate(tx.encode(bl_expansion.tokenizer, en), tx.encode(tok, en)) < 1.0
    merged = bl_expansion.tokenizer.encode("中国", add_special_tokens=False)
    assert len(merged) == 1 and tok.convert_tokens_to_ids("中国") != merged[0]


def test_learn_merges_counts_pairs_right():
    segments = {("a", "b", "a", "b"): 3, ("a", "b", "x"): 1}
    merges = bytelevel_expand.learn_merges(segments, 3, vocab={"a", "b", "x"})
    assert merges[:2] == [("a", "b"), ("ab", "ab")]
    word, changes = bytelevel_expand.merge_pair(["x", "x", "x", "x"], "x", "x")
    assert word == ["xx", "xx"]
    net = {}
    for pair, d in changes:
        net[pair] = net.get(pair, 0) + d
    assert {p: d for p, d in net.items() if d} == {("x", "x"): -3, ("xx", "xx"): 1}


# ---- dispatch -----------------------------------------------------------------------------------

def test_unsupported_tokenizer_gets_a_clear_error():
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(TokenizerError, match="WordPiece"):
        tx.kind(PreTrainedTokenizerFast(tokenizer_object=wordpiece))


def test_sentencepiece_style_without_model_file(sp_base):
    tok = sp_expand.hf_tokenizer(sp_expand.load_proto(sp_base))
    assert tx.kind(tok) == "sentencepiece"
    with pytest.raises(TokenizerError, match="tokenizer.model"):
        tx.expand(tok, ["中国"], 64)

"""Embedding resize + initialisation for an expanded tokenizer, on a tiny random Llama."""
import copy

import pytest
import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from zhllm import corpora
from zhllm.tokenizer import embeddings, sentencepiece as sp_expand
from zhllm.tokenizer import expansion as tx
from zhllm.errors import TokenizerError

NEW_PIECES = ["中国", "人民", "中国人", "中", "国", "人", "民", "，", "。"]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("sp") / "base"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(tx.english_lines(corpora.english("train"))), model_prefix=str(prefix),
        vocab_size=500, model_type="bpe", byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, pad_id=3, num_threads=1,
        minloglevel=2)
    base = sp_expand.load_proto(f"{prefix}.model")
    old = sp_expand.hf_tokenizer(base)
    new = sp_expand.hf_tokenizer(sp_expand.append_pieces(base, NEW_PIECES), like=old)
    return old, new


def tiny_model(vocab: int, tied: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    return LlamaForCausalLM(config).eval()


def test_mean_init_untied(tokenizers):
    old, new = tokenizers
    model = tiny_model(len(old))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    info = embeddings.resize(model, old, new)
    rows = -(-len(new) // 64) * 64
    emb_in, emb_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert info["rows"] == rows == emb_in.shape[0] == emb_out.shape[0] == model.config.vocab_size
    assert torch.equal(emb_in[:len(old)], old_in) and torch.equal(emb_out[:len(old)], old_out)
    i = new.convert_tokens_to_ids("中国")
    byte_ids = old.convert_tokens_to_ids([f"<0x{b:02X}>" for b in "中国".encode()])
    assert embeddings.old_tokenisation(old, new, i) == byte_ids
    assert torch.allclose(emb_in[i], old_in[byte_ids].mean(0))
    assert torch.allclose(emb_out[len(old):], old_out.mean(0).expand(rows - len(old), -1))


def test_tied_weights_stay_tied(tokenizers):
    old, new = tokenizers
    model = tiny_model(len(old), tied=True)
    old_in = model.get_input_embeddings().weight.detach().clone()
    info = embeddings.resize(model, old, new)
    assert info["tied"] and embeddings.is_tied(model)
    i = new.convert_tokens_to_ids("人民")
    ids = embeddings.old_tokenisation(old, new, i)
    assert torch.allclose(model.get_output_embeddings().weight[i], old_in[ids].mean(0))


def test_padding_rows_are_never_generated(tokenizers):
    old, new = tokenizers
    model = tiny_model(len(old))
    info = embeddings.resize(model, old, new)
    padding = list(range(len(new), info["rows"]))
    assert padding and model.generation_config.suppress_tokens == padding
    ids = new("the", return_tensors="pt")["input_ids"]
    with torch.no_grad():  # make the padding rows by far the most likely next tokens
        hidden = model(ids, output_hidden_states=True).hidden_states[-1][0, -1]
        model.get_output_embeddings().weight[padding] = 100 * hidden / hidden.norm()
        assert model(ids).logits[0, -1].argmax().item() in padding
    for sample in (False, True):
        out = model.generate(ids, max_new_tokens=8, do_sample=sample, pad_token_id=new.pad_token_id)
        assert not set(out[0, ids.shape[1]:].tolist()) & set(padding)


def test_mean_init_kl_within_hewitt_bound(tokenizers):
    old, new = tokenizers
    base = tiny_model(len(old))
    with torch.no_grad():  # a peaked model, so the bound is not trivially met
        base.get_output_embeddings().weight.mul_(30)
    batch = tx.english_batch(old, corpora.english("heldout"), 512, 64)
    n_new = len(new) - len(old)
    kl_mean = tx.kl_after_resize(base, old, new, batch, "mean")
    kl_random = tx.kl_after_resize(base, old, new, batch, "random")
    assert 0 < kl_mean <= embeddings.hewitt_bound(n_new, len(old))
    assert kl_random > 0


def test_random_init_is_small_and_seeded(tokenizers):
    old, new = tokenizers
    a, b = tiny_model(len(old)), tiny_model(len(old))
    embeddings.resize(a, old, new, init="random")
    embeddings.resize(b, old, new, init="random")
    rows_a = a.get_input_embeddings().weight[len(old):]
    assert torch.equal(rows_a, b.get_input_embeddings().weight[len(old):])
    assert 0.01 < rows_a.std().item() < 0.03


def test_tokenizer_that_does_not_extend_is_refused(tokenizers):
    old, new = tokenizers
    shuffled = copy.deepcopy(new)
    shuffled.add_tokens(["<extra>"])
    with pytest.raises(TokenizerError, match="does not extend"):
        embeddings.resize(tiny_model(len(old)), shuffled, new)

"""Resize a causal LM for an expanded tokenizer and initialise the new embedding rows.

New input rows start as the mean of the embeddings of the new token's old tokenisation (the model
already half-understands 中国 as its bytes). New output rows start as the mean of all old output
rows: Hewitt (2021) shows this bounds the change of every next-token distribution by
log(1 + n_new / n_old) nats, whereas random rows (what the anchors' transformers did) can put
noticeable probability on tokens the model has never seen. Rows beyond `len(tokenizer)` (padding to
a multiple of 64) are suppressed at generation so they are never sampled.
"""
import math

import torch

from ..errors import TokenizerError


def check_extends(old_tokenizer, new_tokenizer) -> None:
    """Raise unless every token of the old tokenizer keeps its id in the new one."""
    old, new = old_tokenizer.get_vocab(), new_tokenizer.get_vocab()
    moved = [t for t, i in old.items() if new.get(t) != i]
    if moved:
        raise TokenizerError(f"the new tokenizer does not extend the old one: {len(moved)} tokens changed "
                             f"id or vanished, e.g. {moved[:5]}")


def old_tokenisation(old_tokenizer, new_tokenizer, token_id: int) -> list[int]:
    """The old ids for the text of new token `token_id` (e.g. 中国 -> its six UTF-8 byte tokens).

    We run the old BPE model on the token's own string, skipping normaliser and pre-tokenizer, so
    no dummy-prefix "▁" sneaks in: the token usually sits inside a longer text.
    """
    piece = new_tokenizer.convert_ids_to_tokens(token_id)
    ids = [t.id for t in old_tokenizer.backend_tokenizer.model.tokenize(piece)]
    if not ids:
        raise TokenizerError(f"the old tokenizer cannot tokenise new token {piece!r} (id {token_id})")
    return ids


def is_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


@torch.no_grad()
def resize(model, old_tokenizer, new_tokenizer, init: str = "mean", multiple: int = 64,
           std: float = 0.02, seed: int = 0) -> dict:
    """Resize `model` to `len(new_tokenizer)` (rows padded to `multiple`) and initialise new rows.

    init="mean": input rows from the old tokenisation, output rows = mean of old output rows.
    init="random": N(0, std) for both, as older transformers did; kept for comparison only.
    """
    if init not in ("mean", "random"):
        raise ValueError(f"init must be 'mean' or 'random', not {init!r}")
    check_extends(old_tokenizer, new_tokenizer)
    n_old, n_new = len(old_tokenizer), len(new_tokenizer)
    rows_before = model.get_input_embeddings().weight.shape[0]
    if rows_before < n_old:
        raise TokenizerError(f"the model has {rows_before} embedding rows but its tokenizer {n_old} tokens")
    tied = is_tied(model)
    old_in = model.get_input_embeddings().weight[:n_old].clone()
    old_out = None if tied else model.get_output_embeddings().weight[:n_old].clone()

    model.resize_token_embeddings(n_new, pad_to_multiple_of=multiple, mean_resizing=False)
    emb_in = model.get_input_embeddings().weight
    rows = emb_in.shape[0]
    fresh = slice(n_old, rows)  # new tokens, then padding rows
    if init == "mean":
        emb_in[fresh] = old_in.mean(0)  # padding rows: harmless average
        for i in range(n_old, n_new):
            emb_in[i] = old_in[old_tokenisation(old_tokenizer, new_tokenizer, i)].mean(0)
        if not tied:
            model.get_output_embeddings().weight[fresh] = old_out.mean(0)
    else:
        g = torch.Generator().manual_seed(seed)
        emb_in[fresh] = torch.randn(emb_in[fresh].shape, generator=g).to(emb_in) * std
        if not tied:
            out = model.get_output_embeddings().weight
            out[fresh] = torch.randn(out[fresh].shape, generator=g).to(out) * std
    padding = list(range(n_new, rows))
    model.generation_config.suppress_tokens = padding or None
    return {"old_tokens": n_old, "new_tokens": n_new - n_old, "rows": rows, "padding_rows": len(padding),
            "tied": tied, "init": init}


def hewitt_bound(n_new: int, n_old: int) -> float:
    """Hewitt (2021): with new output rows at the old mean, KL(p_old || p_new) <= log(1 + n_new/n_old).

    The new logit h·mean(e) is at most log of the mean of exp(h·e_i) (Jensen), so the new tokens
    together take at most n_new/n_old of the old partition function.
    """
    return math.log1p(n_new / n_old)


@torch.no_grad()
def next_token_kl(base_model, new_model, input_ids: torch.Tensor, suppress=()) -> float:
    """Mean KL(base || new) of next-token distributions, in nats per token, over a batch of ids.

    Suppressed (padding) rows are masked as generation would mask them.
    """
    logp_base = torch.log_softmax(base_model(input_ids=input_ids).logits.float(), dim=-1)
    logits = new_model(input_ids=input_ids).logits.float()
    if len(suppress):
        logits[..., list(suppress)] = float("-inf")
    logp_new = torch.log_softmax(logits, dim=-1)[..., :logp_base.shape[-1]]
    kl = (logp_base.exp() * (logp_base - logp_new)).sum(-1)
    return kl.mean().item()

"""Measures that are fair across tokenizers: bits per character, characters per token, byte fallback share.

Loss per token cannot compare two tokenizers (a longer token carries more information), so the kit
reports bits per *character*: the total negative log-likelihood of a text, in bits, divided by its
number of characters.
"""
import math
from collections import Counter

import torch


@torch.no_grad()
def bits_per_character(model, tokenizer, texts: list[str], block_size: int = 256,
                       batch_size: int = 8, max_chars: int | None = None) -> float:
    """Total NLL in bits of `texts` under `model`, divided by their character count.

    Each text starts with BOS and is cut into blocks of `block_size` tokens; every text token is
    predicted exactly once, so the sum does not depend on how the text is cut.
    """
    texts = take_chars(texts, max_chars)
    blocks = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), block_size - 1):
            blocks.append([tokenizer.bos_token_id] + ids[start:start + block_size - 1])
    model.eval()
    device = model.device  # a model kept whole on one device (see zhllm.cpt.merge)
    total_nats = 0.0
    blocks.sort(key=len)  # similar lengths together: less padding
    for i in range(0, len(blocks), batch_size):
        batch = blocks[i:i + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, block in enumerate(batch):
            ids[row, :len(block)] = torch.tensor(block)
            mask[row, :len(block)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:]
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        total_nats += (nll * mask[:, 1:]).sum().item()
    return total_nats / math.log(2) / sum(map(len, texts))


def unigram_bits_per_character(train_texts: list[str], eval_texts: list[str]) -> float:
    """Bits per character of `eval_texts` under a character-unigram model fitted on `train_texts`.

    The baseline any language model must beat; add-one smoothing gives unseen characters a share.
    """
    counts = Counter("".join(train_texts))
    total = sum(counts.values()) + len(counts) + 1
    bits = 0.0
    n = 0
    for text in eval_texts:
        for ch in text:
            bits -= math.log2((counts.get(ch, 0) + 1) / total)
            n += 1
    return bits / n


def bigram_bits_per_character(train_texts: list[str], eval_texts: list[str]) -> float:
    """Bits per character under an interpolated character bigram (Witten-Bell) fitted on `train_texts`.

    The next line a model must beat to show it uses more than the previous character: the bigram's
    weight on a context grows with how often it was seen and shrinks with how many different
    characters followed it; the rest goes to the add-one unigram. No parameter is tuned on `eval_texts`.
    """
    unigram = Counter("".join(train_texts))
    total = sum(unigram.values()) + len(unigram) + 1
    pairs, seen = Counter(), Counter()
    for text in train_texts:
        pairs.update(zip(text, text[1:]))
    followers = Counter(prev for prev, _ in pairs)  # distinct characters seen after each character
    for (prev, _), n in pairs.items():
        seen[prev] += n
    bits, n = 0.0, 0
    for text in eval_texts:
        for i, ch in enumerate(text):
            p_uni = (unigram.get(ch, 0) + 1) / total
            prev = text[i - 1] if i else None
            if prev is None or not seen[prev]:
                p = p_uni
            else:
                p = (pairs.get((prev, ch), 0) + followers[prev] * p_uni) / (seen[prev] + followers[prev])
            bits -= math.log2(p)
            n += 1
    return bits / n


@torch.no_grad()
def copy_accuracy(model, tokenizer, texts: list[str], chars: int = 30) -> dict:
    """Can the model copy? Each text's first `chars` characters, then "。", then the same characters again.

    Top-1 next-token accuracy on the first occurrence measures prediction from knowledge alone; on the
    second, a model that looks back (induction heads, Olsson et al. 2022) predicts nearly every token.
    Segmenting, extracting entities and starting with a given cue all need this.
    """
    model.eval()
    hits = {"first": [], "second": []}
    sep = tokenizer("。", add_special_tokens=False)["input_ids"]
    for text in texts:
        span = tokenizer(text[:chars], add_special_tokens=False)["input_ids"]
        ids = [tokenizer.bos_token_id, *span, *sep, *span]
        pred = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].argmax(-1).tolist()
        second = 1 + len(span) + len(sep)
        hits["first"] += [pred[i - 1] == ids[i] for i in range(2, 1 + len(span))]
        hits["second"] += [pred[i - 1] == ids[i] for i in range(second + 1, len(ids))]
    return {k: sum(v) / len(v) for k, v in hits.items()}


def take_chars(texts: list[str], max_chars: int | None) -> list[str]:
    """The first texts whose total length stays within `max_chars` (all of them when None)."""
    if max_chars is None:
        return list(texts)
    out, used = [], 0
    for text in texts:
        if used + len(text) > max_chars and out:
            break
        out.append(text)
        used += len(text)
    return out

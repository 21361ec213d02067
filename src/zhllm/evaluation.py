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
    device = next(model.parameters()).device
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

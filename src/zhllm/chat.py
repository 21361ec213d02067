"""Chat template (对话模板), label masks and batching for SFT: the traps that make a model never stop.

One template renders both training and inference, so the prompt the model sees when answering is token for
token the prompt it was trained on. Labels are built from that same rendering: -100 on every system, user
and template token, the reply's tokens and the EOS closing it kept, so the model learns to answer and to stop.

The kit's base tokenizer is an English SentencePiece model with byte fallback, so the role markers are plain
text ("### User:") rather than new special tokens: nothing to add, no embeddings to resize, and the only
special token the template needs is EOS, which it already has.
"""
import functools

import torch

from .errors import DataError, TokenizerError

# Each turn is a header line and its text; turns are separated by a blank line. An assistant turn ends with
# EOS (inside {% generation %}, so HF's assistant mask and TRL's `assistant_only_loss` keep it too). The
# generation prompt ends with a newline, which SentencePiece (byte fallback) and byte-level BPE never merge
# with the reply's first character, so the prompt's tokens are a prefix of the prompt+reply tokens.
KIT_CHAT_TEMPLATE = (
    r"{{- bos_token -}}"
    r"{%- for message in messages -%}"
    r"{%- if not loop.first %}{{ '\n\n' }}{% endif -%}"
    r"{%- if message['role'] == 'system' -%}{{ '### System:\n' + message['content'] }}"
    r"{%- elif message['role'] == 'user' -%}{{ '### User:\n' + message['content'] }}"
    r"{%- elif message['role'] == 'assistant' -%}{{ '### Assistant:\n' }}"
    r"{%- generation -%}{{ message['content'] + eos_token }}{%- endgeneration -%}"
    r"{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}"
    r"{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{ '\n\n### Assistant:\n' }}{%- endif -%}"
)
IGNORE = -100  # the label value PyTorch's cross-entropy skips


def set_chat_template(tokenizer, force: bool = False) -> str:
    """Store the kit's template in the tokenizer unless it has its own; returns "kit" or "own".

    A hub chat model keeps the template it was trained with; a base model (no template) gets the kit's.
    """
    if tokenizer.chat_template and not force:
        return "own"
    tokenizer.chat_template = KIT_CHAT_TEMPLATE
    return "kit"


def ensure_pad_token(tokenizer) -> bool:
    """Give the tokenizer a pad token different from EOS; True when one was added (resize embeddings then).

    Why: collators mask pad positions out of the loss; with pad == EOS the EOS label goes too, and the
    model never learns to stop. `<unk>` is a safe pad for byte-fallback tokenizers, which never emit it.
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return False
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != eos:
        tokenizer.pad_token = tokenizer.unk_token
        return False
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    return True


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The template's text for a conversation: training (whole) or inference (ending with the reply header)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    # sanitize_control_tokens: a "</s>" typed inside a message is text, not a real EOS
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt,
                                        sanitize_control_tokens=True)
    return list(out["input_ids"])


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids the model sees at inference: the conversation so far plus the assistant header."""
    if messages[-1]["role"] != "user":
        raise DataError("an inference prompt must end with a user turn", field="messages")
    return _ids(tokenizer, messages, add_generation_prompt=True)


def build_labels(tokenizer, messages: list[dict], max_length: int | None = None) -> dict:
    """input_ids and labels of a conversation: labels are -100 except each reply's tokens and its EOS.

    Each reply's span is found by rendering the prompt before it (as at inference) and the conversation
    up to its end; both must tokenise to a prefix of the whole, or the template is inconsistent and we
    raise rather than train on prompts the model will never see. A conversation longer than `max_length`
    raises DataError: cutting it would cut the final EOS (or the prompt it answers).
    """
    ids = _ids(tokenizer, messages)
    if max_length is not None and len(ids) > max_length:
        raise DataError(f"{len(ids)} tokens > max_length {max_length}", field="messages")
    labels = [IGNORE] * len(ids)
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _ids(tokenizer, messages[:k], add_generation_prompt=True)
        upto = ids if k == len(messages) - 1 else _ids(tokenizer, messages[:k + 1])
        if ids[:len(prompt)] != prompt or ids[:len(upto)] != upto:
            raise TokenizerError(f"turn {k}: the inference prompt does not tokenise to a prefix of the "
                                 "training sequence; the template or tokenizer merges across the boundary")
        reply = upto[len(prompt):]
        if tokenizer.eos_token_id not in reply:
            raise TokenizerError(f"turn {k}: the chat template does not close the reply with EOS "
                                 f"({tokenizer.eos_token!r}), so the model could never learn to stop")
        end = len(prompt) + reply.index(tokenizer.eos_token_id) + 1  # tokens after EOS (e.g. "\n") stay -100
        labels[len(prompt):end] = ids[len(prompt):end]
    return {"input_ids": ids, "labels": labels}


def encode_conversations(tokenizer, conversations, max_length: int,
                         source: str = "conversations") -> tuple[list[dict], dict]:
    """`build_labels` over a dataset; too-long conversations are removed and counted, never cut."""
    rows, errors = [], []
    for i, conversation in enumerate(conversations):
        try:
            rows.append(build_labels(tokenizer, conversation, max_length))
        except DataError as err:  # too long; a TokenizerError (broken template) is not caught: it must stop us
            errors.append(f"{source}, row {i}: {err}")
    report = {"source": source, "rows": len(rows) + len(errors), "kept": len(rows),
              "removed": {"too_long": len(errors)} if errors else {}, "errors": errors[:5]}
    return rows, report


def show_labels(tokenizer, input_ids: list[int], labels: list[int]) -> str:
    """The rendered text with the trained tokens (labels != -100) wrapped in ⟦ ⟧, for a notebook cell."""
    pieces, run, trained = [], [], None
    for token, label in zip(input_ids, labels):
        if (label != IGNORE) != trained and run:
            text = tokenizer.decode(run)
            pieces.append(f"⟦{text}⟧" if trained else text)
            run = []
        run.append(token)
        trained = label != IGNORE
    if run:
        text = tokenizer.decode(run)
        pieces.append(f"⟦{text}⟧" if trained else text)
    return "".join(pieces)


def collator(tokenizer, packing: bool = False):
    """A collator for rows that already have labels: padded batches (TRL's), or `packing=True`: `pack_rows`.

    Packed examples get position_ids that restart at 0 and no attention mask, from which transformers builds a
    block-diagonal mask: no token attends across examples. This holds only when the forward pass has no KV
    cache (use_cache=False, which SFTTrainer sets), as `tests/test_chat.py` shows.
    """
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise TokenizerError("pad token must exist and differ from EOS; call chat.ensure_pad_token first")
    if packing:
        return functools.partial(pack_rows, pad_token_id=tokenizer.pad_token_id)
    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)


def pack_rows(examples: list[dict], pad_token_id: int) -> dict:
    """Pack a batch's examples into rows as wide as its longest example (first fit, in order), without padding
    between examples; only each row's end is padded (labels -100).

    Why rows and not one line: without a variable-length attention kernel (flash-attention 2), attention over a
    packed line costs its length squared, so one line of a whole batch (TRL's padding-free collator) makes a
    CPU step slower than rows do (`python bench/cpu_step_speed.py` prints both); rows as wide as the longest
    example cost no more attention than the plain padded batch, and carry far less padding. Each example's
    first label is -100, as in TRL's padding-free batches: no token is trained to predict the start of the
    next example.
    """
    width = max(len(e["input_ids"]) for e in examples)
    rows: list[list[dict]] = []
    for example in examples:
        row = next((r for r in rows if sum(len(e["input_ids"]) for e in r) + len(example["input_ids"]) <= width),
                   None)
        if row is None:
            rows.append(row := [])
        row.append(example)
    ids, labels, positions = [], [], []
    for row in rows:
        row_ids = [t for e in row for t in e["input_ids"]]
        row_labels = [t for e in row for t in [IGNORE, *e["labels"][1:]]]
        pad = width - len(row_ids)
        ids.append(row_ids + [pad_token_id] * pad)
        labels.append(row_labels + [IGNORE] * pad)
        # the padding continues the last example's positions: it follows that example and nothing attends to it
        last = len(row[-1]["input_ids"])
        positions.append([p for e in row for p in range(len(e["input_ids"]))] + list(range(last, last + pad)))
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions)}


# Greedy decoding with the repetition controls chat models are served with. Plain greedy decoding of a small
# model falls into loops ("服务也不错，服务也不错，…") and never reaches EOS; `repetition_penalty` divides the
# logit of every token already in the context (CTRL, Keskar et al. 2019) and `no_repeat_ngram_size` forbids
# repeating any 5-token sequence. Notebook 03 prints the stop rate and review score of the same SFT model
# under plain greedy decoding and under these settings, side by side.
DECODING = {"repetition_penalty": 1.15, "no_repeat_ngram_size": 5}
GREEDY = {}  # plain greedy decoding, for comparison


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 64,
                     batch_size: int = 32, decoding: dict | None = None) -> list[tuple[str, bool]]:
    """Greedy replies to conversations ending with a user turn: (text, stopped with EOS) per conversation.

    Prompts go through `encode_prompt`, the same render as training; left padding keeps every prompt's
    last token next to the first generated one. `decoding` (default `DECODING`) adds generate() arguments;
    `GREEDY` is plain greedy decoding.
    """
    decoding = DECODING if decoding is None else decoding
    model.eval()
    device = model.device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    out = []
    for start in range(0, len(conversations), batch_size):
        prompts = [encode_prompt(tokenizer, c) for c in conversations[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=eos, pad_token_id=pad, **decoding)
        for row in gen[:, width:].tolist():
            stopped = eos in row
            row = row[:row.index(eos)] if stopped else row
            out.append((tokenizer.decode(row, skip_special_tokens=True).strip(), stopped))
    return out

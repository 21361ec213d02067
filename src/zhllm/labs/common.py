"""What every lab check shares: the error, running the student's function, and the fixtures.

The fixtures are a small tokenizer and a tiny model, each built in seconds.
"""
import math
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ZhllmError

# Characters the generated cases draw from: common ideographs, CJK punctuation, Latin, full-width digits.
HANZI = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年好得就那要下以生会自着去之过家学对可里后"
POOL = HANZI + "，。！？、" + "abcXY" + "１２３"


class LabCheckError(ZhllmError):
    """A student's function disagrees with the reference; the message says what to change."""


# ---- running the student's code -----------------------------------------------------------------

def _name(fn) -> str:
    return getattr(fn, "__name__", "your function")


def _run(fn, *args):
    """Call the student's function; a stub or a crash becomes a LabCheckError that says so."""
    try:
        return fn(*args)
    except NotImplementedError as exc:
        raise LabCheckError(f"`{_name(fn)}` is not implemented yet: replace the `raise NotImplementedError` "
                            f"line with your code, run its cell, then run this check again. ({exc})") from None
    except LabCheckError:
        raise
    except Exception as exc:
        raise LabCheckError(f"`{_name(fn)}` crashed with {type(exc).__name__}: {exc}. Call it by hand on the "
                            "example above the exercise to see where.") from exc


def _passed(fn, fixed: int, generated: int) -> None:
    print(f"✓ `{_name(fn)}` passed: {fixed} fixed and {generated} generated cases agree with the kit.")


def _float(value, fn, what: str = "a number") -> float:
    try:
        return float(value.item() if torch.is_tensor(value) else value)
    except (TypeError, ValueError, RuntimeError):
        raise LabCheckError(f"`{_name(fn)}` should return {what}, not {type(value).__name__}") from None


def _close(a: float, b: float, rel: float = 1e-4, abs_: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _diagnose(got, wrong: list, same) -> str | None:
    """The message of the first known mistake whose output equals the student's, else None."""
    for message, value in wrong:
        if value is not None and same(got, value):
            return message
    return None


def _ids(value) -> list[int]:
    if torch.is_tensor(value):
        value = value.tolist()
    return [int(v) for v in value]


# ---- shared fixtures: a small tokenizer and a tiny model, seconds to build ------------------------

@lru_cache(maxsize=None)
def lab_tokenizer(vocab_size: int = 3000):
    """A Llama-2-style tokenizer (SentencePiece BPE, byte fallback, BOS/EOS/pad) trained on reviews.

    Trained in under a second on the kit's offline review corpus; carries the kit's chat template.
    """
    import sentencepiece as spm

    from .. import base, chat, corpora

    lines = [text for text, _ in corpora.reviews("train")[:8000]]
    with tempfile.TemporaryDirectory() as tmp:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=f"{tmp}/sp",
                                       vocab_size=vocab_size, **dict(base.SP_OPTIONS, character_coverage=0.99))
        tokenizer = base.hf_tokenizer(Path(tmp) / "sp.model", model_max_length=1 << 20)  # no length warnings
    chat.set_chat_template(tokenizer)
    return tokenizer


def tiny_model(vocab_size: int, hidden_size: int = 32, num_layers: int = 1, seed: int = 0, sharp: bool = True):
    """A random Llama small enough for a check; `sharp` makes its predictions far from uniform.

    At the usual init every next-token distribution is nearly uniform, so an off-by-one would change
    a log-probability by a hair; a larger output matrix makes such mistakes visible.
    """
    from ..modeling import tiny_llama

    model = tiny_llama(vocab_size, hidden_size=hidden_size, num_layers=num_layers, num_heads=2,
                       max_positions=1024, seed=seed)
    if sharp:
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(seed))
    return model.eval()


@contextmanager
def one_thread():
    """Run torch on one thread inside the block: tiny models are fastest so, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _random_text(rng, low: int = 2, high: int = 30, chars: str = HANZI + "，。！") -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))



def _switched_off(*args, **kwargs):
    # runs with the globals of whichever kit function it replaces: only builtins may be named here
    raise RuntimeError("switched off while grading: this exercise asks for your own code, not the kit's")


@contextmanager
def kit_switched_off(*targets):
    """Inside the block each `(owner, "name")` of the kit raises when called, however it was imported.

    The hidden tests grade the student's own code: an answer that calls the kit's implementation scores nothing
    there. The attribute is replaced, and so is the code of the function behind it (and behind its decorators),
    which also catches `from zhllm.chat import build_labels`.
    """
    import types

    attributes, codes = [], []
    for owner, name in targets:
        attributes.append((owner, name, getattr(owner, name)))
        fn = getattr(owner, name)
        while fn is not None:
            if isinstance(fn, types.FunctionType) and not fn.__code__.co_freevars:
                codes.append((fn, fn.__code__))
            fn = getattr(fn, "__wrapped__", None)
    try:
        for owner, name, _ in attributes:
            setattr(owner, name, _switched_off)
        for fn, _ in codes:
            fn.__code__ = _switched_off.__code__
        yield
    finally:
        for fn, code in codes:
            fn.__code__ = code
        for owner, name, original in attributes:
            setattr(owner, name, original)

"""Stage 04 — DPO preference alignment (偏好对齐, Rafailov et al. 2023) of the SFT model, with LoRA.

TRL's `DPOTrainer` gets the SFT model and a `peft_config`: it wraps the model with a fresh LoRA adapter
and computes the reference log-probabilities with that adapter *disabled*, which is exactly the SFT model.
No second copy of the weights is loaded (`trainer.ref_model is None`).

Evaluation: held-out reward accuracy and margins (the implicit reward beta * log pi/pi_ref) on the review task
and, with a hub set, on its held-out pairs too; and an independent judge — snownlp's sentiment classifier,
which training never sees — on sampled replies of the SFT model (adapter disabled) and the DPO model to the
same held-out review prompts; plus their lengths, because DPO is known to drift towards longer answers.
"""
import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer
from trl import DPOConfig, DPOTrainer

from .. import artifacts, chat, runtime
from ..cpt import lora_config
from ..modeling import count_parameters, labelled_logits_head, load_causal_lm
from ..profiles import current, pick
from ..sft import tasks as sft_data
from . import preferences as preference_data

SETTINGS = {
    # max_length 64: the prompt (~25 tokens) and a review of up to 40 characters; longer ones lose their end
    # beta 0.5, lr 1e-3: at beta 0.1 / lr 3e-3 the tiny policy drifted (replies 21 -> 38 characters, the judge's
    # positive rate fell 0.27 -> 0.13); this pair ranked held-out pairs best of four tried.
    # embeddings "full": the output and embedding rows train too (a copy of those two matrices, not of the
    # model), on 1,500 pairs (about all the train split has): held-out reward accuracy 0.71, against 0.53 with
    # LoRA on the layers only, 800 pairs and 60 steps (the previous setting, on the same SFT model).
    "tiny": dict(lora_r=16, lora_alpha=32, embeddings="full", beta=0.5, learning_rate=1e-3, max_steps=96,
                 batch_size=16, grad_accum=1, warmup_steps=3, max_length=64, train_pairs=1500, heldout_pairs=80,
                 judge_prompts=64, temperature=0.8, max_new_tokens=48, gradient_checkpointing=False,
                 hub_dataset=None, seed=0),
    # review_pairs: the kit's review train pairs mixed in with the hub set's, so the review held-out pairs, the
    # judge and the lexical baseline measure a task the policy trained on (1,500, as many as tiny trains on).
    "colab": dict(lora_r=16, lora_alpha=32, embeddings="none", beta=0.1, learning_rate=5e-5, max_steps=300,
                  batch_size=4, grad_accum=4, warmup_steps=20, max_length=512, train_pairs=4000, heldout_pairs=80,
                  judge_prompts=100, temperature=0.8, max_new_tokens=64, gradient_checkpointing=True,
                  hub_dataset="shibing624/DPO-En-Zh-20k-Preference", review_pairs=1500, seed=0),
}


def load_policy(model_dir: str | Path):
    """The SFT model (fp32 on CPU) and its tokenizer, with the kit's chat template and pad != EOS."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    chat.set_chat_template(tokenizer)
    model = load_causal_lm(str(model_dir))
    if chat.ensure_pad_token(tokenizer):  # a new <pad> row: only for a stand-in policy without one
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def training_args(cfg: dict, checkpoint_dir: Path, beta: float | None = None) -> DPOConfig:
    """TRL's DPOConfig for a profile's settings; `beta` overrides the settings (the sweep uses it)."""
    dtype = runtime.dtype_for()
    return DPOConfig(
        output_dir=str(checkpoint_dir), beta=cfg["beta"] if beta is None else beta,
        learning_rate=cfg["learning_rate"], max_steps=cfg["max_steps"], lr_scheduler_type="cosine",
        warmup_steps=cfg["warmup_steps"], per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=20, gradient_accumulation_steps=cfg["grad_accum"],
        max_length=cfg["max_length"], activation_checkpointing=cfg["gradient_checkpointing"],
        logging_steps=max(1, cfg["max_steps"] // 20), save_strategy="no", report_to=[],
        disable_tqdm=True, seed=cfg["seed"], data_seed=cfg["seed"], dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16)


def make_trainer(model, tokenizer, train_rows: list[dict], eval_rows: list[dict], cfg: dict,
                 output_dir: Path, beta: float | None = None, args: DPOConfig | None = None,
                 lora=None) -> DPOTrainer:
    """A DPOTrainer over the plain model and a LoRA `peft_config`.

    Given a plain model (not a PeftModel), TRL adds the adapter itself and uses the adapter-disabled model
    as the reference: `trainer.ref_model` is None and no second copy is loaded. `args` defaults to
    `training_args(cfg, output_dir, beta)`; a recipe (`zhllm train dpo`) passes its own, and notebook 04
    builds it in view, with the `LoraConfig` (`lora`, default `lora_config(...)` from the settings).
    """
    runtime.seed_everything(cfg["seed"])  # LoRA's A matrices start random: same seed, same start
    args = args or training_args(cfg, output_dir, beta)
    trainer = DPOTrainer(model=model, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows),
                         peft_config=lora or lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"]))
    labelled_logits_head(trainer)  # on a CPU: cheaper there than TRL's fused LM head
    return trainer


def parameters_in_memory(model) -> dict:
    """Distinct parameters reachable from the model, counted once each: the base weights, LoRA, and the
    trainable copies of whole matrices (PEFT `modules_to_save`, e.g. the output rows) next to their originals."""
    seen, counts = set(), {"base": 0, "lora": 0, "copies": 0}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        kind = "lora" if "lora_" in name else "copies" if "modules_to_save" in name else "base"
        counts[kind] += p.numel()
    return counts


def history(trainer) -> list[dict]:
    """Training log rows that carry a loss (step, loss, rewards/margins, rewards/accuracies, ...)."""
    return [e for e in trainer.state.log_history if "loss" in e]


def reward_stats(trainer, rows: list[dict] | None = None) -> dict:
    """Reward accuracy (chosen reward > rejected reward) and mean margin on `rows` (default: the trainer's eval
    set), from TRL's evaluation.

    One set per call: TRL logs every eval set's rewards under the same `eval_rewards/...` keys, so evaluating a
    dict of sets at once keeps only the last set's.
    """
    result = trainer.evaluate(Dataset.from_list(rows) if rows is not None else None)
    return {"accuracy": result["eval_rewards/accuracies"], "margin": result["eval_rewards/margins"]}


@torch.no_grad()
def sample_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 48,
                   temperature: float = 0.8, seed: int = 0, batch_size: int = 32) -> list[str]:
    """Sampled replies (same seed -> same draws) to conversations ending with a user turn.

    Sampling, not greedy: a judge should rate what the policy *tends* to say, not its single mode.
    """
    model.eval()
    dev = model.device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(seed)
    out = []
    for start in range(0, len(conversations), batch_size):
        prompts = [chat.encode_prompt(tokenizer, c) for c in conversations[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                             eos_token_id=eos, pad_token_id=pad)
        for row in gen[:, width:].tolist():
            row = row[:row.index(eos)] if eos in row else row
            out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return out


def lexical_baseline(train_rows: list[dict], heldout: list[dict]) -> float:
    """Held-out pair accuracy of a bag-of-characters classifier (naive Bayes on character 1-2-grams) trained
    on the same training pairs' replies: what word counts alone can tell, next to the reward accuracy.

    Why: a reward accuracy means little without knowing how separable the pairs are by their words.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB

    reply = lambda row, side: row[side][-1]["content"]  # noqa: E731
    texts = [reply(r, "chosen") for r in train_rows] + [reply(r, "rejected") for r in train_rows]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(1, 2))
    labels = [1] * len(train_rows) + [0] * len(train_rows)
    classifier = MultinomialNB().fit(vectorizer.fit_transform(texts), labels)

    def positive(side):
        log_p = classifier.predict_log_proba(vectorizer.transform([reply(r, side) for r in heldout]))
        return log_p[:, 1] - log_p[:, 0]

    return float((positive("chosen") > positive("rejected")).mean())


def judge(texts: list[str]) -> list[float]:
    """snownlp's sentiment probability of each text (> 0.5 = positive).

    An empty reply scores 0, and so does a bare 正面 / 负面: it is the sentiment task's label, not the review
    asked for, and snownlp would read the word 正面 as a positive review.
    """
    from snownlp import SnowNLP

    return [SnowNLP(t).sentiments if t and not sft_data.is_label(t) else 0.0 for t in texts]


def positive_rate(scores: list[float]) -> float:
    return sum(s > 0.5 for s in scores) / len(scores)


def mean_length(texts: list[str]) -> float:
    """Mean reply length in characters (tokenizer-independent)."""
    return sum(len(t) for t in texts) / len(texts)


def compare(model, tokenizer, prompts: list[list[dict]], cfg: dict) -> dict:
    """Sampled replies and judge scores of the SFT model (adapter disabled) and the DPO model, same seed."""
    kw = dict(max_new_tokens=cfg["max_new_tokens"], temperature=cfg["temperature"], seed=cfg["seed"])
    with model.disable_adapter():  # the reference policy: the same weights, adapter off
        sft = sample_replies(model, tokenizer, prompts, **kw)
    dpo = sample_replies(model, tokenizer, prompts, **kw)
    return {"sft": sft, "dpo": dpo, "sft_scores": judge(sft), "dpo_scores": judge(dpo)}


def judge_prompts(heldout: list[dict], n: int) -> list[list[dict]]:
    """The first n held-out prompts: what both policies are asked, once each."""
    return [row["prompt"] for row in heldout[:n]]


def summary(stats: dict, gens: dict, seconds: float, lexical: float | None = None, hub: dict | None = None) -> dict:
    """The stage's metrics.json entries; `lexical` is `lexical_baseline` on the same pairs, when measured, and
    `hub` the `reward_stats` of a hub set's held-out pairs, when there are some."""
    extra = {} if lexical is None else {"reward_accuracy_lexical_baseline": lexical}
    if hub is not None:
        extra.update(reward_accuracy_hub_heldout=hub["accuracy"], reward_margin_hub_heldout=hub["margin"])
    return {**extra, "reward_accuracy_heldout": stats["accuracy"], "reward_margin_heldout": stats["margin"],
            "judge_positive_rate_sft": positive_rate(gens["sft_scores"]),
            "judge_positive_rate_dpo": positive_rate(gens["dpo_scores"]),
            "mean_length_sft": mean_length(gens["sft"]), "mean_length_dpo": mean_length(gens["dpo"]),
            "peak_memory_mb": runtime.peak_memory_mb(), "seconds": round(seconds, 1)}


def measure(trainer, tokenizer, train_rows: list[dict], heldout: dict[str, list[dict]], cfg: dict,
            start: float) -> tuple[dict, dict]:
    """(generations, metrics) of a trained trainer whose eval set is `heldout["reviews"]` (`pairs_for`'s sets):
    reward statistics on each held-out set, and the lexical baseline and the judge on the reviews; `start` is
    the stage's start time (`time.time()`)."""
    reviews = heldout["reviews"]
    stats = reward_stats(trainer)
    hub = reward_stats(trainer, heldout["hub"]) if "hub" in heldout else None
    gens = compare(trainer.model, tokenizer, judge_prompts(reviews, cfg["judge_prompts"]), cfg)
    return gens, summary(stats, gens, time.time() - start, lexical_baseline(train_rows, reviews), hub)


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Build stage 04 into `out_dir` (what `save` writes); returns the metrics."""
    profile = current(profile)
    cfg = pick(SETTINGS, profile)
    start = time.time()
    runtime.set_threads()
    model, tokenizer = load_policy(artifacts.ensure("sft", profile) / "model")
    train_rows, heldout, about = preference_data.pairs_for(profile, cfg, tokenizer)
    print(f"[zhllm] {about}")
    checkpoints = artifacts.checkpoint_dir("dpo", profile)
    trainer = make_trainer(model, tokenizer, train_rows, heldout["reviews"], cfg, checkpoints)
    trainer.train()
    gens, metrics = measure(trainer, tokenizer, train_rows, heldout, cfg, start)
    save(out_dir, trainer, tokenizer, gens, metrics)
    artifacts.clear_checkpoints("dpo", profile)
    return metrics


def save(out_dir: Path, trainer, tokenizer, gens: dict, metrics: dict) -> None:
    """Write `adapter/`, the merged `model/` (+ tokenizer, for stage 06), `loss.json`, `generations.json`
    and `metrics.json` (with the trainable parameter count). Merging ends the trainer's use of the model."""
    out_dir = Path(out_dir)
    metrics["trainable_params"] = count_parameters(trainer.model, trainable_only=True)
    trainer.model.save_pretrained(out_dir / "adapter")
    tokenizer.save_pretrained(out_dir / "adapter")
    (out_dir / "loss.json").write_text(json.dumps(history(trainer)))
    (out_dir / "generations.json").write_text(json.dumps(gens, ensure_ascii=False))
    trainer.model.merge_and_unload().save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    artifacts.write_metrics(out_dir, metrics)

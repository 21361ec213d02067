"""Stage 07 — data curation (数据清洗与筛选): deduplicate, filter, select, and measure what it buys.

- Deduplication (去重): exact, on a hash of normalised text; near-duplicate, by MinHash LSH over character
  3-grams (implemented here with numpy in one screen, so every step can be read).
- Quality filters (质量过滤), each counting what it removes: length, share of CJK characters, repeated
  n-grams, and perplexity under the kit's own continued-pretrained model (CCNet's idea).
- Diversity selection (多样性筛选), after "Maybe Only 0.5% Data Is Needed": mean-pooled last hidden states of
  the kit's model, L2-normalised, K-Means, then KCenterGreedy in each cluster; a random subset of the same
  size is the control.
- Experiments (`experiments`): short SFT runs at equal steps on the selected, the random and the full set,
  and Panda's question: instructions mixed with raw corpus text vs instructions alone.
"""
import hashlib
import random
import time
import unicodedata
from pathlib import Path

import numpy as np
import torch

from .. import artifacts, corpora, runtime, sft
from ..errors import ConfigError
from ..sft import tasks as sft_data
from .experiments import arm_metrics, mixed_corpus, sft_arm, sft_settings

SETTINGS = {
    # tiny: the arms are scored on every held-out example of stage 03; with 20 a task, one answer moved
    # `sft_score` by 0.01 and the arms differed by a few answers.
    "tiny": dict(seed=0, shingle=3, num_perm=128, bands=16, near_threshold=0.7,
                 min_chars=12, max_chars=600, min_cjk_share=0.25, max_repetition=0.3, max_bpc_mad=4.0,
                 pool_share=0.5, injected_per_kind=30, raw_docs=None, raw_scored=300, score_batch=32,
                 clusters=12, select=240, sft_steps=48, sft_batch=8, eval_per_task=200, mix_raw_share=0.5),
    "colab": dict(seed=0, shingle=3, num_perm=128, bands=16, near_threshold=0.7,
                  min_chars=12, max_chars=2000, min_cjk_share=0.25, max_repetition=0.3, max_bpc_mad=4.0,
                  pool_share=1.0, injected_per_kind=200, raw_docs=50_000, raw_scored=5000, score_batch=32,
                  clusters=50, select=1000, sft_steps=300, sft_batch=8, eval_per_task=100, mix_raw_share=0.5),
}
RULES = ("length", "cjk", "repetition", "perplexity")


# ---- normalisation and exact deduplication ----------------------------------------------------------

def normalize(text: str) -> str:
    """NFKC (full-width -> half-width), lower case, and no whitespace, punctuation or symbols.

    Why: "你好，世界" and "你好, 世界 " are the same text for training; only their bytes differ.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PZSC")


def exact_duplicates(texts: list[str]) -> dict[int, int]:
    """{index removed: index of the earlier text it duplicates}, comparing md5 of the normalised text."""
    first, removed = {}, {}
    for i, text in enumerate(texts):
        key = hashlib.md5(normalize(text).encode("utf-8")).hexdigest()
        if key in first:
            removed[i] = first[key]
        else:
            first[key] = i
    return removed


# ---- near-duplicates: MinHash LSH ---------------------------------------------------------------------

def shingle_ids(text: str, n: int = 3) -> np.ndarray:
    """The distinct character n-grams of the normalised text, each as one exact 63-bit integer.

    A code point fits in 21 bits, so three of them pack into one uint64 with no hash collisions.
    A text shorter than n is one shingle (itself); an empty text is the shingle 0.
    """
    if n > 3:
        raise ConfigError("shingle length must be at most 3 (three 21-bit code points per uint64)")
    codes = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < n:
        codes = np.concatenate([codes, np.zeros(n - len(codes), dtype=np.uint64)])
    ids = np.zeros(len(codes) - n + 1, dtype=np.uint64)
    for k in range(n):
        ids = (ids << np.uint64(21)) | codes[k:len(codes) - n + 1 + k]
    return np.unique(ids)


def minhash_signatures(texts: list[str], num_perm: int = 128, n: int = 3, seed: int = 0) -> np.ndarray:
    """One row of `num_perm` min-hashes per text: P(two rows agree at a position) = Jaccard of their shingles.

    Each "permutation" is a multiply-shift hash h(x) = (a*x + b) mod 2^64 >> 32 with a random odd a.
    """
    if not texts:
        return np.empty((0, num_perm), dtype=np.uint32)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    shingles = [shingle_ids(text, n) for text in texts]
    flat = np.concatenate(shingles)
    starts = np.cumsum([0] + [len(s) for s in shingles[:-1]])
    signatures = np.empty((len(texts), num_perm), dtype=np.uint32)
    for k in range(num_perm):  # numpy wraps uint64 products modulo 2^64, which is what we want
        hashed = (a[k] * flat + b[k]) >> np.uint64(32)
        signatures[:, k] = np.minimum.reduceat(hashed, starts)
    return signatures


def near_duplicates(signatures: np.ndarray, bands: int = 16, threshold: float = 0.7) -> dict[int, int]:
    """{index removed: index of the earlier kept text it nearly duplicates} by LSH banding.

    Rows are cut into `bands` bands; texts sharing any whole band are candidates, and a candidate is a
    duplicate when the share of equal min-hashes (the estimated Jaccard) reaches `threshold`.
    With 16 bands of 8 rows, a pair at Jaccard 0.7 becomes a candidate with probability 1-(1-0.7^8)^16 = 0.62,
    at 0.8 with 0.95, at 0.5 with 0.06: the check then removes the false candidates.
    """
    if signatures.shape[1] % bands:
        raise ConfigError(f"{signatures.shape[1]} min-hashes do not split into {bands} equal bands")
    rows = signatures.shape[1] // bands
    buckets: dict[tuple, list[int]] = {}
    removed = {}
    for i, signature in enumerate(signatures):
        keys = [(band, signature[band * rows:(band + 1) * rows].tobytes()) for band in range(bands)]
        twin = next((j for key in keys for j in buckets.get(key, ())
                     if np.mean(signatures[j] == signature) >= threshold), None)
        if twin is not None:
            removed[i] = twin
            continue
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return removed


def deduplicate(texts: list[str], cfg: dict) -> tuple[dict, dict]:
    """Exact, then near-duplicates among the texts left: ({removed: twin} for each, in input indices)."""
    exact = exact_duplicates(texts)
    left = [i for i in range(len(texts)) if i not in exact]
    signatures = minhash_signatures([texts[i] for i in left], cfg["num_perm"], cfg["shingle"], cfg["seed"])
    near = near_duplicates(signatures, cfg["bands"], cfg["near_threshold"])
    return exact, {left[i]: left[j] for i, j in near.items()}


def jaccard(a: str, b: str, n: int = 3) -> float:
    """The exact Jaccard similarity of two texts' shingle sets (what MinHash estimates)."""
    x, y = set(shingle_ids(a, n).tolist()), set(shingle_ids(b, n).tolist())
    return len(x & y) / len(x | y)


# ---- quality filters ----------------------------------------------------------------------------------

def is_cjk(ch: str) -> bool:
    """A CJK unified ideograph (basic block or extension A): a Chinese character."""
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def cjk_share(text: str) -> float:
    """Share of Chinese characters among the text's non-space characters (0 for an empty text)."""
    chars = [ch for ch in text if not ch.isspace()]
    return sum(map(is_cjk, chars)) / len(chars) if chars else 0.0


def repetition(text: str, n: int = 3) -> float:
    """Share of the text's character n-grams that repeat an earlier one (0: none; near 1: one phrase looped)."""
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def heuristic_flags(texts: list[str], cfg: dict) -> dict[str, list[bool]]:
    """For each cheap rule, whether each text fails it: length outside [min_chars, max_chars], CJK share
    below min_cjk_share, repeated 3-gram share above max_repetition."""
    return {"length": [not cfg["min_chars"] <= len(t) <= cfg["max_chars"] for t in texts],
            "cjk": [cjk_share(t) < cfg["min_cjk_share"] for t in texts],
            "repetition": [repetition(t) > cfg["max_repetition"] for t in texts]}


def perplexity_flags(bpc: np.ndarray, max_mad: float) -> tuple[list[bool], float]:
    """Texts whose bits per character lie more than `max_mad` median absolute deviations above the median.

    A threshold relative to the pool (a robust z-score), because a tiny model's absolute perplexity says
    little; CCNet instead keeps fixed perplexity buckets of a model trained on Wikipedia.
    """
    median = float(np.median(bpc))
    limit = median + max_mad * float(np.median(np.abs(bpc - median)))
    return [bool(b > limit) for b in bpc], limit


def apply_filters(flags: dict[str, list[bool]], keep: list[int]) -> tuple[list[int], dict[str, list[int]]]:
    """Apply rules in order to the indices in `keep`: what is left, and per rule the indices it removed.

    A text failing two rules is counted by the first, so the counts add up to the total removed.
    """
    removed = {}
    for rule, failed in flags.items():
        removed[rule] = [i for i in keep if failed[i]]
        keep = [i for i in keep if not failed[i]]
    return keep, removed


# ---- the kit's model as a scorer: embeddings and bits per character in one pass -------------------------

@torch.no_grad()
def embed_and_score(model, tokenizer, texts: list[str], batch_size: int = 32,
                    max_tokens: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Per text: the mean-pooled last hidden state, L2-normalised, and bits per character (NLL / chars).

    One forward pass gives both. Texts are cut at `max_tokens` tokens (the bits are then of the part read)
    and batched by length, so little is padding.
    """
    model.eval()
    device = model.device
    ids = [[tokenizer.bos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens - 1]
           for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    embeddings, bits = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32), np.zeros(len(texts))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(ids[i]) for i in batch)
        input_ids = torch.tensor([ids[i] + [tokenizer.pad_token_id or 0] * (width - len(ids[i])) for i in batch],
                                 device=device)
        mask = (torch.arange(width, device=device)[None] < torch.tensor([len(ids[i]) for i in batch],
                                                                       device=device)[:, None]).float()
        out = model(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True)
        pooled = (out.hidden_states[-1].float() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        embeddings[batch] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        logits = out.logits[:, :-1].float()  # flattened: 2-3x faster on a CPU than cross_entropy over dim 1
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1),
                                                reduction="none").view(len(batch), -1) * mask[:, 1:]
        chars = torch.tensor([max(1, len(tokenizer.decode(ids[i][1:]))) for i in batch])
        bits[batch] = (nll.sum(1).cpu() / np.log(2) / chars).numpy()
    return embeddings, bits


# ---- diversity selection -----------------------------------------------------------------------------

def k_center_greedy(points: np.ndarray, n: int, start: int) -> list[int]:
    """Core-set selection (Sener & Savarese 2018): from `start`, repeatedly add the point farthest from
    everything chosen so far, so the chosen points cover the space with the smallest radius."""
    chosen = [start]
    distance = np.linalg.norm(points - points[start], axis=1)
    while len(chosen) < min(n, len(points)):
        far = int(np.argmax(distance))
        chosen.append(far)
        distance = np.minimum(distance, np.linalg.norm(points - points[far], axis=1))
    return chosen


def quotas(sizes: list[int], total: int) -> list[int]:
    """Split `total` picks over clusters: one each, so no cluster goes unrepresented, and the rest in
    proportion to the clusters' sizes (largest remainders)."""
    if not len(sizes) <= total <= sum(sizes):
        raise ConfigError(f"cannot pick {total} from clusters of sizes {sizes}: need one per cluster at least")
    rest = total - len(sizes)
    exact = [rest * (s - 1) / (sum(sizes) - len(sizes)) for s in sizes] if rest else [0.0] * len(sizes)
    out = [int(e) for e in exact]
    for c in sorted(range(len(sizes)), key=lambda c: exact[c] - out[c], reverse=True)[:rest - sum(out)]:
        out[c] += 1
    return [q + 1 for q in out]


def diverse_selection(embeddings: np.ndarray, size: int, clusters: int,
                      seed: int = 0) -> tuple[list[int], np.ndarray]:
    """`size` indices: K-Means into `clusters` groups, then KCenterGreedy inside each group (from the point
    nearest its centroid), each group getting `quotas`. Returns (indices, cluster labels)."""
    from sklearn.cluster import KMeans

    if size > len(embeddings):
        raise ConfigError(f"cannot select {size} of {len(embeddings)} examples")
    kmeans = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(embeddings)
    members = [np.flatnonzero(kmeans.labels_ == c) for c in range(clusters)]
    chosen = []
    for c, quota in enumerate(quotas([len(m) for m in members], size)):
        points = embeddings[members[c]]
        start = int(np.argmin(np.linalg.norm(points - kmeans.cluster_centers_[c], axis=1)))
        chosen += [int(members[c][i]) for i in k_center_greedy(points, quota, start)]
    return sorted(chosen), kmeans.labels_


def random_selection(n: int, size: int, seed: int = 0) -> list[int]:
    """The control: `size` of `n` indices drawn uniformly with a fixed seed."""
    return sorted(random.Random(seed).sample(range(n), size))


def coverage(embeddings: np.ndarray, chosen: list[int]) -> tuple[float, float]:
    """Distances from every point to its nearest chosen point: the largest (the radius KCenterGreedy
    minimises) and the mean (how close a typical point is to the subset)."""
    distance = np.full(len(embeddings), np.inf)
    for i in chosen:
        distance = np.minimum(distance, np.linalg.norm(embeddings - embeddings[i], axis=1))
    return float(distance.max()), float(distance.mean())


# ---- the candidate pool: the kit's instruction set plus injected, labelled noise ------------------------

NOISE = ("exact_duplicate", "near_duplicate", "too_short", "not_chinese", "repetitive", "garbled")


def conversation_text(example: dict) -> str:
    """What dedup and the filters read: every turn's content, one per line."""
    return "\n".join(m["content"] for m in example["messages"])


def _edit(example: dict, edit) -> dict:
    """A copy of the example whose k-th message's content is edit(k, content)."""
    messages = [dict(m, content=edit(k, m["content"])) for k, m in enumerate(example["messages"])]
    return dict(example, messages=messages)


def noisy_copy(kind: str, example: dict, rng: random.Random, english: str) -> dict:
    """A corrupted copy of `example`, one kind of noise that real instruction data has:
    - exact_duplicate: the same row re-exported with half-width punctuation and a trailing space;
    - near_duplicate: the same row with a politeness phrase added to its first prompt;
    - too_short: a row cut off by a broken export (the prompt's last 4 characters, the reply's first 2);
    - not_chinese: an English row (`english` is a passage to take it from);
    - repetitive: the last reply replaced by its opening looped to 80 characters (a model stuck in a loop);
    - garbled: every turn's UTF-8 bytes decoded as GBK (乱码, mojibake): still Chinese characters, no meaning.
    """
    last = len(example["messages"]) - 1
    if kind == "exact_duplicate":
        return _edit(example, lambda k, text: text.replace("，", ", ").replace("。", ". ") + " ")
    if kind == "near_duplicate":
        return _edit(example, lambda k, text: text + "谢谢！" if k == 0 else text)
    if kind == "repetitive":
        return _edit(example, lambda k, text: (text[:5] * 80)[:80] if k == last else text)
    if kind == "garbled":
        return _edit(example, lambda k, text: text.encode("utf-8").decode("gbk", errors="replace"))
    if kind == "too_short":
        user, reply = example["messages"][0]["content"], example["messages"][1]["content"]
        return dict(example, messages=[{"role": "user", "content": user[-4:]},
                                       {"role": "assistant", "content": reply[:2]}])
    if kind == "not_chinese":
        words = english.split()
        start = rng.randrange(max(1, len(words) - 40))
        return dict(example, messages=[
            {"role": "user", "content": "Summarize this text.\n" + " ".join(words[start:start + 40])},
            {"role": "assistant", "content": " ".join(words[start:start + 12])}])
    raise ConfigError(f"unknown noise kind {kind!r}; kinds are {NOISE}")


def candidate_pool(cfg: dict) -> tuple[list[dict], dict]:
    """The instruction set to curate: `sft_data`'s train split (scaled by `pool_share`), then
    `injected_per_kind` corrupted rows of each noise kind appended and marked in `origin`.

    Duplicates copy rows of the set; the other kinds corrupt rows of a second draw that are not in the set,
    so each kind is new data. Injected rows come last, as data merged into an existing set.
    """
    sizes = {task: round(n * cfg["pool_share"]) for task, n in sft_data.SIZES["train"].items()}
    examples, _ = sft_data.build("train", sizes=sizes, seed=cfg["seed"])
    seen = {conversation_text(ex) for ex in examples}
    others = [ex for ex in sft_data.build("train", sizes=sizes, seed=cfg["seed"] + 1)[0]
              if conversation_text(ex) not in seen]
    pool = [dict(ex, origin="original") for ex in examples]
    rng = random.Random(cfg["seed"])
    english = corpora.english("train")
    for kind in NOISE:
        for ex in rng.sample(examples if kind.endswith("duplicate") else others, cfg["injected_per_kind"]):
            pool.append(dict(noisy_copy(kind, ex, rng, rng.choice(english)), origin=f"injected_{kind}"))
    return pool, {f"injected_{kind}": cfg["injected_per_kind"] for kind in NOISE}


# ---- the whole cleaning pass, for the instruction pool and for raw corpora alike ------------------------

def dedup_and_filter(texts: list[str], cfg: dict) -> dict:
    """Exact and near dedup, then the cheap rules in order: {"kept", "exact", "near", "removed": {rule: ids}}.

    `exact` and `near` map each removed index to the earlier text it duplicates.
    """
    exact, near = deduplicate(texts, cfg)
    keep = [i for i in range(len(texts)) if i not in exact and i not in near]
    kept, removed = apply_filters(heuristic_flags(texts, cfg), keep)
    return {"kept": kept, "exact": exact, "near": near, "removed": removed}


def perplexity_filter(result: dict, texts: list[str], cfg: dict, model, tokenizer,
                      scored: int | None = None) -> dict:
    """Score the first `scored` survivors of `dedup_and_filter` (all when None) with the kit's model and remove
    the perplexity outliers. Adds "bpc" and "bpc_limit", and for the texts scored and kept their indices
    ("scored") and embeddings, which diversity selection uses."""
    ids = result["kept"][:scored]
    embeddings, bpc = embed_and_score(model, tokenizer, [texts[i] for i in ids], cfg["score_batch"])
    flags, limit = perplexity_flags(bpc, cfg["max_bpc_mad"])
    dropped = {i for i, bad in zip(ids, flags) if bad}
    good = [k for k, i in enumerate(ids) if i not in dropped]
    return {**result, "kept": [i for i in result["kept"] if i not in dropped],
            "removed": {**result["removed"], "perplexity": sorted(dropped)},
            "scored": [ids[k] for k in good], "embeddings": embeddings[good], "bpc": bpc, "bpc_limit": limit}


def clean(texts: list[str], cfg: dict, model, tokenizer, scored: int | None = None) -> dict:
    """The whole cleaning pass: `dedup_and_filter`, then `perplexity_filter`."""
    return perplexity_filter(dedup_and_filter(texts, cfg), texts, cfg, model, tokenizer, scored)


def counts(result: dict, prefix: str = "") -> dict:
    """The flat counts of a `clean` result: dedup_removed (exact + near) and filter_<rule>_removed."""
    out = {f"{prefix}dedup_exact_removed": len(result["exact"]),
           f"{prefix}dedup_near_removed": len(result["near"]),
           f"{prefix}dedup_removed": len(result["exact"]) + len(result["near"])}
    out.update({f"{prefix}filter_{rule}_removed": len(result["removed"][rule]) for rule in RULES})
    out[f"{prefix}kept"] = len(result["kept"])
    return out


def injected_caught(result: dict, pool: list[dict]) -> dict:
    """Per step, how many removed rows were injected noise (the rest were real rows of the set)."""
    steps = {"dedup": [*result["exact"], *result["near"]], **result["removed"]}
    return {f"{step}_removed_injected": sum(pool[i]["origin"] != "original" for i in removed)
            for step, removed in steps.items()}


# ---- the stage ---------------------------------------------------------------------------------------------

def scorer(model_dir: Path):
    """The CPT model and its tokenizer, for embeddings and perplexity."""
    from transformers import AutoTokenizer

    from ..modeling import load_causal_lm

    return load_causal_lm(str(model_dir)), AutoTokenizer.from_pretrained(model_dir)


def raw_corpora(cfg: dict) -> dict[str, list[str]]:
    """Real raw text to clean: People's Daily paragraphs and product reviews (train splits, `raw_docs` each)."""
    return {"people_daily": corpora.people_daily("train")[:cfg["raw_docs"]],
            "reviews": [text for text, _ in corpora.reviews("train")][:cfg["raw_docs"]]}


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Build stage 07: clean the instruction pool and raw corpora, select, run the SFT experiments."""
    profile, cfg = runtime.begin_stage(SETTINGS, profile)
    start = time.time()
    model_dir = artifacts.start_model_dir(profile)
    model, tokenizer = scorer(model_dir)
    pool, injected = candidate_pool(cfg)
    result = clean([conversation_text(e) for e in pool], cfg, model, tokenizer)
    metrics = {"pool_examples": len(pool), **injected, **counts(result), **injected_caught(result, pool)}
    raw = raw_corpora(cfg)
    raw_results = {name: clean(texts, cfg, model, tokenizer, cfg["raw_scored"]) for name, texts in raw.items()}
    for name, res in raw_results.items():
        metrics.update(counts(res, f"{name}_"))
    chosen, _ = diverse_selection(result["embeddings"], cfg["select"], cfg["clusters"], cfg["seed"])
    control = random_selection(len(result["scored"]), cfg["select"], cfg["seed"])
    metrics["coverage_selected"], metrics["coverage_mean_selected"] = coverage(result["embeddings"], chosen)
    metrics["coverage_random"], metrics["coverage_mean_random"] = coverage(result["embeddings"], control)
    subsets = {"selected": chosen, "random": control, "full": range(len(result["scored"]))}
    arms = {name: ([pool[result["scored"][k]] for k in ids], []) for name, ids in subsets.items()}
    arms["mixed"] = (arms["random"][0], mixed_corpus(raw["people_daily"], raw_results["people_daily"]["kept"],
                                                     cfg["select"], cfg["mix_raw_share"], cfg["seed"]))
    sft_cfg = sft_settings(cfg, profile)
    heldout = sft.heldout_examples(sft_cfg)
    baseline = sft_data.score(heldout, sft_data.baseline_replies(heldout))
    for name, (examples, raw_texts) in arms.items():
        scores, history = sft_arm(model_dir, examples, heldout, sft_cfg,
                                  artifacts.checkpoint_dir("curation", profile) / name, raw_texts)
        metrics.update(arm_metrics(name, scores, baseline))
    metrics["mix_score_instructions_only"] = metrics["sft_score_random"]
    metrics["mix_score_with_corpus"] = metrics["sft_score_mixed"]
    metrics["seconds"] = round(time.time() - start, 1)
    artifacts.write_metrics(out_dir, metrics)
    artifacts.clear_checkpoints("curation", profile)
    return metrics

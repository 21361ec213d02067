"""The teaching pictures: labels and counts come from the arguments, packing cells match the tokens."""
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from zhllm import figures
from zhllm.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
EOS = 2
ROWS = [([1, 5, 6, 7, 8, 9, EOS], [-100, -100, -100, -100, 8, 9, EOS]),
        ([1, 5, 6, 11, 12, 13, 14, 15, EOS], [-100, -100, -100, -100, 12, 13, 14, 15, EOS]),
        ([1, 7, 21, EOS, 3], [-100, -100, 21, EOS, -100])]  # a masked token after EOS, as chat rows have
IDS, LABELS = [r[0] for r in ROWS], [r[1] for r in ROWS]


def texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def render(fig: Figure) -> None:
    """Draw to PNG with warnings as errors: no missing glyph, nothing else to complain about."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format="png", dpi=50)


def gids(fig: Figure, prefix: str) -> list[str]:
    return [p.get_gid() for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith(prefix)]


def test_pipeline_names_every_stage_and_what_it_writes():
    fig = figures.pipeline()
    text = texts(fig)
    for number in ("00", "01", "02", "03", "04", "05", "06", "07"):
        assert number in text
    for words in ("English base", "tokenizer\nexpansion", "QLoRA", "SFT", "DPO", "C-Eval", "scaling laws",
                  "data curation", "merged model/", "chat template", "metrics.json"):
        assert words in text
    render(fig)


def test_pipeline_highlights_one_stage_by_number_or_name():
    def marked(fig):
        return [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == pytest.approx(
            tuple(int(figures.ACCENT[i:i + 2], 16) / 255 for i in (1, 3, 5)))]
    assert not marked(figures.pipeline())
    for key in ("03", 3, "sft"):
        assert len(marked(figures.pipeline(highlight=key))) == 1
    with pytest.raises(ConfigError, match="highlight"):
        figures.pipeline(highlight="99")


def test_chinese_terms_only_with_a_cjk_font(monkeypatch):
    assert "词表扩充" not in texts(figures.pipeline()) or figures.cjk_font()
    monkeypatch.setattr(figures, "cjk_font", lambda: "Some CJK Font")
    assert "词表扩充" in texts(figures.pipeline())  # not drawn: the font is made up


@pytest.mark.parametrize("d, k, r", [(256, 256, 16), (300, 100, 4)])
def test_lora_counts_come_from_the_arguments(d, k, r):
    text = texts(figures.lora(d=d, k=k, r=r, alpha=2 * r))
    assert f"{d * k:,}" in text and f"{r * (d + k):,}" in text and f"{r * k:,}" in text and f"{d * r:,}" in text
    assert f"{100 * r * (d + k) / (d * k):.2f}%" in text
    assert "α/r" in text and "NF4" not in text


def test_qlora_shows_the_4bit_base_dequantised_on_the_fly():
    fig = figures.lora(d=256, k=1024, r=8, quantized=True, compute_dtype="fp16")
    text = texts(fig)
    assert "NF4" in text and "dequantise\nto fp16" in text and "262,144" in text and "10,240" in text
    assert f"{256 * 1024 * 2:,} B" in text and f"{math.ceil(256 * 1024 * 4.5 / 8):,} B" in text
    render(fig)
    with pytest.raises(ConfigError):
        figures.lora(d=8, k=8, r=16)


def test_packing_cells_match_the_tokens_and_their_labels():
    fig = figures.packing_and_labels(IDS, LABELS, eos_id=EOS)
    lengths = [len(ids) for ids in IDS]
    padded, packed = gids(fig, "padded:"), gids(fig, "packed:")
    assert len(packed) == sum(lengths)
    assert len(padded) == len(IDS) * max(lengths) and padded.count("padded:pad") == len(IDS) * max(lengths) - 21
    masked = sum(label == -100 for labels in LABELS for label in labels)
    assert packed.count("packed:prompt") == masked
    assert packed.count("packed:eos") == len(IDS)
    assert packed.count("packed:reply") == sum(lengths) - masked - len(IDS)
    assert "packed:pad" not in packed
    assert "21 tokens" in texts(fig)


def test_packed_attention_mask_is_block_diagonal_and_causal():
    fig = figures.packing_and_labels(IDS, LABELS, eos_id=EOS)
    (image,) = [im for ax in fig.axes for im in ax.images]
    mask = np.asarray(image.get_array(), dtype=bool)
    assert mask.shape == (21, 21)
    assert np.array_equal(mask, figures.packed_attention_mask([7, 9, 5]))
    example = np.repeat([0, 1, 2], [7, 9, 5])
    same = example[:, None] == example[None, :]
    assert not mask[~same].any(), "no token attends across examples"
    assert np.array_equal(mask[same], np.tril(np.ones((21, 21), dtype=bool))[same]), "causal inside each"


def test_packing_writes_tokens_that_fit_and_guesses_eos_without_its_id():
    tokens = [[f"t{t}" if t != EOS else "</s>" for t in ids] for ids in IDS]
    tokens[0][1] = "中"  # without a CJK font it is drawn as '?', never as a missing glyph
    fig = figures.packing_and_labels(IDS, LABELS, tokens=tokens)
    assert texts(fig).count("</s>") == 2 * len(IDS)  # padded and packed
    assert gids(fig, "packed:").count("packed:eos") == len(IDS)  # the last trained token of each reply
    render(fig)
    with pytest.raises(DataError, match="row 1"):
        figures.packing_and_labels(IDS, [LABELS[0], LABELS[1][:-1], LABELS[2]])


def test_dpo_pair_prints_rewards_and_loss_from_a_run():
    fig = figures.dpo_pair(beta=0.5, policy_logps=(-12.3, -20.1), ref_logps=(-14.0, -18.2))
    text = texts(fig)
    r_w, r_l = 0.5 * (-12.3 + 14.0), 0.5 * (-20.1 + 18.2)
    assert f"{r_w:+.3f}" in text and f"{r_l:+.3f}" in text
    assert f"= {math.log1p(math.exp(-(r_w - r_l))):.3f}" in text and f"{r_w - r_l:+.3f}" in text
    assert "π_ref" in text and "adapter" in text and "LoRA" in text
    render(fig)
    text = texts(figures.dpo_pair(rewards=(0.2, -0.3), prompt="写一条好评", chosen="很好", rejected="很差"))
    assert "+0.200" in text and f"{math.log1p(math.exp(-0.5)):.3f}" in text
    assert "r_rejected) =" not in texts(figures.dpo_pair())  # no numbers given, none printed


def test_a_picture_shows_itself_in_a_notebook_without_pyplot():
    png = figures.lora()._repr_png_()
    assert png.startswith(b"\x89PNG")


def test_readme_shows_the_committed_pipeline_picture():
    png = REPO / "docs" / "figures" / "pipeline.png"
    assert png.stat().st_size < 150_000
    assert "](docs/figures/pipeline.png)" in (REPO / "README.md").read_text(encoding="utf-8")

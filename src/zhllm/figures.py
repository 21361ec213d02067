"""Teaching pictures drawn by code: the kit's pipeline, LoRA / QLoRA, packing with label masks, a DPO pair.

Each function returns a matplotlib Figure (a `Picture`, which renders itself as a PNG) made of boxes, arrows
and text: the last expression of a cell, or `display(fig)`, shows it in Jupyter, Colab and on GitHub.
Chinese terms are added only when a CJK font is installed; otherwise the labels are English alone and no
glyph goes missing.
"""
import functools
import io
import math

import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from .errors import ConfigError, DataError

IGNORE = -100
FROZEN, TRAINED, MASKED, EOS, ACCENT, PLAIN = "#c9d6e3", "#f4a261", "#d9d9d9", "#d62828", "#ffd166", "#eef1f5"
_CJK_NAMES = ("Noto Sans CJK", "Noto Serif CJK", "Noto Sans SC", "Noto Sans TC", "Source Han", "WenQuanYi",
              "SimHei", "SimSun", "Microsoft YaHei", "PingFang", "Heiti", "Hiragino Sans GB", "AR PL",
              "Droid Sans Fallback")


@functools.cache
def cjk_font() -> str | None:
    """The name of an installed font that draws Chinese, or None."""
    for entry in font_manager.fontManager.ttflist:
        if any(name.lower() in entry.name.lower() for name in _CJK_NAMES):
            try:
                if all(ord(c) in FT2Font(entry.fname).get_charmap() for c in "中文词表"):
                    return entry.name
            except (OSError, RuntimeError, ValueError):
                continue
    return None


def _families() -> list[str]:
    return ["DejaVu Sans"] + ([cjk_font()] if cjk_font() else [])  # DejaVu ships with matplotlib


@functools.cache
def _charset() -> frozenset:
    codes = set()
    for family in _families():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=True)
        codes |= set(FT2Font(path).get_charmap())
    return frozenset(codes)


def drawable(text: str, limit: int | None = None) -> str:
    """`text` with characters the installed fonts cannot draw replaced by '?', cut to `limit` characters."""
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    text = "".join(c if ord(c) in _charset() else "?" for c in text)
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


class Picture(Figure):
    """A Figure that shows itself as a PNG in any notebook, with or without pyplot's inline backend."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def _zh(english: str, chinese: str, sep: str = "\n") -> str:
    return f"{english}{sep}{chinese}" if cjk_font() else english


def _canvas(width: float, height: float, xmax: float, ymax: float):
    fig = Picture(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, xmax), ylim=(0, ymax))
    ax.axis("off")
    return fig, ax


def _text(ax, x, y, s, size=8, **kw):
    kw = {"ha": "center", "va": "center", **kw}
    return ax.text(x, y, s, fontsize=size, fontfamily=_families(), parse_math=False, **kw)


def _box(ax, x, y, w, h, text="", color=PLAIN, size=8, edge="#333333", lw=1.0, **kw):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06", facecolor=color,
                                edgecolor=edge, linewidth=lw, **kw))
    if text:
        _text(ax, x + w / 2, y + h / 2, text, size=size)


def _arrow(ax, start, end, text=None, size=7, color="#333333", offset=(0, 0.12), **kw):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=color, lw=1.1,
                                 shrinkA=2, shrinkB=2, **kw))
    if text:
        _text(ax, (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, size=size,
              color=color, bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=0.8))


# ---------------------------------------------------------------- 1. the pipeline

STAGES = [  # number, stage name, what it does, Chinese term, what it writes
    ("00", "base", "English base\n(tiny Llama)", "基座模型", "model/ +\nsp.model"),
    ("01", "tokenizer", "tokenizer\nexpansion", "词表扩充", "bigger sp.model +\nresized embeddings"),
    ("02", "cpt", "continued\npretraining (QLoRA)", "增量预训练", "adapter/ ->\nmerged model/"),
    ("03", "sft", "SFT\n(instructions)", "指令微调", "model/ +\nchat template"),
    ("04", "dpo", "DPO\n(preferences)", "偏好对齐", "adapter/ ->\naligned model/"),
    ("06", "ceval", "C-Eval\nscoring", "评测", "accuracy in\nmetrics.json"),
]
SIDE = [("05", "scaling", "scaling laws", "规模定律", "plans N and D"),
        ("07", "curation", "data curation", "数据清洗", "dedup, filters,\nselection")]


def _stage_number(highlight) -> str | None:
    if highlight is None:
        return None
    names = {name: number for number, name, *_ in STAGES + SIDE}
    key = str(highlight).strip().lower()
    number = names.get(key, key.zfill(2) if key.isdigit() else key)
    if number not in names.values():
        raise ConfigError(f"highlight={highlight!r}: use a stage number 00-07 or a name ({', '.join(names)})")
    return number


def pipeline(highlight: str | int | None = None) -> Figure:
    """The kit's stages from an English base to a scored Chinese chat model, and what each one writes."""
    mark = _stage_number(highlight)
    fig, ax = _canvas(9, 3.1, 12, 4.1)
    w, gap, y, h = 1.7, 0.352, 0.85, 1.2
    lines = 3 if cjk_font() else 2
    for i, (number, _, what, zh, writes) in enumerate(STAGES):
        x = 0.03 + i * (w + gap)
        on = number == mark
        _box(ax, x, y, w, h, color=ACCENT if on else PLAIN, lw=2.2 if on else 1.0)
        _text(ax, x + w / 2, y + h - 0.2, number, size=9, weight="bold")
        _text(ax, x + w / 2, y + h / 2 - 0.12 + 0.05 * (lines == 3), _zh(what, zh), size=7.5)
        _text(ax, x + w / 2, y - 0.36, writes, size=6.5, color="#555555", style="italic")
        if i:
            _arrow(ax, (x - gap, y + h / 2), (x, y + h / 2))
    centre = [0.03 + i * (w + gap) + w / 2 for i in range(len(STAGES))]
    side_boxes = {"05": centre[1] + 0.2, "07": centre[3] + 0.5}
    for number, _, what, zh, does in SIDE:
        x, on = side_boxes[number] - w * 0.65, number == mark
        _box(ax, x, 2.85, w * 1.3, 0.95, color=ACCENT if on else "#f6f6f6", lw=2.2 if on else 1.0,
             linestyle="--")
        _text(ax, x + w * 0.65, 2.85 + 0.62, f"{number}  " + _zh(what, zh, sep=" "), size=7.5, weight="bold")
        _text(ax, x + w * 0.65, 2.85 + 0.28, does, size=6.5, color="#555555")
    _arrow(ax, (side_boxes["05"], 2.85), (centre[2] - 0.3, y + h), "compute plan", offset=(-0.1, 0))
    _arrow(ax, (side_boxes["07"] - 0.3, 2.85), (centre[2] + 0.3, y + h), "clean text", offset=(0, 0))
    _arrow(ax, (side_boxes["07"], 2.85), (centre[3] + 0.3, y + h), "selected\ninstructions",
           offset=(0.55, 0.05))
    _text(ax, 0.05, 0.1, "each stage writes runs/<profile>/<stage>/ and the next starts from it (tiny profile: "
          "03-07 start from the shipped models/tiny-zh-v1); dashed: side inputs", size=7, ha="left", color="#555555")
    return fig


# ---------------------------------------------------------------- 2. LoRA and QLoRA

def lora(d: int = 256, k: int = 256, r: int = 16, alpha: float = 32, quantized: bool = False,
         compute_dtype: str = "bf16") -> Figure:
    """A frozen weight W (d x k) beside its trainable low-rank update B A (rank r), with parameter counts.

    `quantized=True` draws QLoRA: W stored as 4-bit NF4 blocks and dequantised to `compute_dtype` per matmul.
    """
    if min(d, k, r) < 1 or r > min(d, k):
        raise ConfigError(f"need 1 <= r <= min(d, k); got d={d}, k={k}, r={r}")
    frozen, trainable = d * k, r * (d + k)
    fig, ax = _canvas(9, 3.6, 12, 4.8)
    title = "QLoRA: a 4-bit frozen base + LoRA" if quantized else "LoRA: a low-rank update beside a frozen weight"
    _text(ax, 6, 4.55, _zh(title, "低秩适配", sep="  "), size=10, weight="bold")
    _text(ax, 6, 4.2, f"h = W x + (α/r) · B A x,   α/r = {alpha:g}/{r} = {alpha / r:g}", size=8.5)
    _box(ax, 0.15, 1.75, 1.1, 0.8, f"x\nk = {k:,}", color="white", size=7.5)
    # W keeps its aspect (clamped); A and B are drawn thin, r against min(d, k)
    wx, wy, wh = 1.9, 2.3, 1.5
    ww = wh * min(2.0, max(0.5, k / d))
    label = dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.0)
    if quantized:
        bits = 4 + 32 / 64
        ax.add_patch(Rectangle((wx, wy), ww, wh, facecolor=FROZEN, edgecolor="#333333", hatch="..", lw=1))
        for j in range(1, 4):  # blocks, each with its own absmax
            ax.plot([wx, wx + ww], [wy + j * wh / 4] * 2, color="#333333", lw=0.6)
        _text(ax, wx + ww / 2, wy + wh / 2, f"W  (NF4)\n{d} x {k}", size=7.5, bbox=label)
        _text(ax, wx + ww / 2, wy - 0.3, f"{frozen:,} frozen, {bits:g} bits each\n(4-bit code + fp32 absmax "
              "per 64)", size=6.5)
        dq_x = wx + ww + 0.5
        _box(ax, dq_x, wy + wh / 2 - 0.4, 1.5, 0.8, f"dequantise\nto {compute_dtype}\nper matmul", color="white",
             size=7)
        _arrow(ax, (wx + ww, wy + wh / 2), (dq_x, wy + wh / 2))
        _text(ax, dq_x + 0.75, wy + wh / 2 + 0.65, f"{compute_dtype}: {frozen * 2:,} B\n"
              f"NF4: {math.ceil(frozen * bits / 8):,} B", size=6.5, color="#555555")
        w_out = dq_x + 1.5
    else:
        ax.add_patch(Rectangle((wx, wy), ww, wh, facecolor=FROZEN, edgecolor="#333333", lw=1))
        _text(ax, wx + ww / 2, wy + wh / 2, f"W\n{d} x {k}", size=8)
        _text(ax, wx + ww / 2, wy - 0.22, f"{frozen:,} frozen", size=7)
        w_out = wx + ww
    _arrow(ax, (1.25, 2.3), (wx, wy + wh / 2))
    thin = min(0.5, max(0.12, 1.5 * r / min(d, k)))
    a_x, a_y, a_w = 1.9, 0.75, 1.6
    ax.add_patch(Rectangle((a_x, a_y), a_w, thin, facecolor=TRAINED, edgecolor="#333333"))
    _text(ax, a_x + a_w / 2, a_y - 0.25, f"A  {r} x {k}  ({r * k:,})", size=7)
    b_x, b_y, b_h = 4.4, 0.35, 1.5
    ax.add_patch(Rectangle((b_x, b_y), thin, b_h, facecolor=TRAINED, edgecolor="#333333"))
    _text(ax, b_x + thin + 0.12, b_y + b_h / 2, f"B  {d} x {r}\n({d * r:,}; starts at 0)", size=7, ha="left")
    _arrow(ax, (1.25, 1.95), (a_x, a_y + thin / 2))
    _arrow(ax, (a_x + a_w, a_y + thin / 2), (b_x, a_y + thin / 2), f"r = {r}", offset=(0, 0.14))
    sx, sy = max(w_out + 1.0, 7.0), 2.0
    ax.add_patch(Circle((sx, sy), 0.24, facecolor="white", edgecolor="#333333"))
    _text(ax, sx, sy, "+", size=12)
    _arrow(ax, (w_out, wy + wh / 2), (sx - 0.17, sy + 0.17))
    _text(ax, (w_out + sx) / 2, (wy + wh / 2 + sy) / 2 + 0.2, "W x", size=7)
    _arrow(ax, (b_x + thin / 2, b_y + b_h), (sx - 0.2, sy - 0.12))
    _text(ax, (b_x + sx) / 2 + 0.2, (b_y + b_h + sy) / 2 - 0.22, f"× α/r = {alpha / r:g}", size=7, bbox=label)
    _arrow(ax, (sx + 0.24, sy), (sx + 0.9, sy))
    _text(ax, sx + 1.05, sy, f"h\nd = {d:,}", size=8, ha="left")
    _text(ax, 8.6, 0.75, f"trainable r (d + k) = {trainable:,}\nfrozen d k = {frozen:,}\n"
          f"trainable = {100 * trainable / frozen:.2f}% of W", size=7.5, ha="left",
          bbox=dict(facecolor="white", edgecolor="#999999", boxstyle="round"))
    ax.legend(handles=[Patch(facecolor=FROZEN, edgecolor="#333333", label="frozen"),
                       Patch(facecolor=TRAINED, edgecolor="#333333", label="trainable")],
              loc="upper right", fontsize=7, frameon=False)
    return fig


# ---------------------------------------------------------------- 3. padding vs packing, and the label mask

def packed_attention_mask(lengths: list[int]) -> np.ndarray:
    """Who may attend to whom in a padding-free batch: causal inside each example, nothing across."""
    total = sum(lengths)
    mask = np.zeros((total, total), dtype=bool)
    start = 0
    for n in lengths:
        mask[start:start + n, start:start + n] = np.tril(np.ones((n, n), dtype=bool))
        start += n
    return mask


def _kinds(ids: list[int], labels: list[int], eos_id: int | None) -> list[str]:
    """'prompt' (label -100), 'reply' (trained) or 'eos' per token; without eos_id, a reply's last token."""
    kinds = ["prompt" if label == IGNORE else "reply" for label in labels]
    for i, token in enumerate(ids):
        if eos_id is not None and token == eos_id:
            kinds[i] = "eos"
        elif eos_id is None and kinds[i] == "reply" and (i + 1 == len(ids) or labels[i + 1] == IGNORE):
            kinds[i] = "eos"
    return kinds


_CELL = {"prompt": dict(facecolor=MASKED), "reply": dict(facecolor=TRAINED), "eos": dict(facecolor=EOS),
         "pad": dict(facecolor="white", hatch="////")}


def packing_and_labels(input_ids_rows: list[list[int]], labels_rows: list[list[int]],
                       tokens: list[list[str]] | None = None, eos_id: int | None = None) -> Figure:
    """Real encoded rows as (a) a padded batch and (b) packed back to back, with (c) the packed attention mask.

    Grey tokens are masked out of the loss (label -100), orange ones are trained, red is EOS (`eos_id`; if
    None, the last token of each trained span) and hatched cells are padding. `tokens` (strings per row)
    are written into the cells when they fit.
    """
    if len(input_ids_rows) != len(labels_rows) or not input_ids_rows:
        raise DataError(f"need as many label rows as id rows, at least one: {len(input_ids_rows)} ids, "
                         f"{len(labels_rows)} labels")
    for i, (ids, labels) in enumerate(zip(input_ids_rows, labels_rows)):
        if not ids or len(ids) != len(labels):
            raise DataError(f"row {i}: {len(ids)} input_ids and {len(labels)} labels; they must match and "
                             "not be empty")
        if tokens is not None and len(tokens[i]) != len(ids):
            raise DataError(f"row {i}: {len(tokens[i])} token strings for {len(ids)} input_ids")
    lengths = [len(ids) for ids in input_ids_rows]
    kinds = [_kinds(ids, labels, eos_id) for ids, labels in zip(input_ids_rows, labels_rows)]
    n, width, total = len(lengths), max(lengths), sum(lengths)
    packed_rows = math.ceil(total / width)
    fig = Picture(figsize=(9, 2.6 + 0.16 * (n + packed_rows)))
    grid = fig.add_axes((0.02, 0.13, 0.6, 0.8))
    grid.axis("off")
    grid.set(xlim=(-0.2, width + 0.2), ylim=(-(n + packed_rows + 2.9), 0.1 + 0.5 * (tokens is not None)))
    cell_w = 0.6 * fig.get_figwidth() * 72 / (width + 0.4)  # a cell's size in points
    cell_h = 0.8 * fig.get_figheight() * 72 / (n + packed_rows + 3.0 + 0.5 * (tokens is not None))
    pad = width * n - total


    def font_size(token):  # the largest that fits the cell, up to 7 pt
        return min(7.0, cell_h * 0.6, cell_w / (0.65 * len(drawable(token, 4))))
    fits = tokens is not None and all(font_size(t) >= 4.5 for row in tokens for t in row)

    def cell(x, y, kind, gid, token=None):
        grid.add_patch(Rectangle((x, y), 1, 1, edgecolor="#666666", lw=0.4, gid=gid, **_CELL[kind]))
        if token is not None and fits:
            _text(grid, x + 0.5, y + 0.5, drawable(token, 4), size=font_size(token),
                  color="white" if kind == "eos" else "black")

    head = 0.0
    if tokens is not None and not fits:  # too narrow for every token: name a few of the first row's
        first = kinds[0]
        picks = {0, first.index("reply") if "reply" in first else 0}
        picks |= {i for i, kind in enumerate(first) if kind == "eos"}
        for i in sorted(picks):
            if drawable(tokens[0][i]).strip("?"):
                _text(grid, i + 0.5, -0.27, drawable(tokens[0][i], 8), size=6, va="bottom", color="#333333")
        head = 0.5
    _text(grid, 0, -0.3 + head, f"(a) padded batch: {n} rows x {width} = {n * width} cells, {pad} of them "
          f"padding ({100 * pad / (n * width):.0f}%)", size=7.5, ha="left", va="bottom")
    for r, row in enumerate(kinds):
        for c in range(width):
            kind = row[c] if c < len(row) else "pad"
            cell(c, -1.3 - r, kind, f"padded:{kind}", tokens[r][c] if tokens and c < len(row) else None)
    top = -1.3 - n - 0.6
    _text(grid, 0, top + 0.3, f"(b) packed: {total} tokens back to back (drawn {width} to a row), "
          "position_ids restart per example", size=7.5, ha="left", va="bottom")
    flat = [(kind, tokens[r][c] if tokens else None) for r, row in enumerate(kinds) for c, kind in enumerate(row)]
    starts = [int(s) for s in np.cumsum(lengths[:-1])]
    for i, (kind, token) in enumerate(flat):
        x, y = i % width, top - 1 - i // width
        cell(x, y, kind, f"packed:{kind}", token)
        if i in starts:  # where one example ends and the next begins
            grid.plot([x, x], [y - 0.1, y + 1.1], color="black", lw=2.2, zorder=3)
    mask_ax = fig.add_axes((0.68, 0.16, 0.3, 0.7))
    mask_ax.imshow(packed_attention_mask(lengths), cmap="Blues", vmin=0, vmax=1.4, interpolation="nearest")
    for s in starts:
        mask_ax.axhline(s - 0.5, color="#999999", lw=0.5)
        mask_ax.axvline(s - 0.5, color="#999999", lw=0.5)
    mask_ax.set_title("(c) attention in the packed batch:\ncausal within each example, none across",
                      fontsize=7.5)
    mask_ax.set_xlabel("key position", fontsize=7)
    mask_ax.set_ylabel("query position", fontsize=7)
    mask_ax.tick_params(labelsize=6)
    mask_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    mask_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(handles=[Patch(edgecolor="#666666", label=label, **_CELL[kind]) for kind, label in
                        [("prompt", "prompt (label -100): not trained"), ("reply", "reply: trained"),
                         ("eos", "EOS: trained, teaches stopping"), ("pad", "padding")]],
               loc="lower left", bbox_to_anchor=(0.02, 0.0), ncol=4, fontsize=7, frameon=False)
    return fig


# ---------------------------------------------------------------- 4. DPO

def _shown(text: str, limit: int = 40) -> str:
    missing = any(ord(c) not in _charset() for c in text if c not in "\n\t")
    return drawable(text, limit) + ("  (needs a CJK font)" if missing else "")


def dpo_pair(prompt: str = "Write a positive review of this phone.", chosen: str = "Great screen, fast, "
             "worth every yuan.", rejected: str = "Slow and the battery died in a day.", beta: float = 0.1,
             policy_logps: tuple[float, float] | None = None, ref_logps: tuple[float, float] | None = None,
             rewards: tuple[float, float] | None = None) -> Figure:
    """One preference pair through the policy (LoRA on) and the reference (same weights, adapter off).

    Numbers are optional: sequence log-probs (chosen, rejected) of policy and reference give the rewards
    beta * log(pi / pi_ref) and the loss; or pass the rewards (chosen, rejected) a run logged.
    """
    if rewards is None and policy_logps is not None and ref_logps is not None:
        rewards = tuple(beta * (p - q) for p, q in zip(policy_logps, ref_logps))
    fig, ax = _canvas(9, 3.6, 12, 4.8)
    _text(ax, 6, 4.55, _zh("DPO: make the chosen reply more likely than the rejected one, relative to the "
                           "reference", "偏好对齐", sep="  "), size=9.5, weight="bold")
    _box(ax, 0.1, 3.05, 3.6, 0.85, "prompt x\n" + _shown(prompt), color="white", size=7.5)
    _box(ax, 0.1, 1.85, 3.6, 0.85, "chosen y_w\n" + _shown(chosen), color="#d8f3dc", size=7.5,
         edge="#2d6a4f")
    _box(ax, 0.1, 0.65, 3.6, 0.85, "rejected y_l\n" + _shown(rejected), color="#ffd6d6", size=7.5,
         edge="#9d0208")
    _arrow(ax, (3.7, 3.47), (4.5, 3.47), color="#888888")
    _box(ax, 4.5, 2.55, 2.6, 1.2, "policy π_θ\nSFT weights + LoRA adapter\n(trainable)", color=TRAINED, size=7.5)
    _box(ax, 4.5, 0.75, 2.6, 1.2, "reference π_ref\nthe same weights, adapter\ndisabled (frozen, no copy)",
         color=FROZEN, size=7.5)
    for y in (2.27, 1.07):
        _arrow(ax, (3.7, y), (4.5, 3.15 if y > 2 else 1.35))
        _arrow(ax, (3.7, y), (4.5, 1.35 if y > 2 else 3.15), color="#888888")
    _text(ax, 4.1, 0.35, "each scores log π(y | x) of both replies", size=6.5, color="#555555")
    has = rewards is not None
    r_w, r_l = rewards if has else (None, None)

    def value(v):
        return f" = {v:+.3f}" if v is not None else ""
    lines = []
    for name, y, logp_i, r in (("chosen", "y_w", 0, r_w), ("rejected", "y_l", 1, r_l)):
        detail = ""
        if policy_logps is not None and ref_logps is not None:
            detail = f"\n  = {beta:g} × ({policy_logps[logp_i]:.2f} − ({ref_logps[logp_i]:.2f}))"
        lines.append(f"r_{name} = β · log π_θ({y}|x) / π_ref({y}|x){detail}{value(r)}")
    _box(ax, 7.6, 2.3, 4.3, 1.7, color="white")
    _text(ax, 7.75, 3.15, f"implicit rewards (β = {beta:g})\n\n" + "\n".join(lines), size=7, ha="left")
    loss = f" = {math.log1p(math.exp(-(r_w - r_l))):.3f}" if has else ""
    margin = f"\nmargin r_chosen − r_rejected = {r_w - r_l:+.3f}" if has else ""
    _box(ax, 7.6, 0.65, 4.3, 1.3, color=ACCENT)
    _text(ax, 9.75, 1.3, f"loss = −log σ(r_chosen − r_rejected){loss}{margin}\nfalls as the margin "
          "grows; only the adapter learns", size=7.5)
    _arrow(ax, (7.1, 3.15), (7.6, 3.15))
    _arrow(ax, (7.1, 1.35), (7.6, 2.6))
    _arrow(ax, (9.75, 2.3), (9.75, 1.95))
    return fig

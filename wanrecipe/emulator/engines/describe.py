"""description_edit (global rule table) and description_edit_with_mask (removal / recolour)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from . import prompt as words
from . import regions
from .common import Fidelity, Job, Outcome, blend, placeholder, to_u8
from .fill import fill_holes

Op = Callable[[np.ndarray, float], np.ndarray]


def _grey(rgb: np.ndarray, a: float) -> np.ndarray:
    g = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return blend(rgb, g, a)


def _sepia(rgb: np.ndarray, a: float) -> np.ndarray:
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    s = cv2.transform(rgb, m)  # saturating uint8
    return blend(rgb, s, a)


def _gain(rgb: np.ndarray, gain: float, bias: float) -> np.ndarray:
    return cv2.convertScaleAbs(rgb, alpha=gain, beta=bias)


def _brighter(rgb: np.ndarray, a: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / (1.0 + 0.8 * a)), 0, 255)
    return cv2.LUT(rgb, lut.astype(np.uint8))


def _darker(rgb: np.ndarray, a: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 + 0.8 * a), 0, 255)
    return cv2.LUT(rgb, lut.astype(np.uint8))


def _contrast(rgb: np.ndarray, a: float) -> np.ndarray:
    gain = 1.0 + 0.6 * a
    return _gain(rgb, gain, 128.0 * (1.0 - gain))


def _saturation(rgb: np.ndarray, factor: float) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = cv2.convertScaleAbs(hsv[..., 1], alpha=factor)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _tint(rgb: np.ndarray, mult: tuple[float, float, float], a: float) -> np.ndarray:
    f = rgb.astype(np.float32) * np.array(mult, np.float32)
    return blend(rgb, to_u8(f), a)


def _night(rgb: np.ndarray, a: float) -> np.ndarray:
    f = rgb.astype(np.float32) / 255.0
    dark = (f**1.8) * np.array([0.45, 0.55, 0.85], np.float32) + np.array(
        [0.0, 0.01, 0.05], np.float32
    )
    return blend(rgb, to_u8(dark * 255.0), a)


def _blur(rgb: np.ndarray, a: float) -> np.ndarray:
    sigma = 1.0 + 0.01 * max(rgb.shape[:2]) * a
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def _sharpen(rgb: np.ndarray, a: float) -> np.ndarray:
    blur = cv2.GaussianBlur(rgb, (0, 0), 2.0)
    return cv2.addWeighted(rgb, 1.0 + a, blur, -a, 0.0)


def _invert(rgb: np.ndarray, a: float) -> np.ndarray:
    return blend(rgb, 255 - rgb, a)


#: (name, English and Chinese keywords, operation). Applied in this order when several match.
RULES: tuple[tuple[str, tuple[str, ...], Op], ...] = (
    ("mirror", ("mirror", "flip horizontally", "flip", "镜像", "左右翻转", "水平翻转"),
     lambda rgb, a: np.ascontiguousarray(rgb[:, ::-1])),
    ("upside_down", ("upside down", "flip vertically", "上下翻转", "倒过来", "垂直翻转"),
     lambda rgb, a: np.ascontiguousarray(rgb[::-1])),
    ("grayscale", ("black and white", "black-and-white", "grayscale", "greyscale", "monochrome",
                   "黑白", "灰度", "单色"), _grey),
    ("sepia", ("sepia", "vintage", "old photo", "retro", "复古", "怀旧", "老照片", "泛黄"), _sepia),
    ("invert", ("invert", "negative", "反色", "负片"), _invert),
    ("night", ("night", "nighttime", "midnight", "夜晚", "夜景", "晚上", "黑夜"), _night),
    ("warmer", ("warm", "warmer", "sunset", "golden hour", "暖色", "温暖", "夕阳", "黄昏", "暖"),
     lambda rgb, a: _tint(rgb, (1.12, 1.0, 0.8), a)),
    ("cooler", ("cool", "cooler", "cold", "winter", "icy", "冷色", "冷", "冬天", "冬季", "寒冷"),
     lambda rgb, a: _tint(rgb, (0.85, 0.97, 1.15), a)),
    ("brighter", ("brighter", "brighten", "lighter", "bright",
                  "变亮", "提亮", "明亮", "调亮"), _brighter),
    ("darker", ("darker", "darken", "dim", "变暗", "调暗", "暗一些"), _darker),
    ("contrast", ("contrast", "punchy", "对比度", "对比"), _contrast),
    ("vivid", ("vivid", "saturated", "colorful", "colourful", "vibrant",
               "鲜艳", "饱和", "色彩丰富"),
     lambda rgb, a: _saturation(rgb, 1.0 + 0.8 * a)),
    ("muted", ("muted", "desaturated", "faded", "pale", "淡雅", "低饱和", "褪色"),
     lambda rgb, a: _saturation(rgb, 1.0 - 0.7 * a)),
    ("blur", ("blur", "blurry", "soft focus", "out of focus", "模糊", "虚化"), _blur),
    ("sharpen", ("sharpen", "sharper", "crisp", "锐化", "清晰"), _sharpen),
)  # fmt: skip


def matching_rules(prompt: str) -> list[str]:
    taken: list[str] = []
    for name, keys, _ in RULES:
        if words.has_any(prompt, keys):
            taken.append(name)
    # "flip vertically" contains "flip": the vertical reading wins.
    if (
        "mirror" in taken
        and "upside_down" in taken
        and not words.has_any(
            prompt, ("mirror", "镜像", "左右翻转", "水平翻转", "flip horizontally")
        )
    ):
        taken.remove("mirror")
    return taken


def run_global(job: Job) -> Outcome:
    names = matching_rules(job.prompt)
    if not names:
        return placeholder(
            job,
            f"no edit rule matched {quote(job.prompt)} (object-level edits need a generative "
            "model)",
        )
    strength = float(job.parameters.get("strength", 0.5))
    a = 0.25 + 0.75 * strength
    out = job.rgb
    ops = {name: op for name, _, op in RULES}
    for name in names:
        out = ops[name](out, a)
    note = "global adjustment: " + ", ".join(names)
    return Outcome(np.ascontiguousarray(out), "real", "rules", {"rules": ",".join(names)}, note)


REMOVAL_WORDS = (
    "remove", "erase", "delete", "clean", "get rid", "nothing", "empty",
    "去除", "删除", "去掉", "移除", "消除", "擦除", "抹去",
)  # fmt: skip


def recolour(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Keep luminance, take chroma from ``colour`` inside the (feathered) mask."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    target = cv2.cvtColor(np.array([[colour]], np.uint8), cv2.COLOR_RGB2LAB)[0, 0].astype(
        np.float32
    )
    coloured = lab.copy()
    coloured[..., 1] = target[1]
    coloured[..., 2] = target[2]
    # Lift or lower L a little towards the colour, so white or black objects can still take it.
    coloured[..., 0] = 0.7 * lab[..., 0] + 0.3 * target[0]
    new = cv2.cvtColor(to_u8(coloured), cv2.COLOR_LAB2RGB)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.5)
    alpha = np.maximum(alpha, mask.astype(np.float32))[..., None]
    return to_u8(rgb * (1.0 - alpha) + new * alpha)


#: Prompts that ask for something to be drawn in (the guide's "add" and "modify" examples:
#: "Add a hat to the puppy", "A puppy wearing a hat", "A ceramic rabbit holding a flower").
ADD_WORDS = (
    "add", "put", "place", "insert", "draw", "replace", "change", "turn", "make", "wear",
    "wearing", "holding", "hold", "with a", "carrying",
    "添加", "加上", "加一", "放", "画", "替换", "换成", "改成", "变成", "戴", "穿", "拿着", "抱着",
)  # fmt: skip


def quote(prompt: str, limit: int = 60) -> str:
    text = " ".join(prompt.split())
    return "'" + (text if len(text) <= limit else text[: limit - 1] + "…") + "'"


def _follow(job: Job, mask: np.ndarray, clause: str) -> tuple[np.ndarray, str]:
    """The mask narrowed to the region the prompt names (sky, ground), when that region is
    found and overlaps it; else the mask as painted. Second value: for the note."""
    region = words.region_of(clause)
    if region not in ("sky", "ground"):
        return mask, "the masked area"
    lum = cv2.cvtColor(job.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    found = regions.sky(lum, strict=False) if region == "sky" else regions.ground(lum)
    if found is None:
        return mask, f"the masked area (no {region} found to narrow it to)"
    both = mask & cv2.dilate(found.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if both.sum() < 0.05 * mask.sum():
        return mask, f"the masked area (the {region} found does not overlap it)"
    return both, f"the {region} inside the mask"


def run_masked(job: Job) -> Outcome:
    assert job.mask is not None
    if not job.mask.any():
        return Outcome(job.rgb.copy(), "approximate", "empty-mask",
                       {"note": "the mask selects nothing"},
                       "the mask selects nothing; input returned unchanged")  # fmt: skip
    text = job.prompt.strip()
    found = words.colours_in(text)
    removal = words.has_any(text, REMOVAL_WORDS)
    if found and not removal:
        name, rgb = found[0]
        where, place = _follow(job, job.mask, text)
        out = recolour(job.rgb, where, rgb)
        note = f"recoloured {place} {name}, keeping its light and shade (the object is not redrawn)"
        return Outcome(out, "real", "recolour", {"colour": name, "region": place}, note)
    if not text or removal:
        out, method = fill_holes(job.rgb, job.mask, job.seed, job.budget)
        fidelity: Fidelity = "approximate" if "budget" in method else "real"
        note = f"masked content removed, filled from its surroundings ({method})"
        return Outcome(out, fidelity, f"removal:{method}", {}, note)
    if words.has_any(text, ADD_WORDS):
        return placeholder(job, f"adding or replacing an object ({quote(text)}) needs a "
                                "generative model", "identity")  # fmt: skip
    # A plain description of the scene, as the guide asks for deletions ("A transparent glass
    # vase on the table"): the masked object goes, its surroundings fill in.
    out, method = fill_holes(job.rgb, job.mask, job.seed, job.budget)
    note = (
        f"read {quote(text)} as the scene after deletion: masked area filled from its "
        f"surroundings ({method}); the description itself is not drawn"
    )
    return Outcome(out, "approximate", f"removal:{method}", {}, note)

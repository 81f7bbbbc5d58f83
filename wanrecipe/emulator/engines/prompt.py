"""Reading prompts: keyword tables in English and Chinese, colour words.

English keywords match whole words only ("cool" must not fire on "school"); Chinese has no
word boundaries, so Chinese keywords match as substrings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

RGB = tuple[int, int, int]

#: Colour names (English, Chinese) and the sRGB colour each stands for.
COLOURS: Mapping[str, tuple[RGB, tuple[str, ...]]] = {
    "red": ((210, 35, 40), ("red", "crimson", "scarlet", "红色", "红的", "大红", "红花")),
    "orange": ((240, 130, 30), ("orange", "橙色", "橘色", "橙黄")),
    "yellow": ((245, 210, 40), ("yellow", "黄色", "金黄", "黄的")),
    "green": ((50, 160, 60), ("green", "绿色", "绿的", "绿叶", "翠绿")),
    "cyan": ((40, 190, 200), ("cyan", "teal", "turquoise", "青色", "青绿")),
    "blue": ((40, 90, 210), ("blue", "navy", "蓝色", "蓝的", "蓝天", "天蓝", "湛蓝")),
    "purple": ((130, 60, 180), ("purple", "violet", "lilac", "紫色", "紫的")),
    "pink": ((240, 130, 170), ("pink", "magenta", "粉色", "粉红", "粉的")),
    "brown": ((125, 80, 45), ("brown", "chocolate", "棕色", "褐色", "咖啡色")),
    "gold": ((212, 170, 60), ("gold", "golden", "金色")),
    "silver": ((190, 195, 200), ("silver", "银色")),
    "white": ((245, 245, 240), ("white", "白色", "雪白")),
    "black": ((25, 25, 28), ("black", "黑色")),
    "grey": ((128, 128, 128), ("grey", "gray", "灰色")),
    "beige": ((225, 205, 170), ("beige", "cream", "米色", "米黄")),
}

BACKGROUND_WORDS = (
    "background", "backdrop", "sky", "wall", "walls", "surroundings",
    "背景", "天空", "墙", "周围",
)  # fmt: skip

_CLAUSE_SPLIT = re.compile(r"[,，;；、。.!！?？\n]|\band\b|\bwith\b|和|与|以及")


def _is_cjk(word: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in word)


@lru_cache(maxsize=512)
def _pattern(word: str) -> re.Pattern[str]:
    if _is_cjk(word):
        return re.compile(re.escape(word))
    # Whole words, allowing a plural/verb "s" so "clouds" finds "cloud".
    return re.compile(r"(?<![a-z])" + re.escape(word.lower()) + r"(?:s|es)?(?![a-z])")


def find(prompt: str, words: Iterable[str]) -> int | None:
    """The position of the earliest of ``words`` in ``prompt``, or None."""
    text = prompt.lower()
    best: int | None = None
    for word in words:
        m = _pattern(word).search(text)
        if m and (best is None or m.start() < best):
            best = m.start()
    return best


def has_any(prompt: str, words: Iterable[str]) -> bool:
    return find(prompt, words) is not None


def pick(prompt: str, table: Mapping[str, Iterable[str]]) -> str | None:
    """The key of ``table`` whose words occur earliest in ``prompt``."""
    found = [(pos, key) for key, words in table.items() if (pos := find(prompt, words)) is not None]
    return min(found)[1] if found else None


def colours_in(prompt: str) -> list[tuple[str, RGB]]:
    """Colour words of ``prompt`` in order of appearance (each colour once)."""
    found = []
    for name, (rgb, words) in COLOURS.items():
        pos = find(prompt, words)
        if pos is not None:
            found.append((pos, name, rgb))
    return [(name, rgb) for _, name, rgb in sorted(found)]


@dataclass(frozen=True)
class ColourHint:
    name: str
    rgb: RGB
    background: bool  # the clause names the background / sky / wall


def colour_hints(prompt: str) -> list[ColourHint]:
    """(colour, where) pairs: each clause's colours, marked background if the clause says so."""
    hints: list[ColourHint] = []
    for clause in _CLAUSE_SPLIT.split(prompt):
        if not clause.strip():
            continue
        background = has_any(clause, BACKGROUND_WORDS)
        for name, rgb in colours_in(clause):
            hints.append(ColourHint(name, rgb, background))
    return hints

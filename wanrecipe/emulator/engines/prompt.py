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

#: Region nouns: where in a picture a clause's colours belong (colorization, doodle, masks).
SKY_WORDS = ("sky", "skies", "heaven", "天空", "蓝天")
GROUND_WORDS = (
    "grass", "lawn", "meadow", "field", "ground", "earth", "soil", "sand", "beach", "hill",
    "hills", "floor", "road", "path", "land",
    "草", "草地", "草坪", "地面", "地板", "土地", "沙滩", "山", "田野", "道路",
)  # fmt: skip
PERSON_WORDS = (
    "person", "people", "man", "woman", "girl", "boy", "child", "kid", "lady", "face", "skin",
    "hair", "her", "his", "he", "she", "portrait", "astronaut",
    "人", "人物", "男人", "女人", "女孩", "男孩", "孩子", "脸", "皮肤", "头发", "肖像",
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
    #: which region the clause names: "sky", "ground", "background" or "subject"
    region: str = "subject"
    clause: str = ""


#: Surfaces and surroundings a subject stands on or before: they take the background's place.
SURROUNDING_WORDS = (
    "table", "desk", "bench", "counter", "room", "curtain", "桌子", "桌面", "房间", "窗帘",
)  # fmt: skip


def region_of(clause: str) -> str:
    """The region a clause names: sky, ground, background, else the subject."""
    if has_any(clause, SKY_WORDS):
        return "sky"
    if has_any(clause, GROUND_WORDS):
        return "ground"
    if has_any(clause, BACKGROUND_WORDS) or has_any(clause, SURROUNDING_WORDS):
        return "background"
    return "subject"


def _colour_positions(clause: str) -> list[tuple[int, str, RGB]]:
    found = []
    for name, (rgb, words) in COLOURS.items():
        pos = find(clause, words)
        if pos is not None:
            found.append((pos, name, rgb))
    return sorted(found)


def _near(clause: str, pos: int, after: bool) -> str:
    """A few words (English) or characters (Chinese) right after / before position ``pos``."""
    if after:
        rest = clause[pos:]
        return rest[:6] if _is_cjk(rest[:2]) else " ".join(rest.split()[:3])
    head = clause[:pos]
    return head[-4:] if _is_cjk(head[-2:]) else " ".join(head.split()[-3:])


def colour_hints(prompt: str) -> list[ColourHint]:
    """(colour, where) pairs. A colour belongs to the region named right after it ("a blue sky
    over brown ground", "蓝色背景"), else right before it ("the sky is blue"), else to the
    subject."""
    hints: list[ColourHint] = []
    for clause in _CLAUSE_SPLIT.split(prompt):
        if not clause.strip():
            continue
        background = has_any(clause, BACKGROUND_WORDS)
        for pos, name, rgb in _colour_positions(clause):
            region = region_of(_near(clause, pos, True))
            if region == "subject":
                region = region_of(_near(clause, pos, False))
            hints.append(ColourHint(name, rgb, background, region, clause.strip()))
    return hints

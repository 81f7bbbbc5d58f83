"""``report.yaml_block.dump``: the bytes of PyYAML's SafeDumper, or None (then PyYAML writes)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from wanrecipe.report import yaml_block

OPTIONS: dict[str, Any] = {
    "sort_keys": False,
    "default_flow_style": False,
    "allow_unicode": True,
    "width": 10_000,
}


def pyyaml(value: Any) -> str:
    return yaml.dump(value, Dumper=yaml.SafeDumper, **OPTIONS)


#: Words the resolver reads as other types, indicators, and the spaces around them.
_WORDS = st.sampled_from(
    ["true", "No", "null", "~", "yes", "1.5", "1e3", "0x1F", "-7", "+3", "2001-12-14", "=",
     "<<", "---", "...", ".inf", "-.nan", "0o17", "1_000", "12:30:45", "a", "key", "é", "中"]
)  # fmt: skip
_CHARS = st.text(alphabet=list("ab -:#'\"?,[]{}&*!|>%@`.09eE+_~=\t\n\\/"), max_size=12)
TEXT = st.one_of(_WORDS, _CHARS, st.lists(st.one_of(_WORDS, _CHARS), max_size=4).map(" ".join))
SCALAR = st.one_of(TEXT, st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=8))
DOCUMENT = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(TEXT, DOCUMENT, min_size=1, max_size=5))
def test_same_bytes_as_pyyaml_or_none(document: dict[str, Any]) -> None:
    fast = yaml_block.dump(document)
    if fast is not None:
        assert fast == pyyaml(document)


#: What the fast path takes whole: printable ASCII, no list directly in a list.
_ASCII_WORDS = _WORDS.filter(str.isascii)
_ASCII_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
PLAIN_TEXT = st.one_of(_ASCII_WORDS, _ASCII_TEXT, st.lists(_ASCII_WORDS, max_size=4).map(" ".join))
PLAIN_SCALAR = st.one_of(PLAIN_TEXT, st.integers(), st.floats(), st.booleans(), st.none())
PLAIN_KEY = PLAIN_TEXT.filter(bool)
PLAIN_DOCUMENT = st.recursive(
    PLAIN_SCALAR,
    lambda inner: (
        st.lists(PLAIN_SCALAR | st.dictionaries(PLAIN_KEY, inner, max_size=3), max_size=4)
        | st.dictionaries(PLAIN_KEY, inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(PLAIN_KEY, PLAIN_DOCUMENT, min_size=1, max_size=5))
def test_plain_documents_take_the_fast_path_with_the_same_bytes(document: dict[str, Any]) -> None:
    fast = yaml_block.dump(document)
    assert fast is not None
    assert fast == pyyaml(document)


def lock_like(steps: int) -> dict[str, Any]:
    """A lock document as ``build_lock`` makes them, with the values that need quoting."""
    return {
        "version": 1,
        "recipe": "old-photo",
        "params": {"factor": 2, "photo": {"source": "images/old-photo.jpg", "sha256": "ab"}},
        "images": steps,
        "cost_usd": "0.060210",
        "steps": {
            f"s{i:04d}": {
                "function": "super_resolution",
                "prompt": f"sharpen it: keep the #{i} grain, 'as is'" if i % 2 else "x",
                "parameters": {"seed": i, "strength": 0.5, "upscale_factor": 2, "n": 1},
                "inputs": {
                    "base_image_url": {
                        "source": "images/old-photo.jpg" if i else "steps.colorize.images[0]",
                        "sha256": "3a7dff0f1b40069b75c1ea77f70a5a39961d150e3773527b545e05598e7",
                        "size": 1880,
                        "width": 512,
                        "height": 512,
                    }
                },
                "key": "7d5c5551097f309154d17743444ea6946cc538241b7ac2e354801119583de971",
                "task_id": None if i == 3 else "086b5170-023e-47f1-986e-a1260579870f",
                "backend": "url:127.0.0.1:33739",
                "images": 1,
                "cost_usd": "0.020070",
                "outputs": [
                    {
                        "file": f"s{i:04d}.png",
                        "sha256": "c9",
                        "size": 2247,
                        "width": 512,
                        "height": 512,
                    },
                    {"file": f"s{i:04d}-2.png", "sha256": "d0", "size": 2, "width": 1, "height": 1},
                ],
                "empty": {},
                "none": [],
            }
            for i in range(steps)
        },
    }


def test_a_lock_document_is_written_by_the_fast_path() -> None:
    document = lock_like(40)
    fast = yaml_block.dump(document)
    assert fast is not None  # the path a lock file takes: it must not fall back
    assert fast == pyyaml(document)
    assert yaml.safe_load(fast) == document


def test_what_it_leaves_to_pyyaml() -> None:
    assert yaml_block.dump({"prompt": "给照片上色"}) is None  # beyond printable ASCII
    assert yaml_block.dump({"a": [[1, 2]]}) is None  # a list in a list
    assert yaml_block.dump({"k" * 128: 1}) is None  # a complex key
    assert yaml_block.dump({"": 1}) is None  # a complex key too
    assert yaml_block.dump({"a": "x" * 9000}) is None  # a line PyYAML may fold
    assert yaml_block.dump({"a": (1, 2)}) is None  # another type
    assert yaml_block.dump({}) is None and yaml_block.dump([1]) is None

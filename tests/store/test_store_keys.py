from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wanrecipe.store import canonical_json, content_key

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()


def key(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "model": "wanx2.1-imageedit",
        "function": "super_resolution",
        "prompt": "Image super resolution",
        "parameters": {"seed": 7, "upscale_factor": 2, "n": 1},
        "inputs": {"base_image_url": SHA_A},
    }
    args.update(overrides)
    return content_key(**args)


def test_known_vector_is_stable():
    # Pinned: changing the canonical form silently invalidates every user's cache. If this must
    # change, bump KEY_VERSION and update the value on purpose.
    document = (
        '{"function":"super_resolution","inputs":{"base_image_url":"SHA"},'
        '"model":"wanx2.1-imageedit","parameters":{"n":1,"seed":7,"upscale_factor":2},'
        '"prompt":"Image super resolution","v":"wanrecipe-key/1"}'
    ).replace("SHA", SHA_A)
    assert key() == hashlib.sha256(document.encode()).hexdigest()
    assert key() == "138d5a56f9025b80aaab162ffb9a28bfb07c561ede54ac2c4c264e80853ff156"


def test_canonical_json_form():
    assert (
        canonical_json({"b": [1.0, True, None], "a": "é"}) == '{"a":"é","b":[1,true,null]}'.encode()
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [(2, 2.0), (0, -0.0), (1.5, 1.5), ((1, 2), [1, 2]), (10**3, 1e3)],
)
def test_numbers_by_value(left: Any, right: Any):
    assert key(parameters={"seed": 1, "x": left}) == key(parameters={"seed": 1, "x": right})


@pytest.mark.parametrize(
    ("left", "right"), [(True, 1), (False, 0), (None, 0), ("1", 1), (0.1, 0.10000000000000002)]
)
def test_values_that_must_not_collide(left: Any, right: Any):
    assert key(parameters={"seed": 1, "x": left}) != key(parameters={"seed": 1, "x": right})


def test_seed_is_required_and_part_of_the_key():
    with pytest.raises(ValueError, match="seed"):
        key(parameters={"n": 1})
    assert key(parameters={"seed": 1}) != key(parameters={"seed": 2})


@pytest.mark.parametrize("bad", ["A" * 64, "a" * 63, "xyz", 123])
def test_input_hashes_are_validated(bad: Any):
    with pytest.raises(ValueError, match="base_image_url"):
        key(inputs={"base_image_url": bad})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (b"x", TypeError),
        ({1, 2}, TypeError),
        ({1: "a"}, TypeError),
        (object(), TypeError),
    ],
)
def test_non_json_values_are_refused(value: Any, error: type[Exception]):
    with pytest.raises(error):
        key(parameters={"seed": 1, "x": value})


def test_string_fields_must_be_strings():
    with pytest.raises(TypeError, match="prompt"):
        key(prompt=None)


def test_field_boundaries_do_not_blur():
    assert key(function="ab", prompt="c") != key(function="a", prompt="bc")
    assert key(prompt="", parameters={"seed": 1, "p": "x"}) != key(
        prompt="x", parameters={"seed": 1, "p": ""}
    )


def test_roles_matter_not_just_hashes():
    assert key(inputs={"base_image_url": SHA_A, "mask_image_url": SHA_B}) != key(
        inputs={"base_image_url": SHA_B, "mask_image_url": SHA_A}
    )
    assert key(inputs={"base_image_url": SHA_A}) != key(inputs={"mask_image_url": SHA_A})


# -- properties ---------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
params = st.dictionaries(st.text(max_size=12), json_values, max_size=6).map(
    lambda d: {**d, "seed": d.get("seed", 0)}
)
digests = st.binary(max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
inputs = st.dictionaries(
    st.sampled_from(["base_image_url", "mask_image_url", "x"]), digests, max_size=3
)


def shuffled(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, dict):
        items = [(k, shuffled(v, rnd)) for k, v in value.items()]
        rnd.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [shuffled(v, rnd) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(params, inputs, st.randoms(use_true_random=False))
def test_dict_order_does_not_matter(p: dict[str, Any], i: dict[str, str], rnd: random.Random):
    assert key(parameters=p, inputs=i) == key(parameters=shuffled(p, rnd), inputs=shuffled(i, rnd))


@settings(max_examples=150, deadline=None)
@given(params, inputs, params, inputs)
def test_key_equal_iff_canonical_data_equal(
    p1: dict[str, Any], i1: dict[str, str], p2: dict[str, Any], i2: dict[str, str]
):
    # Compare JSON text, not canonical() values: in Python True == 1.
    same = canonical_json(p1) == canonical_json(p2) and i1 == i2
    assert (key(parameters=p1, inputs=i1) == key(parameters=p2, inputs=i2)) == same


@settings(max_examples=150, deadline=None)
@given(params, inputs, st.data())
def test_any_single_change_changes_the_key(
    p: dict[str, Any], i: dict[str, str], data: st.DataObject
):
    base = key(parameters=p, inputs=i)
    name = data.draw(st.sampled_from(sorted(p)))
    new_value = data.draw(json_values)
    assume(canonical_json(new_value) != canonical_json(p[name]))
    assert key(parameters={**p, name: new_value}, inputs=i) != base
    extra = data.draw(st.text(max_size=12).filter(lambda k: k not in p))
    assert key(parameters={**p, extra: None}, inputs=i) != base
    if i:
        role = data.draw(st.sampled_from(sorted(i)))
        other = data.draw(digests.filter(lambda d: d != i[role]))
        assert key(parameters=p, inputs={**i, role: other}) != base
        assert key(parameters=p, inputs={k: v for k, v in i.items() if k != role}) != base
    text = data.draw(st.text(max_size=10))
    assert (key(parameters=p, inputs=i, prompt=text) == base) == (text == "Image super resolution")
    assert (key(parameters=p, inputs=i, model=text) == base) == (text == "wanx2.1-imageedit")
    assert (key(parameters=p, inputs=i, function=text) == base) == (text == "super_resolution")

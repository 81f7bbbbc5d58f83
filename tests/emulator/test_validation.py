"""Properties of submit validation (pure, no server)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanrecipe import wire
from wanrecipe.emulator.validation import parse_submit
from wanrecipe.errors import BackendError
from wanrecipe.loopback import is_loopback_host

from .emu_helpers import body

IMAGE = "http://127.0.0.1:9/a.png"


def _value(spec: wire.ParamSpec, inside: bool) -> st.SearchStrategy[Any]:
    if spec.type == "boolean":
        return st.booleans() if inside else st.sampled_from([0, 1, "true", "false"])
    lo, hi = spec.minimum, spec.maximum
    assert lo is not None and hi is not None
    if spec.type == "integer":
        if inside:
            return st.integers(int(lo), int(hi))
        return st.one_of(st.integers(max_value=int(lo) - 1), st.integers(min_value=int(hi) + 1))
    if inside:
        return st.floats(float(lo), float(hi))
    return st.one_of(
        # Clear of the bounds: -0.0 would compare equal to a minimum of 0.0.
        st.floats(max_value=float(lo) - 1e-9, allow_nan=False, allow_infinity=False),
        st.floats(min_value=float(hi) + 1e-9, allow_nan=False, allow_infinity=False),
    )


@st.composite
def _case(draw: st.DrawFn, inside: bool) -> tuple[str, str, Any]:
    function = draw(st.sampled_from(wire.FUNCTIONS))
    name = draw(st.sampled_from(wire.FUNCTION_PARAMS[function]))
    value = draw(_value(wire.PARAMS[name], inside).filter(lambda v: v is not None))
    return function, name, value


def _payload(function: str, **params: Any) -> dict[str, Any]:
    mask = IMAGE if function in wire.MASK_FUNCTIONS else None
    return body(function, IMAGE, mask=mask, **params)


@given(_case(inside=True))
def test_every_in_range_value_is_accepted(case: tuple[str, str, Any]):
    function, name, value = case
    req = parse_submit(_payload(function, **{name: value}), oss_resolve=False)
    got = {"n": req.n, "seed": req.seed, **req.parameters}[name]
    assert got == value


@given(_case(inside=False))
def test_every_out_of_range_value_is_refused(case: tuple[str, str, Any]):
    function, name, value = case
    with pytest.raises(BackendError) as info:
        parse_submit(_payload(function, **{name: value}), oss_resolve=False)
    assert (info.value.status, info.value.code) == (400, "InvalidParameter")
    assert name in info.value.message


def test_defaults_are_filled_per_function():
    req = parse_submit(_payload("expand"), oss_resolve=False)
    assert req.parameters == {
        "watermark": False, "top_scale": 1.0, "bottom_scale": 1.0, "left_scale": 1.0,
        "right_scale": 1.0,
    }  # fmt: skip
    assert (req.n, req.seed) == (1, None)


@pytest.mark.parametrize(
    ("host", "ok"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST", True),
     ("::1", True), ("[::1]", True), ("10.0.0.1", False), ("0.0.0.0", False),
     ("example.com", False), ("127.0.0.1.nip.io", False), ("localhost.example", False),
     ("", False), (None, False)],
)  # fmt: skip
def test_loopback_hosts(host: str | None, ok: bool):
    assert is_loopback_host(host) is ok

"""Retry policies and error classification."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wanrecipe import wire
from wanrecipe.errors import BackendError, TaskFailed, TaskWaitTimeout, TransportError
from wanrecipe.executor.retry import (
    ErrorClass,
    RetryPolicy,
    classify,
    is_throttled,
    read_retryable,
    submit_is_retryable,
    task_failure_is_transient,
)


@given(
    base=st.floats(0, 5),
    extra=st.floats(0, 60),
    jitter=st.floats(0, 1),
    retry=st.integers(1, 50),
    seed=st.integers(0, 2**32),
)
def test_delay_is_bounded_and_jittered(
    base: float, extra: float, jitter: float, retry: int, seed: int
) -> None:
    policy = RetryPolicy(attempts=3, base=base, cap=base + extra, jitter=jitter)
    full = min(policy.cap, base * 2 ** (retry - 1))
    delay = policy.delay(retry, random.Random(seed))
    assert full * (1 - jitter) - 1e-9 <= delay <= full + 1e-9


def test_delays_grow_then_cap() -> None:
    policy = RetryPolicy(attempts=9, base=0.5, cap=4.0, jitter=0.0)
    assert [policy.delay(k) for k in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.with_attempts(2) == RetryPolicy(2, 0.5, 4.0, 0.0)
    assert RetryPolicy(throttle_attempts=3).with_attempts(1).throttle_attempts == 3


def test_policy_validation() -> None:
    for bad in (
        {"attempts": 0},
        {"base": 2.0, "cap": 1.0},
        {"jitter": 1.5},
        {"throttle_attempts": -1},
        {"throttle_base": 30.0},
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def api(status: int, code: str = "X") -> BackendError:
    return BackendError(code, "m", status=status)


CASES: list[tuple[BaseException, ErrorClass, bool, bool]] = [
    # error, class, submit may be repeated, a read may be repeated
    (api(429, "Throttling.RateQuota"), ErrorClass.THROTTLED, True, True),
    (api(500, "InternalError"), ErrorClass.SERVER, True, True),
    (api(503, "ModelUnavailable"), ErrorClass.SERVER, True, True),
    (api(408, "RequestTimeOut"), ErrorClass.SERVER, True, True),
    (api(400, "InvalidParameter"), ErrorClass.CLIENT, False, False),
    (api(401, "InvalidApiKey"), ErrorClass.CLIENT, False, False),
    (api(403, "AccessDenied"), ErrorClass.CLIENT, False, False),
    (TransportError("ConnectError", "m", reached_server=False), ErrorClass.NOT_SENT, True, True),
    (TransportError("ReadTimeout", "m", reached_server=None), ErrorClass.UNCERTAIN, False, True),
    (TransportError("Bad", "m", reached_server=True), ErrorClass.UNCERTAIN, False, True),
    (TransportError("HTTP502", "m", status=502), ErrorClass.UNCERTAIN, False, True),
    (TransportError("HTTP429", "m", status=429), ErrorClass.THROTTLED, True, True),
    (TransportError("AccessDenied", "m", status=403), ErrorClass.CLIENT, False, False),
    (TaskWaitTimeout("WaitTaskTimeout", "m"), ErrorClass.TIMEOUT, False, False),
    (TaskFailed("InternalError", "m"), ErrorClass.TASK_FAILED, False, False),
]


@pytest.mark.parametrize(("exc", "kind", "submit_ok", "read_ok"), CASES)
def test_classification(
    exc: BaseException, kind: ErrorClass, submit_ok: bool, read_ok: bool
) -> None:
    assert classify(exc) is kind
    assert submit_is_retryable(exc) is submit_ok
    assert read_retryable(exc) is read_ok


def test_throttling_has_its_own_budget() -> None:
    assert is_throttled(api(429)) and not is_throttled(api(500))
    policy = RetryPolicy(attempts=2, base=0.1, cap=0.1, jitter=0.0, throttle_base=3, throttle_cap=9)
    assert [policy.throttle_delay(k) for k in (1, 2, 3)] == [3, 6, 9]
    assert policy.delay(5) == 0.1


def test_non_backend_errors_are_bugs() -> None:
    with pytest.raises(TypeError):
        classify(KeyError("x"))


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("InternalError", True),
        ("InternalError.Algo", True),
        ("InternalError.Timeout", True),
        ("InternalError.Something", True),
        ("RequestTimeOut", True),
        ("SystemError", True),
        ("InvalidParameter", False),
        ("DataInspectionFailed", False),
        ("IPInfringementSuspect", False),
        ("InvalidURL", False),
        (None, False),
        ("", False),
    ],
)
def test_task_failure_codes(code: str | None, transient: bool) -> None:
    assert task_failure_is_transient(code) is transient


def test_every_documented_code_is_classified_on_purpose() -> None:
    transient = {c for c in wire.ERRORS if task_failure_is_transient(c)}
    assert transient == {
        "InternalError", "InternalError.Algo", "InternalError.Timeout", "SystemError",
        "RequestTimeOut", "ModelUnavailable",
    }  # fmt: skip

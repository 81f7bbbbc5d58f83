"""Retry policies and the classification of errors into what may be retried, and how.

The rules (DESIGN.md, "Scheduling"):
- throttling (429) waits and retries on its own budget, for every kind of request;
- 5xx and network errors retry on queries and downloads;
- a submit is retried only when the request surely never reached the server, or the server
  answered with a JSON error (429/5xx: it refused, no task was created);
- a FAILED task is re-submitted only for transient codes (``InternalError*``, timeouts).
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from dataclasses import dataclass

from .. import wire
from ..errors import BackendError, TaskFailed, TaskWaitTimeout, TransportError

#: FAILED-task codes that are final whatever ``wire.is_transient`` might say.
FINAL_TASK_CODES = frozenset({"InvalidParameter", "DataInspectionFailed", "IPInfringementSuspect"})


_RNG = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all (1 = no retry), exponential backoff from ``base`` up to ``cap``
    seconds, ``jitter`` the fraction of each delay drawn at random. Throttling (429) draws on
    its own budget: ``throttle_attempts`` retries, backoff from ``throttle_base`` to
    ``throttle_cap``."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0
    jitter: float = 0.5
    throttle_attempts: int = 8
    throttle_base: float = 1.0
    #: The service "typically resumes within one minute" after throttling.
    throttle_cap: float = 20.0
    #: Keep retrying 5xx and network errors past ``attempts`` until the step's timeout: a
    #: service that goes away for seconds (a restart, a network blip) is waited for.
    until_deadline: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.throttle_attempts < 0:
            raise ValueError("attempts must be >= 1 and throttle_attempts >= 0")
        if self.base < 0 or self.cap < self.base:
            raise ValueError("need 0 <= base <= cap")
        if self.throttle_base < 0 or self.throttle_cap < self.throttle_base:
            raise ValueError("need 0 <= throttle_base <= throttle_cap")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        return _backoff(self.base, self.cap, self.jitter, retry, rng)

    def throttle_delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` after a 429."""
        return _backoff(self.throttle_base, self.throttle_cap, self.jitter, retry, rng)

    def with_attempts(self, attempts: int) -> RetryPolicy:
        """The same backoff with another number of attempts (a step's ``retry:``)."""
        return dataclasses.replace(self, attempts=attempts)


def out_of_time(policy: RetryPolicy, failures: int, delay: float, deadline: float) -> bool:
    """Whether to give up after ``failures`` failed tries, the next one ``delay`` s away:
    ``attempts`` tries are always made; with ``until_deadline`` more follow while the next
    one would start before ``deadline`` (``time.monotonic()``)."""
    if failures < policy.attempts:
        return False
    return not policy.until_deadline or time.monotonic() + delay >= deadline


def _backoff(
    base: float, cap: float, jitter: float, retry: int, rng: random.Random | None
) -> float:
    full = min(cap, base * 2.0 ** max(0, retry - 1))
    draw = (rng if rng is not None else _RNG).random()
    return full * (1.0 - jitter) + full * jitter * draw


#: 5xx / network errors on queries, downloads, uploads, and never-sent submits; 429 anywhere.
DEFAULT_POLICY = RetryPolicy()
#: Re-submitting a task that ended FAILED with a transient code (it costs a new task).
TASK_POLICY = RetryPolicy(attempts=2, base=2.0, cap=10.0)


class ErrorClass(enum.Enum):
    """What kind of failure an exception is, for the purpose of retrying."""

    THROTTLED = "throttled"  # 429: the server refused for rate or quota
    SERVER = "server"  # 5xx answered by the service (JSON body): it refused
    NOT_SENT = "not_sent"  # surely never reached the server
    UNCERTAIN = "uncertain"  # may have reached the server: dropped, read timeout, bad gateway
    TIMEOUT = "timeout"  # our own wait for a task ran out; the task may still run
    CLIENT = "client"  # 4xx other than 429: retrying cannot help
    TASK_FAILED = "task_failed"  # the task ended FAILED (see task_failure_is_transient)


def classify(exc: BaseException) -> ErrorClass:
    if isinstance(exc, TaskWaitTimeout):
        return ErrorClass.TIMEOUT
    if isinstance(exc, TaskFailed):
        return ErrorClass.TASK_FAILED
    if isinstance(exc, TransportError):
        if exc.reached_server is False:
            return ErrorClass.NOT_SENT
        if exc.status == 429:
            return ErrorClass.THROTTLED
        if 400 <= exc.status < 500:
            return ErrorClass.CLIENT  # e.g. an object store's 403 for an expired URL
        # Dropped, timed out after sending, or a gateway's non-JSON 5xx page: the API may
        # have the request.
        return ErrorClass.UNCERTAIN
    if isinstance(exc, BackendError):
        if exc.status == 429:
            return ErrorClass.THROTTLED
        if exc.status >= 500 or exc.status == 408:
            return ErrorClass.SERVER  # the service's own JSON refusal: nothing was created
        return ErrorClass.CLIENT
    raise TypeError(f"not a backend error: {type(exc).__name__}") from None


def submit_is_retryable(exc: BaseException) -> bool:
    """Whether a failed submit can be sent again without risking a second (billed) task."""
    return classify(exc) in (ErrorClass.THROTTLED, ErrorClass.SERVER, ErrorClass.NOT_SENT)


def read_retryable(exc: BaseException) -> bool:
    """Whether a failed query, download, list or upload is worth another try."""
    return classify(exc) in (
        ErrorClass.THROTTLED,
        ErrorClass.SERVER,
        ErrorClass.NOT_SENT,
        ErrorClass.UNCERTAIN,
    )


def is_throttled(exc: BaseException) -> bool:
    """429: retry on the throttling budget (``RetryPolicy.throttle_*``)."""
    return classify(exc) is ErrorClass.THROTTLED


def task_failure_is_transient(code: str | None) -> bool:
    """Whether a task that ended FAILED with ``code`` may succeed when submitted again."""
    if not code or code in FINAL_TASK_CODES:
        return False
    return wire.is_transient(code)

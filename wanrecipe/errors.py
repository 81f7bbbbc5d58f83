"""The exception tree. Imports nothing from wanrecipe.

Every class also inherits the stdlib type a caller would naturally catch, so library users can
write ``except ValueError`` and still get our errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in a recipe or its inputs, pinned to a source location.

    ``path`` is the dotted location inside the recipe (``steps.upscale.parameters.n``), ``file``
    the file as the user named it, ``line``/``column`` 1-based (0 when unknown).
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: Severity = "error"
    hint: str | None = field(default=None, compare=False)

    def format(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}" if self.column else f":{self.line}"
        head = f"{where}: {self.severity}: "
        if self.path:
            head += f"{self.path}: "
        text = head + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class WanRecipeError(Exception):
    """Root of every error wanrecipe raises on purpose."""


class RecipeError(WanRecipeError, ValueError):
    """The recipe (or its params or local inputs) is invalid; nothing was sent anywhere."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        first = errors[0].format() if errors else "invalid recipe"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")


class ImageInputError(WanRecipeError, ValueError):
    """An image input cannot be used: unreadable, wrong format, wrong size, too large."""


class UsageError(WanRecipeError, ValueError):
    """The command line or API call is inconsistent (unknown backend, missing key, ...)."""


class StoreError(WanRecipeError, RuntimeError):
    """The state directory (image store, journal) is unusable or was asked an impossible change."""


class BackendError(WanRecipeError, RuntimeError):
    """The service answered with an error, or could not be reached.

    ``code`` and ``message`` are the service's own (``Throttling.RateQuota``, ...); ``status``
    is the HTTP status (0 when no response arrived).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 0,
        request_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.task_id = task_id
        where = f"HTTP {status} " if status else ""
        super().__init__(f"{where}{code}: {message}")


class TransportError(BackendError, ConnectionError):
    """No usable response: connection refused or dropped, timeout, malformed body.

    ``reached_server`` says whether the request may have been acted on: ``False`` when it surely
    never reached the server (refused, DNS, connect timeout: a submit is safe to repeat),
    ``True`` when it did (a malformed answer), ``None`` when unknown (dropped or timed out after
    sending: a submit may have created a task).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 0,
        request_id: str | None = None,
        task_id: str | None = None,
        reached_server: bool | None = None,
    ) -> None:
        super().__init__(code, message, status=status, request_id=request_id, task_id=task_id)
        self.reached_server = reached_server


class TaskFailed(BackendError):
    """A task ended FAILED, CANCELED or UNKNOWN."""


class TaskWaitTimeout(BackendError, TimeoutError):
    """A task did not reach a terminal state within the allowed wait (code ``WaitTaskTimeout``).

    The task may still be running (and bill): re-attach to ``task_id`` rather than re-submit.
    """

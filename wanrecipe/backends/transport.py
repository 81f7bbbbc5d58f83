"""The one boundary where aiohttp's failures become wanrecipe errors.

Each mapped error says whether the request may have reached the server (``reached_server``):
that is what decides whether a failed submit can be sent again without risking a second,
billed task. "Headers sent" is observed with an aiohttp trace hook: until then nothing of the
request has left this process, whatever the failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any, Final

import aiohttp

from ..errors import TransportError
from ..redact import redact_text


def _optional(
    name: str, code: str, reached: bool | None
) -> tuple[tuple[type[BaseException], str, bool | None], ...]:
    kind = getattr(aiohttp, name, None)
    return ((kind, code, reached),) if isinstance(kind, type) else ()


#: aiohttp failure -> (our code, whether the request may have reached the server once headers
#: went out). Order matters: subclasses first. ``None`` = unknown.
ERROR_KINDS: Final[tuple[tuple[type[BaseException], str, bool | None], ...]] = (
    (aiohttp.ClientConnectorDNSError, "DNSError", False),
    (aiohttp.ClientConnectorCertificateError, "TLSCertificateError", False),
    (aiohttp.ClientSSLError, "TLSError", False),
    (aiohttp.ClientProxyConnectionError, "ProxyConnectError", False),
    (aiohttp.ClientConnectorError, "ConnectError", False),
    (aiohttp.ConnectionTimeoutError, "ConnectTimeout", False),
    (aiohttp.SocketTimeoutError, "ReadTimeout", None),
    (aiohttp.ServerTimeoutError, "ReadTimeout", None),
    (aiohttp.ServerDisconnectedError, "ServerDisconnected", None),
    (aiohttp.ServerFingerprintMismatch, "TLSFingerprintMismatch", False),
    (aiohttp.ClientPayloadError, "PayloadError", True),
    (aiohttp.ContentTypeError, "MalformedResponse", True),
    (aiohttp.TooManyRedirects, "TooManyRedirects", True),
    (aiohttp.ClientResponseError, "BadResponse", True),
    (aiohttp.InvalidURL, "InvalidURL", False),
    (aiohttp.NonHttpUrlClientError, "InvalidURL", False),
    (aiohttp.ClientConnectionResetError, "ConnectionReset", None),
    (aiohttp.ClientOSError, "ConnectionError", None),
    (aiohttp.ClientConnectionError, "ConnectionError", None),
    *_optional("UploadAbortedError", "UploadAborted", None),  # aiohttp >= 3.12
    (aiohttp.ClientError, "ClientError", None),
    (TimeoutError, "Timeout", None),
    (ConnectionError, "ConnectionError", None),
)

#: Every class above, for the test that checks each one is mapped.
MAPPED_ERRORS: Final = tuple(kind for kind, _, _ in ERROR_KINDS)


class RequestProbe(dict[str, Any]):
    """Passed as ``trace_request_ctx``; the trace hook marks when headers left."""

    @property
    def sent(self) -> bool:
        return bool(self.get("sent"))


async def _on_headers_sent(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    probe = ctx.trace_request_ctx
    if isinstance(probe, MutableMapping):
        probe["sent"] = True


def trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_on_headers_sent)
    return config


def _kind_of(exc: BaseException) -> tuple[str, bool | None]:
    for kind, code, reached_if_sent in ERROR_KINDS:
        if isinstance(exc, kind):
            return code, reached_if_sent
    raise TypeError(f"not a transport failure: {type(exc).__name__}") from exc


def map_error(exc: BaseException, what: str, *, sent: bool) -> TransportError:
    """Translate one aiohttp / socket failure of request ``what`` (already redacted)."""
    code, reached_if_sent = _kind_of(exc)
    reached = reached_if_sent if sent else False
    if reached_if_sent is True:
        reached = True  # a response (status line) was read: the server has the request
    detail = redact_text(str(exc)) or type(exc).__name__
    where = "before sending" if not sent else "after sending"
    if reached_if_sent is True:
        where = "in the answer"
    return TransportError(code, f"{what}: {detail} ({where})", reached_server=reached)


def is_transport_failure(exc: BaseException) -> bool:
    return isinstance(exc, MAPPED_ERRORS) and not isinstance(exc, asyncio.CancelledError)

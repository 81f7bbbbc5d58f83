"""Every aiohttp failure kind we expect is mapped, with the right "may it have reached the
server" answer. (The end-to-end cases, refused/dropped/timeout, are in test_dashscope_client.)"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import aiohttp
import pytest
import yarl
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy

from wanrecipe.backends.transport import ERROR_KINDS, MAPPED_ERRORS, map_error
from wanrecipe.errors import TransportError
from wanrecipe.executor.retry import submit_is_retryable

KEY = ConnectionKey("api.example.test", 443, True, True, None, None, None, None)
REFUSED = ConnectionRefusedError(111, "Connection refused")
_URL = yarl.URL("https://api.example.test/r.png?Expires=1&Signature=secret")
INFO = aiohttp.RequestInfo(_URL, "GET", CIMultiDictProxy(CIMultiDict()), _URL)

#: One instance of each class in ERROR_KINDS, built the way aiohttp builds it.
FACTORIES: dict[type[BaseException], Callable[[], BaseException]] = {
    aiohttp.ClientConnectorDNSError: lambda: aiohttp.ClientConnectorDNSError(
        KEY, OSError(-2, "Name or service not known")
    ),
    aiohttp.ClientConnectorCertificateError: lambda: aiohttp.ClientConnectorCertificateError(
        KEY, ssl.SSLCertVerificationError("certificate verify failed")
    ),
    aiohttp.ClientSSLError: lambda: aiohttp.ClientSSLError(KEY, ssl.SSLError("bad handshake")),
    aiohttp.ClientProxyConnectionError: lambda: aiohttp.ClientProxyConnectionError(KEY, REFUSED),
    aiohttp.ClientConnectorError: lambda: aiohttp.ClientConnectorError(KEY, REFUSED),
    aiohttp.ConnectionTimeoutError: lambda: aiohttp.ConnectionTimeoutError("connect timed out"),
    aiohttp.SocketTimeoutError: lambda: aiohttp.SocketTimeoutError("read timed out"),
    aiohttp.ServerTimeoutError: lambda: aiohttp.ServerTimeoutError("timed out"),
    aiohttp.ServerDisconnectedError: lambda: aiohttp.ServerDisconnectedError(),
    aiohttp.ServerFingerprintMismatch: lambda: aiohttp.ServerFingerprintMismatch(
        b"a", b"b", "api.example.test", 443
    ),
    aiohttp.ClientPayloadError: lambda: aiohttp.ClientPayloadError("truncated body"),
    aiohttp.ContentTypeError: lambda: aiohttp.ContentTypeError(INFO, (), message="text/html"),
    aiohttp.TooManyRedirects: lambda: aiohttp.TooManyRedirects(INFO, ()),
    aiohttp.ClientResponseError: lambda: aiohttp.ClientResponseError(INFO, (), status=400),
    aiohttp.InvalidURL: lambda: aiohttp.InvalidURL("http://[bad"),
    aiohttp.NonHttpUrlClientError: lambda: aiohttp.NonHttpUrlClientError("ftp://x"),
    aiohttp.ClientConnectionResetError: lambda: aiohttp.ClientConnectionResetError("reset"),
    aiohttp.ClientOSError: lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
    aiohttp.ClientConnectionError: lambda: aiohttp.ClientConnectionError("closed"),
    aiohttp.ClientError: lambda: aiohttp.ClientError("other"),
    TimeoutError: lambda: TimeoutError(),
    aiohttp.UploadAbortedError: lambda: aiohttp.UploadAbortedError(),
    ConnectionError: lambda: ConnectionResetError(104, "reset"),
}


def test_every_mapped_kind_has_a_case() -> None:
    assert set(FACTORIES) == set(MAPPED_ERRORS)


def test_every_aiohttp_error_class_is_mapped() -> None:
    """A new aiohttp exception class must be classified on purpose, not by accident."""
    names = [n for n in aiohttp.__all__ if n.endswith("Error") or n == "TooManyRedirects"]
    classes = [getattr(aiohttp, n) for n in names]
    client_errors = [
        c for c in classes if isinstance(c, type) and issubclass(c, aiohttp.ClientError)
    ]
    ws = (aiohttp.WSServerHandshakeError, aiohttp.ClientHttpProxyError)
    unmapped = [
        c.__name__
        for c in client_errors
        if c not in MAPPED_ERRORS and not issubclass(c, ws) and c.__name__ != "WSMessageTypeError"
    ]
    # Whatever is not listed by name still maps through a base class; list the ones we rely on
    # that way, so a surprise shows up here.
    assert set(unmapped) <= {"ClientConnectorSSLError", "InvalidUrlClientError",
                             "InvalidUrlRedirectClientError", "NonHttpUrlRedirectClientError",
                             "RedirectClientError", "ServerConnectionError",
                             "ClientConnectionResetError"}, unmapped  # fmt: skip
    for cls in client_errors:
        assert any(issubclass(cls, kind) for kind in MAPPED_ERRORS), cls


@pytest.mark.parametrize(("kind", "code", "reached_if_sent"), ERROR_KINDS)
def test_mapping(kind: type[BaseException], code: str, reached_if_sent: bool | None) -> None:
    exc = FACTORIES[kind]()
    unsent = map_error(exc, "submit", sent=False)
    sent = map_error(exc, "submit", sent=True)
    assert isinstance(unsent, TransportError) and isinstance(sent, TransportError)
    assert unsent.code == sent.code == code
    assert unsent.status == 0
    assert sent.reached_server is reached_if_sent
    # Nothing left this process before the headers: a submit is safe to repeat (unless the
    # failure is itself an answer from the server).
    assert unsent.reached_server is (reached_if_sent is True)
    assert submit_is_retryable(unsent) is (reached_if_sent is not True)
    assert submit_is_retryable(sent) is (reached_if_sent is False)
    assert str(sent).startswith(f"{code}: submit: ")
    assert "secret" not in str(sent)


def test_subclass_is_mapped_by_its_most_specific_kind() -> None:
    err = map_error(aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "x")), "q", sent=False)
    assert err.code == "DNSError"
    err = map_error(aiohttp.SocketTimeoutError("t"), "q", sent=True)
    assert err.code == "ReadTimeout" and err.reached_server is None


def test_secrets_in_aiohttp_messages_are_redacted() -> None:
    exc = aiohttp.ClientOSError(
        104, "reset while sending Bearer sk-abcdef0123456789 to https://h/x.png?Signature=zz"
    )
    text = str(map_error(exc, "download https://h/x.png", sent=True))
    assert "sk-abcdef" not in text and "Signature=zz" not in text


def test_other_exceptions_are_not_swallowed() -> None:
    with pytest.raises(TypeError):
        map_error(ValueError("a bug"), "q", sent=False)

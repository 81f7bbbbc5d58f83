"""Where a run's requests go: the embedded emulator, the paid service or a loopback server.

No request leaves this machine unless ``--backend dashscope`` (or ``WANRECIPE_BACKEND``) says
so: the paid service is never chosen because a key happens to be set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from .. import wire
from ..errors import UsageError
from ..loopback import is_loopback_host
from ..redact import has_userinfo, redact_url

BackendKind = Literal["local", "dashscope", "url"]
#: The key sent to servers that are not DashScope when the user has none: never a real one.
LOCAL_API_KEY = "sk-wanrecipe-local"


@dataclass(frozen=True)
class BackendChoice:
    """Where requests go. ``local`` starts the embedded emulator for the run."""

    kind: BackendKind = "local"
    base_url: str | None = None
    api_key: str = field(default=LOCAL_API_KEY, repr=False)
    region: str = wire.DEFAULT_REGION

    @property
    def label(self) -> str:
        if self.kind == "local":
            return "local"
        if self.kind == "dashscope":
            return (
                f"dashscope:{self.region}"
                if not self.base_url
                else f"dashscope:{host_of(self.base_url)}"
            )
        return f"url:{host_of(self.base_url or '')}"


def choose_backend(
    backend: str | None = None,
    *,
    base_url: str | None = None,
    region: str | None = None,
    env: Mapping[str, str] | None = None,
) -> BackendChoice:
    """Resolve flags and environment into a backend. Raises UsageError.

    Precedence: flag > ``WANRECIPE_*`` env > default (``local``). The paid service is never
    chosen because a key happens to be set, and no request leaves this machine without
    ``--backend dashscope``.
    """
    env = os.environ if env is None else env
    kind = backend or env.get("WANRECIPE_BACKEND") or None
    base_url = base_url or env.get("WANRECIPE_BASE_URL") or None
    region = region or env.get("DASHSCOPE_API_REGION") or wire.DEFAULT_REGION
    if kind not in (None, "local", "dashscope"):
        raise UsageError(f"unknown backend {kind!r}: use local or dashscope")
    if region not in wire.BASE_URLS:
        raise UsageError(f"unknown region {region!r}: use " + " or ".join(wire.BASE_URLS))

    if kind == "dashscope":
        key = env.get("DASHSCOPE_API_KEY", "").strip()
        if not key:
            raise UsageError(
                "--backend dashscope needs DASHSCOPE_API_KEY in the environment "
                "(a paid run: $0.02 per image)"
            )
        url = base_url or env.get("DASHSCOPE_HTTP_BASE_URL") or wire.BASE_URLS[region]
        return BackendChoice("dashscope", _check_url(url), key, region)
    if base_url:
        url = _check_url(base_url)
        if not is_loopback_host(urlsplit(url).hostname):
            raise UsageError(
                f"{host_of(url)} is not on this machine; a run that may cost money needs "
                "--backend dashscope to say so"
            )
        key = env.get("DASHSCOPE_API_KEY", "").strip() or LOCAL_API_KEY
        return BackendChoice("url", url, key, region)
    if kind == "local" or kind is None:
        return BackendChoice("local")
    raise AssertionError(kind)


def _check_url(url: str) -> str:
    if has_userinfo(url):
        # Never echoed: the password part is usually the key itself.
        raise UsageError(
            f"the base URL {redact_url(url)} carries a user name or password (user:...@HOST); "
            "pass the key in DASHSCOPE_API_KEY instead"
        )
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        valid = False
    if not valid:
        raise UsageError(f"base URL must be http(s)://HOST[:PORT]/api/v1, not {redact_url(url)!r}")
    return url.rstrip("/")


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, as records and labels show it."""
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else url

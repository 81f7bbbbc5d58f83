"""Which hosts a result URL may point at: the backend's own, nothing else.

A task's answer names the URLs to download its images from. A hostile or broken server (or a
man in the middle of a plain-HTTP base URL) could point them anywhere: at another machine on
the network, at a service on this one. The client downloads only from:

- the base URL's own host (and, for a loopback backend such as the emulator, its own port);
- for DashScope (a base URL under ``aliyuncs.com``), the object store hosts under
  ``aliyuncs.com``, over HTTPS, where DashScope keeps its results;
- hosts the caller names explicitly (``DashScopeClient(result_hosts=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from ..loopback import is_loopback_host

_ALIYUN = "aliyuncs.com"


def result_url_problem(base_url: str, url: str, extra_hosts: Iterable[str] = ()) -> str | None:
    """Why ``url`` may not be downloaded for a backend at ``base_url``, or None when it may."""
    try:
        base = urlsplit(base_url)
        target = urlsplit(url)
        base_port, target_port = base.port, target.port
    except ValueError:
        return "the result URL is malformed"
    host = (target.hostname or "").lower()
    base_host = (base.hostname or "").lower()
    if target.scheme not in ("http", "https") or not host:
        return "the result URL is not an http(s) URL with a host"
    if target.username is not None or target.password is not None:
        return "the result URL carries a user name or password"
    if host in {h.lower() for h in extra_hosts}:
        return None
    if host == base_host:
        if is_loopback_host(host) and _port(target.scheme, target_port) != _port(
            base.scheme, base_port
        ):
            return f"the result URL points at another port of {host} than the backend's"
        return None
    if (base_host == _ALIYUN or base_host.endswith("." + _ALIYUN)) and host.endswith("." + _ALIYUN):
        if target.scheme != "https":
            return "DashScope results are fetched over https only"
        return None
    return f"the result URL points at {host}, not at the backend ({base_host or base_url})"


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)

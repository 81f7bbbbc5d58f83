"""``is_loopback_host``: whether a host is this machine, by address or name. A leaf (no
imports from wanrecipe, none of aiohttp): the CLI's backend choice asks it before any HTTP
machinery is loaded, the client when it checks a result URL, the emulator when it fetches an
input URL."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` (any case, with or without the root's dot), 127.0.0.0/8 or ::1 (bracketed
    or not); False for anything else, a name that might resolve here included."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

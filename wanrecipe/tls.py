"""Import aiohttp without loading the system's CA bundle on the way, for processes that talk
plain HTTP to a loopback server (the embedded emulator, ``--base-url http://127.0.0.1...``).

``aiohttp.connector`` builds two ``ssl.SSLContext`` objects when it is imported, and each
loads every certificate of the system's CA bundle (``set_default_verify_paths``): 50-70 ms
of CPU on the way to a run's first submit, for TLS that a loopback HTTP run never uses.
:func:`import_aiohttp` imports aiohttp with that one call held back, and
:func:`load_held_certificates` makes it later, on exactly the contexts that skipped it (the
CLI does it from a background thread after the first submit). A context whose call is
still held back has no CA certificates, so a TLS connection made with it fails verification
(closed, never open); nothing in such a run makes one.

Nothing is held back when aiohttp is already imported, or when ``ssl.SSLContext`` is not the
standard library's own class (someone replaced or patched it, e.g. ``truststore``).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_lock = threading.Lock()
_held: list[Any] = []


def import_aiohttp() -> None:
    """``import aiohttp`` with the CA bundle's loading held back (see the module doc)."""
    if "aiohttp" in sys.modules:
        return
    import ssl

    cls = ssl.SSLContext
    if cls.__module__ != "ssl" or "set_default_verify_paths" in vars(cls):
        import aiohttp

        return
    with _lock:
        if "aiohttp" in sys.modules:
            return
        cls.set_default_verify_paths = _hold  # type: ignore[method-assign,assignment]
        try:
            import aiohttp
            import aiohttp.connector  # noqa: F401  (where the contexts are built)
        finally:
            del cls.set_default_verify_paths


def _hold(context: Any) -> None:
    _held.append(context)


def held_certificates() -> int:
    """How many contexts still wait for their CA certificates."""
    return len(_held)


def load_held_certificates() -> None:
    """Give every context whose CA bundle was held back its certificates now."""
    import ssl

    with _lock:
        while _held:
            ssl.SSLContext.set_default_verify_paths(_held.pop())

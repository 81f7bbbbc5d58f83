"""``tls.import_aiohttp``: aiohttp imported with its CA bundle loading held back, then given
its certificates (checked in a fresh interpreter: this one imported aiohttp long ago)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, ssl, sys
from wanrecipe import tls
tls.import_aiohttp()
import aiohttp.connector as connector
verified = connector._SSL_CONTEXT_VERIFIED
held = tls.held_certificates()
before = len(verified.get_ca_certs())
patched = "set_default_verify_paths" in vars(ssl.SSLContext)
fresh = len(ssl.create_default_context().get_ca_certs())  # made after: not held back
tls.load_held_certificates()
print(json.dumps({"held": held, "before": before, "patched": patched, "fresh": fresh,
                  "after": len(verified.get_ca_certs()), "left": tls.held_certificates()}))
"""

PATCHED = """
import json, ssl
calls = []
original = ssl.SSLContext.set_default_verify_paths
def loading(self):  # someone else's patch: theirs to keep
    calls.append(1)
    original(self)
ssl.SSLContext.set_default_verify_paths = loading
from wanrecipe import tls
tls.import_aiohttp()
import aiohttp.connector as connector
print(json.dumps({"held": tls.held_certificates(), "calls": len(calls), "kept":
                  vars(ssl.SSLContext)["set_default_verify_paths"] is loading,
                  "certs": len(connector._SSL_CONTEXT_VERIFIED.get_ca_certs())}))
"""


def probe(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_bundle_is_held_back_then_loaded_on_exactly_those_contexts():
    got = probe(PROBE)
    assert got["held"] == 2  # aiohttp's verified and unverified default contexts
    assert got["before"] == 0  # no CA certificates yet: verification would fail, not pass
    assert got["patched"] is False  # ssl.SSLContext is itself again
    assert got["fresh"] > 0  # the machine has a CA bundle (the test means nothing without)
    assert got["after"] == got["fresh"]  # the same certificates aiohttp would have loaded
    assert got["left"] == 0


def test_nothing_is_held_back_when_someone_else_patched_ssl_context():
    got = probe(PATCHED)
    assert got["held"] == 0
    assert got["calls"] == 2 and got["kept"] is True and got["certs"] > 0

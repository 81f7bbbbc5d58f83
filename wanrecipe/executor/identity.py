"""What a step's result depends on: its content key, its seedless identity, its recorded seed.

- The *content key* (``store.content_key``) covers model, function, rendered prompt, parameters
  with the seed, and the sha256 of every input image. Same key, same pixels: a re-run reuses
  the stored result instead of paying again.
- The *identity* is the same without the seed. A step that gives no seed gets one drawn on its
  first run; later runs find it again through the identity, so the key, and so the cache,
  stay stable, and the result is reproducible from the lock file and run record.
- Results of the emulator never stand in for the service's: the key's model is
  ``wanx2.1-imageedit`` for DashScope and ``wanx2.1-imageedit@emulator`` for every loopback
  backend (``realm``).
- A user-given URL input is identified by the sha256 of ``url:<the URL>``: the runner does not
  fetch what the service will fetch. When the bytes behind a URL change, ``--force`` the step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .. import wire
from ..store import JournalOps as Journal
from ..store import canonical_json, content_key

#: Attempt states whose seed a later run reuses, best first.
_SEED_SOURCES = ("done", "submitted", "intent", "failed", "abandoned")


def input_digest(sha256: str | None, value: str) -> str:
    """The key's view of one input: the sha256 of its bytes, or of its URL when not fetched."""
    return sha256 if sha256 else hashlib.sha256(f"url:{value}".encode()).hexdigest()


def realm_of(backend: str) -> str:
    """The key realm of a backend, by kind (``dashscope``, ``local``) or record label
    (``dashscope:cn-beijing``, ``url:127.0.0.1:8080``): every non-DashScope backend is a
    loopback emulator."""
    return "dashscope" if backend.startswith("dashscope") else "emulator"


def model_for(realm: str) -> str:
    return wire.MODEL if realm == "dashscope" else f"{wire.MODEL}@{realm}"


def step_key(
    function: str,
    prompt: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    realm: str = "dashscope",
) -> str:
    return content_key(
        model=model_for(realm),
        function=function,
        prompt=prompt,
        parameters=parameters,
        inputs=inputs,
    )


def step_identity(
    function: str,
    prompt: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
    realm: str = "dashscope",
) -> str:
    """The content key less the seed: which edit of which pixels, whatever the seed."""
    document = {
        "v": "wanrecipe-identity/1",
        "model": model_for(realm),
        "function": function,
        "prompt": prompt,
        "parameters": {k: v for k, v in parameters.items() if k != "seed"},
        "inputs": dict(inputs),
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def recorded_seed(journal: Journal, *, recipe: str, step: str, identity: str) -> int | None:
    """The seed an earlier run drew for this step and identity, if any."""
    found: dict[str, int] = {}
    for attempt in journal.attempts(step=step, recipe=recipe):
        if attempt.request.get("identity") == identity and attempt.request.get("seed_drawn"):
            found.setdefault(attempt.state, attempt.seed)
    for state in _SEED_SOURCES:
        if state in found:
            return found[state]
    return None

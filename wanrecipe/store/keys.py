"""Content keys: what a task's result depends on, hashed.

The key is the sha256 of a canonical JSON document holding the model, the function, the rendered
prompt, the parameters (the seed among them) and the sha256 of every input image. It never holds
URLs, timestamps or request ids: the same edit of the same pixels has the same key on every run,
machine and backend, so a re-run finds the images it already paid for.

Canonical form (changing any rule changes every key, so ``KEY_VERSION`` is hashed too):

- objects with sorted keys, no whitespace, ``ensure_ascii=False``, UTF-8;
- numbers by value: ``2`` and ``2.0`` are the same key, because both go over the wire as the
  JSON number 2 and the service cannot tell them apart. A float with an integral value is written
  as an integer, any other float by its shortest round-trip ``repr``; ``-0.0`` is 0; NaN and
  infinities are refused (JSON cannot carry them);
- booleans stay ``true``/``false``, so ``True`` never collides with ``1``;
- tuples are lists; anything that is not JSON data (bytes, sets, objects) is refused rather than
  hashed by its ``repr``;
- strings are taken as they are (no Unicode normalisation): the service sees the exact text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

KEY_VERSION: Final = "wanrecipe-key/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Floats beyond this are not exactly integral in every JSON reader; keep them as floats.
_MAX_EXACT_INT = 2**53

JSONData = None | bool | int | float | str | list["JSONData"] | dict[str, "JSONData"]


def content_key(
    *,
    model: str,
    function: str,
    prompt: str,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, str],
) -> str:
    """Return the 64-hex-digit cache key of one task.

    ``inputs`` maps the input role (``base_image_url``, ``mask_image_url``) to the sha256 hex of
    that image's bytes. ``parameters`` must hold the ``seed``: without one the service picks a
    random seed and the result is not a function of the key. Raises ValueError or TypeError on
    data that has no canonical form.
    """
    if "seed" not in parameters:
        raise ValueError("parameters must include a seed: without one a result is not reproducible")
    for role, digest in inputs.items():
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ValueError(f"inputs[{role!r}] must be a lowercase sha256 hex digest")
    document = {
        "v": KEY_VERSION,
        "model": _str(model, "model"),
        "function": _str(function, "function"),
        "prompt": _str(prompt, "prompt"),
        "parameters": canonical(parameters, "parameters"),
        "inputs": canonical(inputs, "inputs"),
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of ``value`` (rules in the module docstring)."""
    text = json.dumps(
        canonical(value, "value"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    # surrogatepass: a lone surrogate still gets one deterministic encoding instead of an error.
    return text.encode("utf-8", "surrogatepass")


def canonical(value: Any, where: str = "value") -> JSONData:
    """Normalise ``value`` to plain JSON data (numbers by value, tuples as lists)."""
    # bool before int: bool is a subclass of int and must keep its own identity.
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(value, where)
    if isinstance(value, Mapping):
        out: dict[str, JSONData] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, not {type(k).__name__}")
            out[k] = canonical(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not JSON data")


def _number(value: float, where: str) -> int | float:
    if not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a JSON number")
    if value.is_integer() and abs(value) <= _MAX_EXACT_INT:
        return int(value)  # also maps -0.0 to 0
    return float(value)


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a string, not {type(value).__name__}")
    return value

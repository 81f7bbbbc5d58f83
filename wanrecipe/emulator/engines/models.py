"""Optional model files shipped inside PyPI wheels (the ``models`` extra), run with onnxruntime.

Files are located with ``importlib.util.find_spec`` so the packages that ship them are never
imported (some carry downloader helpers); nothing is ever downloaded. ``WANRECIPE_NO_MODELS=1``
turns every model off, so the classical paths run as they do without the extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()


def find(package: str, *names: str) -> Path | None:
    """The first of ``names`` (paths inside ``package``, globs allowed) that is installed, when
    onnxruntime is installed too and models are not switched off."""
    if os.environ.get("WANRECIPE_NO_MODELS"):
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in names:
            hits = sorted(Path(folder).glob(name), reverse=True)
            if hits:
                return hits[0]
    return None


def session(path: Path) -> Any:
    """A cached CPU inference session for ``path`` (2 intra-op threads, quiet logging)."""
    with _LOCK:
        return _session(str(path))


@lru_cache(maxsize=4)
def _session(path: str) -> Any:
    # Imported by name: an optional dependency without type stubs.
    ort = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

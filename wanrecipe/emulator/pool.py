"""How the engine workers are started: as processes that never import the user's ``__main__``.

The emulator computes images in a process pool (forkserver where available, else spawn; never
fork, which would copy a process that runs an event loop and threads). Both start methods
prepare a new process from data the parent sends it (``multiprocessing.spawn.
get_preparation_data``): ``sys.path``, the working directory, and the parent's main module,
as ``init_main_from_name`` (``python -m pkg``) or ``init_main_from_path`` (``python
script.py``). Before the child unpickles anything it runs that module again as ``__mp_main__``
(``spawn.prepare``), so that functions defined in ``__main__`` can be unpickled there.

That is why multiprocessing asks for an ``if __name__ == "__main__":`` guard, and why a
script that calls ``run_recipe()`` without one would run the recipe again in every engine
worker. Our workers need nothing from ``__main__``: everything they run lives in
``wanrecipe.emulator.engines``. So a worker of ours is started with preparation data that
names no main module: it begins from our own code (``multiprocessing``'s entry point, then our
initializer) whatever the user's program is, a script, ``python -c``, a Jupyter kernel or
``python -m`` of anything.

How: ``spawn.get_preparation_data`` reads ``sys.modules["__main__"]``, process-wide, and both
Popen classes call it while they start a process. We wrap it once; the wrapper drops the two
main-module entries only for a process our pool is starting in the current thread (a
thread-local flag set by our Process class around its Popen). Every other process anyone
starts, in this thread or another, gets the data unchanged. Nothing else is touched: not
``sys.modules``, not ``__main__``'s attributes, and no copy of CPython's private Popen code.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import context as mp_context
from multiprocessing import spawn
from typing import Any

#: How much lower than the server the engine workers run: they yield the CPU to the server's
#: event loop, so queries stay fast on a busy machine.
ENGINE_NICENESS = 5

#: The preparation entries that make a child run the parent's main module again.
_MAIN_ENTRIES = ("init_main_from_name", "init_main_from_path")

_local = threading.local()
_install_lock = threading.Lock()
_original: Callable[[str], dict[str, Any]] | None = None


def _preparation_data(name: str) -> dict[str, Any]:
    assert _original is not None
    data = _original(name)
    if getattr(_local, "starting_engine_worker", False):
        for entry in _MAIN_ENTRIES:
            data.pop(entry, None)
    return data


def _install() -> None:
    global _original
    with _install_lock:
        if _original is None:
            _original = spawn.get_preparation_data
            spawn.get_preparation_data = _preparation_data


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    _install()
    before = getattr(_local, "starting_engine_worker", False)
    _local.starting_engine_worker = True
    try:
        yield
    finally:
        _local.starting_engine_worker = before


if sys.platform != "win32":

    class _ForkServerEngineProcess(mp_context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            with _without_main():
                return mp_context.ForkServerProcess._Popen(process_obj)

    class _ForkServerEngineContext(mp_context.ForkServerContext):
        Process = _ForkServerEngineProcess


class _SpawnEngineProcess(mp_context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        with _without_main():
            return mp_context.SpawnProcess._Popen(process_obj)


class _SpawnEngineContext(mp_context.SpawnContext):
    Process = _SpawnEngineProcess


def engine_context() -> mp_context.BaseContext:
    """The multiprocessing context for engine workers: forkserver where available, else
    spawn, either way without the user's ``__main__``."""
    if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
        return _ForkServerEngineContext()
    return _SpawnEngineContext()


def make_executor(kind: str, workers: int) -> Executor:
    """A process pool (forkserver where available, else spawn: never fork a process that runs
    an event loop and threads) or, for HTTP-only tests, a thread pool."""
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine")
    # Workers that never import the user's __main__ (see above): no main guard needed.
    ctx = engine_context()
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_engine_worker)


def _engine_worker() -> None:
    # To ENGINE_NICENESS, not by it: a worker may inherit some of it already (EarlyEngines).
    if hasattr(os, "nice"):
        os.nice(max(0, ENGINE_NICENESS - os.nice(0)))

"""Runs the executor's side of the store protocol in a loop, for crash and concurrency tests.

usage: store_worker.py STATE_DIR NAME SEED ITERATIONS [--shared] [--exclusive] [--barrier=PATH]
       store_worker.py --zygote

ITERATIONS 0 loops until killed. ``--shared`` makes keys and image bytes depend only on the
iteration, so two workers race on the same keys and the same blobs; ``--barrier`` waits after
"ready" until PATH exists, so two workers start writing together; ``--exclusive`` records
intents with ``exclusive=True`` and skips keys another worker holds. Every step is appended to
``STATE_DIR.NAME.log`` only after the store call returned: whatever the log says was
acknowledged must survive a SIGKILL.

``--zygote`` imports everything once, then forks a worker per ``run ...`` line read from stdin
(the worker prints ``ready PID`` once it has opened the state dir) and reaps one per ``wait PID``
line (printing ``status PID RAW``): the crash test kills dozens of workers without paying the
interpreter start-up for each.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from wanrecipe.store import KeyBusy, ResultRecord, StateDir, content_key


def run(args: list[str]) -> None:
    state_dir, name, seed, iterations = args[0], args[1], int(args[2]), int(args[3])
    shared = "--shared" in args[4:]
    exclusive = "--exclusive" in args[4:]
    rnd = random.Random(seed)
    log = os.open(f"{state_dir}.{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    scratch = Path(state_dir).parent / f"scratch-{name}"
    scratch.mkdir(exist_ok=True)

    def note(text: str) -> None:
        os.write(log, f"{text}\n".encode())

    with StateDir.open(Path(state_dir)) as sd:
        print(f"ready {os.getpid()}", flush=True)
        for flag in args[4:]:
            if flag.startswith("--barrier="):
                while not os.path.exists(flag.removeprefix("--barrier=")):
                    time.sleep(0.002)
        i = 0
        while iterations == 0 or i < iterations:
            label = str(i) if shared else f"{name}-{i}"
            key = content_key(
                model="wanx2.1-imageedit",
                function="colorization",
                prompt=label,
                parameters={"seed": i},
                inputs={},
            )
            try:
                aid = sd.journal.record_intent(
                    key,
                    step=f"step{i % 5}",
                    recipe="r.yaml",
                    backend="local",
                    request={"prompt": label},
                    seed=i,
                    exclusive=exclusive,
                )
            except KeyBusy:
                note(f"busy key-{i}")
                i += 1
                continue
            note(f"intent {aid}")
            time.sleep(rnd.uniform(0, 0.01))  # the submit request is on the wire
            sd.journal.record_submitted(aid, f"task-{name}-{i}", f"req-{name}-{i}")
            note(f"submitted {aid}")
            if rnd.random() < 0.15:
                sd.journal.record_failed(aid, "InternalError", "simulated")
                note(f"failed {aid}")
                i += 1
                continue
            results = []
            for index in range(rnd.choice((1, 1, 2))):
                source = random.Random(f"{label}/{index}") if shared else rnd
                data = source.randbytes(source.randint(1_000, 300_000))
                how = rnd.choice(("bytes", "move", "copy"))
                if how == "bytes":
                    blob = sd.blobs.put_bytes(data)
                else:
                    download = scratch / f"{i}-{index}.part"
                    download.write_bytes(data)
                    blob = sd.blobs.put_file(download, move=how == "move")
                    download.unlink(missing_ok=True)
                results.append(ResultRecord(index, blob.sha256, blob.size, 512, 512))
            sd.journal.record_done(aid, results, len(results))
            note(f"done {aid}")
            i += 1


def zygote() -> None:
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    run(args)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stdout.flush()
                    os._exit(code)
        elif command == "wait":
            pid, status = os.waitpid(int(args[0]), 0)
            print(f"status {pid} {status}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        zygote()
    else:
        run(sys.argv[1:])

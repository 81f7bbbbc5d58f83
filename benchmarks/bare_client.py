"""The floor of the CPU benchmarks: a bare aiohttp client making the runner's requests for a
task (a submit paced at the quota, the first query when the task should be done, queries
until it is, the download hashed into a file), nothing else: no journal, no ledger, no store,
no record. ``bench_e2e.py`` runs it as a process of its own, ``bench_batch.py`` in-process."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

SUBMIT_PATH = "/services/aigc/image2image/image-synthesis"
AUTH = {"Authorization": "Bearer sk-bench"}
SUBMIT_HEADERS = {**AUTH, "X-DashScope-Async": "enable"}


class BareClient:
    """Tasks over one aiohttp session; ``requests`` and ``queries`` count what it sent."""

    def __init__(self, session: Any, base: str, *, rate: float = 48.0) -> None:
        self.session, self.base = session, base
        self.spacing, self._next_at = 1 / rate, 0.0
        self.requests = self.queries = 0

    async def task(self, body: dict[str, Any], dest: str, *, first_poll: float,
                   poll_every: float) -> str:  # fmt: skip
        """One task from submit to its image in ``dest``; returns the result's URL."""
        now = time.monotonic()
        at = max(now, self._next_at)
        self._next_at = at + self.spacing
        await asyncio.sleep(at - now)
        while True:
            self.requests += 1
            async with self.session.post(
                self.base + SUBMIT_PATH, json=body, headers=SUBMIT_HEADERS
            ) as r:
                answer = await r.json()
            if "output" in answer:
                break
            await asyncio.sleep(0.05)
        task_id = answer["output"]["task_id"]
        await asyncio.sleep(first_poll)
        while True:
            self.requests += 1
            self.queries += 1
            async with self.session.get(self.base + "/tasks/" + task_id, headers=AUTH) as r:
                output = (await r.json())["output"]
            if output["task_status"] == "SUCCEEDED":
                break
            await asyncio.sleep(poll_every)
        url = str(output["results"][0]["url"])
        digest = hashlib.sha256()
        with open(dest, "wb") as f:
            self.requests += 1
            async with self.session.get(url) as r:
                async for chunk in r.content.iter_chunked(65536):
                    digest.update(chunk)
                    f.write(chunk)
        return url

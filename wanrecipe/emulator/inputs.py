"""Fetching image inputs: data URIs, uploaded ``oss://`` files, and http(s) URLs.

Safety rule: the emulator connects to loopback addresses only. Any other host is refused with
``InvalidURL`` before a connection is attempted. The emulator's own signed result URLs (a
chained recipe feeds one step's result into the next) are read straight from storage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp

from .. import tls, wire
from ..errors import BackendError
from ..loopback import is_loopback_host
from ..redact import redact_url
from .storage import RESULTS_PREFIX, BlobStore, Signer, upload_key
from .validation import ImageRef, api_error

FETCH_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Fetcher:
    session: aiohttp.ClientSession
    store: BlobStore
    signer: Signer

    async def fetch(self, ref: ImageRef, *, own_port: int, now: float) -> bytes:
        if ref.kind == "data":
            assert ref.data is not None
            return ref.data
        if ref.kind == "oss":
            data = await self.store.get(upload_key(ref.value))
            if data is None:
                raise api_error(
                    "BadRequest.InputDownloadFailed",
                    f"input.{ref.field}: no uploaded file at oss://{ref.value[:200]}.",
                )
            return data
        return await self._fetch_url(ref, own_port=own_port, now=now)

    async def _fetch_url(self, ref: ImageRef, *, own_port: int, now: float) -> bytes:
        parts = urlsplit(ref.value)
        if not is_loopback_host(parts.hostname):
            raise api_error(
                "InvalidURL",
                f"input.{ref.field}: this emulator only fetches from loopback hosts "
                "(127.0.0.1, localhost, ::1); upload the file or send a data URI instead.",
            )
        if parts.port == own_port and parts.path.startswith(RESULTS_PREFIX):
            return await self._own_result(ref, parts.path, parts.query, now)
        # Never let a name resolve elsewhere: connect to the literal loopback address.
        netloc = parts.netloc
        if (parts.hostname or "").lower().rstrip(".") == "localhost":
            netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        if parts.scheme == "https" and tls.held_certificates():
            # The embedded emulator's process imported aiohttp without them (tls.py).
            await asyncio.to_thread(tls.load_held_certificates)
        return await self._download(ref, url)

    async def _own_result(self, ref: ImageRef, path: str, query: str, now: float) -> bytes:
        q = parse_qs(query)
        why = self.signer.check_path(
            path, q.get("Expires", [""])[0], q.get("Signature", [""])[0], now
        )
        data = None if why else await self.store.get(path.lstrip("/"))
        if data is None:
            reason = "has expired" if why == "expired" else "is not valid"
            raise api_error(
                "BadRequest.InputDownloadFailed",
                f"input.{ref.field}: the result URL {redact_url(ref.value)} {reason}.",
            )
        return data

    async def _download(self, ref: ImageRef, url: str) -> bytes:
        failed = f"input.{ref.field}: could not download {redact_url(ref.value)}"
        try:
            async with self.session.get(
                url,
                allow_redirects=False,  # a redirect could point off the machine
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
            ) as resp:
                if resp.status != 200:
                    raise api_error(
                        "BadRequest.InputDownloadFailed", f"{failed}: HTTP {resp.status}."
                    )
                chunks = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > wire.IMAGE_MAX_BYTES:
                        raise api_error(
                            "BadRequest.TooLarge",
                            f"input.{ref.field}: images may be at most 10 MB.",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except BackendError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = type(exc).__name__
            raise api_error("BadRequest.InputDownloadFailed", f"{failed}: {kind}.") from None

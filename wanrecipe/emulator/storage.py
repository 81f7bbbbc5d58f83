"""Where results and uploads live, and the signatures that guard them.

Result URLs are signed like OSS's: ``/results/<task>/<i>.png?Expires=<epoch s>&Signature=<hex>``,
an HMAC-SHA256 of path and expiry under a secret made fresh per server, so URLs stop working
after ``url_ttl`` and cannot be forged or extended. Uploads follow the OSS PostObject dance the
SDK performs: a policy (base64 JSON naming the allowed key prefix) signed by the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

UPLOAD_PATH = "/oss-upload"
RESULTS_PREFIX = "/results/"
UPLOAD_TTL_SECONDS = 48 * 3600  # oss:// files live 48 h (spec §5)


class Signer:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def sign_path(self, path: str, expires: int) -> str:
        return self._mac(f"GET\n{path}\n{expires}")

    def signed_query(self, path: str, now: float, ttl: float) -> str:
        expires = math.ceil(now + ttl)
        return f"Expires={expires}&Signature={self.sign_path(path, expires)}"

    def check_path(self, path: str, expires: str, signature: str, now: float) -> str | None:
        """None when valid, else why not: ``signature`` or ``expired``."""
        try:
            when = int(expires)
        except ValueError:
            return "signature"
        if not hmac.compare_digest(self.sign_path(path, when), signature):
            return "signature"
        if now >= when:
            return "expired"
        return None

    def sign_policy(self, policy_b64: str) -> str:
        mac = hmac.new(self._secret, policy_b64.encode(), hashlib.sha1).digest()
        return base64.b64encode(mac).decode()


@dataclass(frozen=True)
class UploadPolicy:
    upload_dir: str
    policy: str
    signature: str

    def as_json(self, upload_host: str) -> dict[str, Any]:
        # Field names as the SDK reads them (spec §8.5).
        return {
            "policy": self.policy,
            "signature": self.signature,
            "upload_dir": self.upload_dir,
            "upload_host": upload_host,
            "expire_in_seconds": UPLOAD_TTL_SECONDS,
            "max_file_size_mb": 100,
            "capacity_limit_mb": 999999999,
            "oss_access_key_id": "LTAIemulator",
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }


def issue_policy(signer: Signer, model: str, now: float) -> UploadPolicy:
    upload_dir = f"dashscope-instant/{uuid.uuid4().hex}/{model}/{uuid.uuid4()}"
    doc = {
        "expiration": math.ceil(now + 300),
        "conditions": [["starts-with", "$key", upload_dir + "/"]],
    }
    policy = base64.b64encode(json.dumps(doc).encode()).decode()
    return UploadPolicy(upload_dir, policy, signer.sign_policy(policy))


def check_upload(signer: Signer, policy: str, signature: str, key: str, now: float) -> str | None:
    """None when the upload may proceed, else the reason."""
    if not hmac.compare_digest(signer.sign_policy(policy), signature):
        return "the policy signature does not match"
    try:
        doc = json.loads(base64.b64decode(policy))
        expiration = float(doc["expiration"])
        prefix = str(doc["conditions"][0][2])
    except (ValueError, KeyError, IndexError, TypeError):
        return "the policy is malformed"
    if now > expiration:
        return "the policy has expired"
    if not key.startswith(prefix) or not safe_key(key):
        return "the key is outside the policy's upload_dir"
    return None


def safe_key(key: str) -> bool:
    parts = PurePosixPath(key).parts
    return bool(parts) and not key.startswith("/") and ".." not in parts and "\\" not in key


class BlobStore:
    """Bytes by key, on disk under ``data_dir`` or in memory. Disk I/O runs in a thread."""

    def __init__(self, data_dir: Path | None) -> None:
        self._dir = data_dir
        self._mem: dict[str, bytes] = {}

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / key

    async def put(self, key: str, data: bytes) -> None:
        if not safe_key(key):
            raise ValueError(f"unsafe storage key {key!r}")
        if self._dir is None:
            self._mem[key] = data
            return
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes | None:
        if not safe_key(key):  # never read outside the data directory
            return None
        if self._dir is None:
            return self._mem.get(key)
        path = self._path(key)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

        return await asyncio.to_thread(read)

    async def delete_prefix(self, prefix: str) -> None:
        if self._dir is None:
            for key in [k for k in self._mem if k.startswith(prefix)]:
                del self._mem[key]
            return
        root = self._path(prefix.rstrip("/"))

        def remove() -> None:
            if root.is_dir():
                for child in sorted(root.rglob("*"), reverse=True):
                    child.unlink() if child.is_file() else child.rmdir()
                root.rmdir()

        await asyncio.to_thread(remove)


def result_key(task_id: str, index: int) -> str:
    return f"results/{task_id}/{index}.png"


def result_path(task_id: str, index: int) -> str:
    return f"{RESULTS_PREFIX}{task_id}/{index}.png"


def upload_key(oss_key: str) -> str:
    return f"uploads/{oss_key}"

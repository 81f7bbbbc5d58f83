"""Backends: the async client of DashScope's image-edit API (the emulator is just a base URL)."""

from __future__ import annotations

from .dashscope import DEFAULT_USER_AGENT, DashScopeClient
from .models import (
    Downloaded,
    SubmitResult,
    TaskPage,
    TaskResult,
    TaskState,
    UploadPolicy,
)

__all__ = [
    "DEFAULT_USER_AGENT",
    "DashScopeClient",
    "Downloaded",
    "SubmitResult",
    "TaskPage",
    "TaskResult",
    "TaskState",
    "UploadPolicy",
]

"""Check the image inputs known before the run: local files, data URIs, URL spelling.

Outputs of other steps are unknown at plan time and are checked by the runner instead. Each
file is inspected once however many steps use it: its header first (cheap), then, when the
header is fine, whether its data decodes (``decoding``: bounded in memory and time, cached by
file version). A mask is also checked for gray pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import Diagnostic, ImageInputError, RecipeError, Severity
from ..images import (
    MASK_GRAY_SHARE,
    ImageInfo,
    check_decodes,
    check_file_decodes,
    gray_share,
    input_problems,
    inspect_bytes,
    load_file,
    mask_problems,
    parse_data_uri,
    shown_path,
)
from ..redact import redact_url
from .model import Recipe
from .render import ImageInput, RenderedStep, render_outputs

#: (message, hint, severity)
Finding = tuple[str, str | None, Severity]


def check_outputs(recipe: Recipe, outputs: Mapping[str, Sequence[object]]) -> list[Diagnostic]:
    """Render ``outputs:`` with the steps' placeholder outputs, as the run will at its end: a
    sandbox violation or ``images[1]`` of a one-image step is found before money is spent."""
    try:
        render_outputs(recipe, outputs)
    except RecipeError as exc:
        return list(exc.diagnostics)
    return []


class InputChecker:
    """Inspects inputs for one recipe, caching by path."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._cache: dict[str, tuple[ImageInfo | str, str | None]] = {}
        # A bad file is reported once, at its first use, not once per step that uses it.
        self._reported: set[tuple[str, str]] = set()

    def check(self, rendered: RenderedStep) -> list[Diagnostic]:
        step = self.recipe.step(rendered.id)
        problems: list[Diagnostic] = []
        infos: dict[str, ImageInfo | None] = {}
        for name in ("image", "mask"):
            value = rendered.image if name == "image" else rendered.mask
            if value is None:
                continue
            where = step.location_of(name)
            info, findings = self._inspect(value, name)
            infos[name] = info
            for message, hint, severity in findings:
                problems.append(
                    Diagnostic(
                        where.file,
                        where.line,
                        where.column,
                        f"steps.{rendered.id}.{name}",
                        message,
                        severity,
                        hint=hint,
                    )
                )
        image, mask = infos.get("image"), infos.get("mask")
        if image is not None and mask is not None:
            where = step.location_of("mask")
            for message in mask_problems(image, mask):
                problems.append(
                    Diagnostic(
                        where.file,
                        where.line,
                        where.column,
                        f"steps.{rendered.id}.mask",
                        message,
                        hint="resize the mask to the image, or draw it on a copy of the image",
                    )
                )
        return problems

    def _inspect(self, value: ImageInput, role: str) -> tuple[ImageInfo | None, list[Finding]]:
        if isinstance(value, Path):
            return self._file(value, role)
        if not isinstance(value, str):
            return None, []  # another step's output: checked by the runner
        if value.startswith("data:"):
            try:
                _, data = parse_data_uri(value)
                info = inspect_bytes(data)
            except ImageInputError as exc:
                return None, [(f"data URI: {exc}", None, "error")]
            found: list[Finding] = [(f"data URI: {p}", None, "error") for p in input_problems(info)]
            if not found:
                found = _content_findings("data URI", data, role, lambda: check_decodes(data))
            return info, found
        return None, _url_findings(value)

    def _file(self, path: Path, role: str) -> tuple[ImageInfo | None, list[Finding]]:
        shown = shown_path(self.recipe.display_path(path))
        key = str(path)
        cached = self._cache.get(key)
        if cached is None:
            # The bytes are not kept: a recipe may name a thousand 10 MB files.
            try:
                data, info = load_file(path)
                cached = (info, _decode_problem(path, data, info))
            except ImageInputError as exc:
                message = str(exc).replace(shown_path(path), shown).replace(str(path), shown)
                cached = (message, None)
            self._cache[key] = cached
        found, decode_problem = cached
        if (key, role) in self._reported:
            return (found if isinstance(found, ImageInfo) else None), []
        self._reported.add((key, role))
        if isinstance(found, str):
            hint = None
            if found.endswith("no such file"):
                hint = "paths in a recipe are relative to the recipe file"
            return None, [(found, hint, "error")]
        problems: list[Finding] = [(f"{shown}: {p}", None, "error") for p in input_problems(found)]
        if problems:
            return found, problems
        if decode_problem is not None:
            return found, [(f"{shown}: {decode_problem}", _REEXPORT, "error")]
        if role == "mask" and (key, "gray") not in self._reported:
            self._reported.add((key, "gray"))
            try:
                problems = _gray_findings(shown, path.read_bytes())
            except OSError:
                problems = []
        return found, problems


_REEXPORT = "re-export the image, or check that it copied whole"


def _decode_problem(path: Path, data: bytes | None, info: ImageInfo) -> str | None:
    if data is None or input_problems(info):
        return None  # not sendable anyway: reported as such
    try:
        check_file_decodes(path, data)
    except ImageInputError as exc:
        return str(exc)
    return None


def _content_findings(shown: str, data: bytes, role: str, decode: object) -> list[Finding]:
    assert callable(decode)
    try:
        decode()
    except ImageInputError as exc:
        return [(f"{shown}: {exc}", _REEXPORT, "error")]
    if role != "mask":
        return []
    return _gray_findings(shown, data)


def _gray_findings(shown: str, data: bytes) -> list[Finding]:
    try:
        share = gray_share(data)
    except (OSError, ValueError):
        return []
    if share <= MASK_GRAY_SHARE:
        return []
    return [
        (
            f"{shown}: {share:.0%} of the mask's pixels are gray, not black or white",
            "masks are black and white (white marks the area to edit): threshold the mask",
            "warning",
        )
    ]


def _url_findings(value: str) -> list[Finding]:
    if not value.isascii():
        return [
            (
                "the URL contains non-ASCII characters, which the API refuses",
                "percent-encode the URL (or rename the file)",
                "error",
            )
        ]
    if not value.isprintable() or " " in value:
        return [
            (
                f"the URL {redact_url(shown_path(value))} contains spaces or control characters",
                "percent-encode the URL",
                "error",
            )
        ]
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return [(f"the URL {redact_url(value)} is malformed ({exc})", None, "error")]
    if parts.scheme in ("http", "https") and not host:
        return [
            (
                f"the URL {redact_url(value)} has no host",
                "write http(s)://HOST/path, or give a local file path",
                "error",
            )
        ]
    if parts.scheme == "oss" and not (parts.netloc or parts.path.strip("/")):
        return [(f"the URL {value} names no object", "write oss://<bucket path>", "error")]
    return []  # a URL: fetched by the service

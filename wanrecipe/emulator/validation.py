"""Request validation with the service's codes.

Two stages (docs/emulator.md, "Validation"):
- :func:`parse_submit` checks the structure of a submit body; its errors answer the submit.
- :func:`check_inputs` checks the fetched image bytes; its errors end the task FAILED (or answer
  the submit when the emulator runs with ``validate_images="submit"``).
Errors are :class:`~wanrecipe.errors.BackendError` carrying the HTTP status the service uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .. import wire
from ..errors import BackendError, ImageInputError
from ..images import MAX_DATA_URI_CHARS, ImageInfo, inspect_bytes, parse_data_uri
from .engines import output_size

RefKind = Literal["url", "data", "oss"]


def api_error(code: str, message: str | None = None) -> BackendError:
    """An error with the service's status for ``code`` and its standard message by default."""
    known = wire.ERRORS.get(code)
    status = known.status if known else 400
    return BackendError(code, message or (known.message if known else code), status=status)


def invalid(message: str) -> BackendError:
    return api_error("InvalidParameter", message)


@dataclass(frozen=True)
class ImageRef:
    field: str
    kind: RefKind
    value: str  # the URL or oss:// key as sent (never logged unredacted)
    data: bytes | None = None  # decoded bytes of a data URI


@dataclass(frozen=True)
class SubmitRequest:
    function: str
    prompt: str
    parameters: dict[str, Any]  # the function's own parameters, defaults filled in, no seed
    n: int
    seed: int | None
    base: ImageRef
    mask: ImageRef | None


def parse_submit(body: Any, *, oss_resolve: bool) -> SubmitRequest:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    model = body.get("model")
    if model is None or model == "":
        raise api_error("BadRequest.EmptyModel")
    if model != wire.MODEL:
        raise api_error("ModelNotFound", f"Model not exist: {str(model)[:100]}.")
    inp = body.get("input")
    if not inp:
        raise api_error("BadRequest.EmptyInput")
    if not isinstance(inp, dict):
        raise invalid("input must be a JSON object.")
    params = body.get("parameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise invalid("parameters must be a JSON object.")

    function = inp.get("function")
    if not isinstance(function, str) or not function:
        raise invalid("input.function is required.")
    if function not in wire.FUNCTIONS:
        raise invalid(f"input.function {function[:60]!r} is not supported.")
    prompt = inp.get("prompt")
    if not isinstance(prompt, str):
        raise invalid("input.prompt is required and must be a string.")

    values = {name: _param(name, params) for name in wire.FUNCTION_PARAMS[function]}
    n = int(values.pop("n"))
    seed = values.pop("seed")

    base_value = inp.get("base_image_url")
    if not isinstance(base_value, str) or not base_value:
        raise invalid("input.base_image_url is required.")
    base = parse_ref("base_image_url", base_value, oss_resolve=oss_resolve)
    mask_value = inp.get("mask_image_url")
    mask = None
    if function in wire.MASK_FUNCTIONS:
        if not isinstance(mask_value, str) or not mask_value:
            raise invalid(f"input.mask_image_url is required for function {function}.")
        mask = parse_ref("mask_image_url", mask_value, oss_resolve=oss_resolve)
    elif mask_value not in (None, ""):
        raise invalid(f"input.mask_image_url is not used by function {function}; remove it.")

    return SubmitRequest(
        function=function,
        # The service truncates, never refuses, a long prompt (spec §2.1).
        prompt=prompt[: wire.PROMPT_MAX_CHARS],
        parameters=values,
        n=n,
        seed=None if seed is None else int(seed),
        base=base,
        mask=mask,
    )


def _param(name: str, params: dict[str, Any]) -> Any:
    spec = wire.PARAMS[name]
    if name not in params or params[name] is None:
        return spec.default
    value = params[name]
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise invalid(f"parameters.{name} must be a boolean (true or false).")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"parameters.{name} must be a {spec.type}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"parameters.{name} must be a finite number.")
    if spec.type == "integer":
        # 2.0 is accepted as 2 (other languages' JSON encoders write it so); 2.5 is not.
        if isinstance(value, float) and not value.is_integer():
            raise invalid(f"parameters.{name} must be an integer.")
        value = int(value)
    lo, hi = spec.minimum, spec.maximum
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise invalid(f"parameters.{name} must be between {lo} and {hi}.")
    return float(value) if spec.type == "number" else value


def parse_ref(field: str, value: str, *, oss_resolve: bool) -> ImageRef:
    if value.startswith("data:"):
        if len(value) > MAX_DATA_URI_CHARS + 256:
            raise api_error("BadRequest.TooLarge", f"input.{field}: images may be at most 10 MB.")
        try:
            _mime, data = parse_data_uri(value)
        except ImageInputError as exc:
            raise invalid(f"input.{field}: {exc}.") from None
        if not data:
            raise invalid(f"input.{field}: the data URI is empty.")
        return ImageRef(field, "data", "data:", data)
    if value.startswith("oss://"):
        if not oss_resolve:
            raise api_error(
                "InvalidURL",
                f"input.{field}: oss:// URLs need the header {wire.HEADER_OSS_RESOLVE}: enable.",
            )
        return ImageRef(field, "oss", value[len("oss://") :])
    if not value.startswith(("http://", "https://")):
        raise api_error(
            "InvalidURL", f"input.{field} must be an http(s) URL, a data URI or an oss:// URL."
        )
    if not value.isascii():
        raise api_error("InvalidURL", f"input.{field}: the URL must not contain non-ASCII text.")
    try:
        host = urlsplit(value).hostname
    except ValueError:
        host = None
    if not host:
        raise api_error("InvalidURL", f"input.{field}: the URL has no host.")
    return ImageRef(field, "url", value)


def check_image(field: str, data: bytes) -> ImageInfo:
    """The checks that need the bytes: format, sides, size."""
    if len(data) > wire.IMAGE_MAX_BYTES:
        raise api_error("BadRequest.TooLarge", f"input.{field}: images may be at most 10 MB.")
    try:
        info = inspect_bytes(data)
    except ImageInputError:
        raise api_error(
            "BadRequest.UnsupportedFileFormat",
            f"input.{field}: not a readable image (JPEG, PNG, BMP, TIFF or WEBP).",
        ) from None
    if info.format not in wire.IMAGE_FORMATS:
        raise api_error(
            "BadRequest.UnsupportedFileFormat",
            f"input.{field}: format {info.format} is not supported.",
        )
    lo, hi = wire.IMAGE_MIN_SIDE, wire.IMAGE_MAX_SIDE
    if not (lo <= info.width <= hi and lo <= info.height <= hi):
        raise invalid(
            f"input.{field}: the image is {info.width}x{info.height} px; "
            f"each side must be between {lo} and {hi} px."
        )
    return info


def check_inputs(
    request: SubmitRequest, base: bytes, mask: bytes | None, max_output_pixels: int
) -> tuple[int, int]:
    """Check the fetched inputs; return the output size."""
    info = check_image("base_image_url", base)
    if mask is not None:
        mask_info = check_image("mask_image_url", mask)
        if (mask_info.width, mask_info.height) != (info.width, info.height):
            raise invalid(
                f"input.mask_image_url: the mask is {mask_info.width}x{mask_info.height} px but "
                f"the image is {info.width}x{info.height} px; they must be the same size."
            )
    width, height = output_size(request.function, info.width, info.height, request.parameters)
    if width * height > max_output_pixels:
        raise invalid(
            f"the output would be {width}x{height} px, more than this server's limit of "
            f"{max_output_pixels} pixels."
        )
    return width, height

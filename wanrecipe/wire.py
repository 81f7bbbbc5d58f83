"""Facts of the DashScope ``wanx2.1-imageedit`` wire protocol, shared by client, recipe checks
and emulator. Source: ``shared/reference/dashscope-image-edit-api.md`` (section numbers below).

Pure data and small pure helpers: no I/O, no imports from the rest of wanrecipe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

MODEL: Final = "wanx2.1-imageedit"

#: $ per successful output image (intl price page, §5). Only SUCCEEDED images are billed.
PRICE_PER_IMAGE_USD: Final = Decimal("0.020070")

BASE_URLS: Final[dict[str, str]] = {
    "cn-beijing": "https://dashscope.aliyuncs.com/api/v1",
    # The docs say wanx2.1-imageedit is Beijing-only (§1); the intl host is offered for accounts
    # where Alibaba serves it anyway.
    "ap-southeast-1": "https://dashscope-intl.aliyuncs.com/api/v1",
}
DEFAULT_REGION: Final = "cn-beijing"

# Paths relative to the base URL (which ends in /api/v1).
SUBMIT_PATH: Final = "/services/aigc/image2image/image-synthesis"
TASK_PATH: Final = "/tasks/{task_id}"
CANCEL_PATH: Final = "/tasks/{task_id}/cancel"
LIST_PATH: Final = "/tasks"
UPLOAD_POLICY_PATH: Final = "/uploads"

HEADER_ASYNC: Final = "X-DashScope-Async"
HEADER_OSS_RESOLVE: Final = "X-DashScope-OssResourceResolve"
HEADER_WORKSPACE: Final = "X-DashScope-WorkSpace"

# Account quota (§5).
SUBMIT_RPS: Final = 2.0
CONCURRENCY: Final = 2
QUERY_QPS: Final = 20.0
#: Typical task duration, seconds (§1: "about 5-15 s").
TYPICAL_TASK_SECONDS: Final = 10.0
TASK_TTL_SECONDS: Final = 24 * 3600
URL_TTL_SECONDS: Final = 24 * 3600

TaskStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"]
TERMINAL_STATUSES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})
#: "YYYY-MM-DD HH:mm:ss.SSS" (§3.2), no zone marker.
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"


def format_time(value: datetime) -> str:
    """A task timestamp in the service's format (milliseconds, no zone)."""
    return value.strftime(TIME_FORMAT)[:-3]


_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")


def parse_time(value: object) -> datetime | None:
    """A task timestamp as the service writes it (with or without milliseconds), naive."""
    if not isinstance(value, str) or not value:
        return None
    m = _TIME.fullmatch(value)
    if m is not None:  # the usual form, without strptime's cost (three per task query)
        try:
            y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
            return datetime(y, mo, d, h, mi, sec, int((m.group(7) or "0").ljust(6, "0")))
        except ValueError:
            return None
    for fmt in (TIME_FORMAT, "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            pass
    return None


PROMPT_MAX_CHARS: Final = 800

# Image inputs (§2.1).
IMAGE_MIN_SIDE: Final = 512
IMAGE_MAX_SIDE: Final = 4096
IMAGE_MAX_BYTES: Final = 10 * 1024 * 1024
#: Pillow format name -> MIME type of a data URI.
IMAGE_FORMATS: Final[dict[str, str]] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
}
#: Input fields carrying images.
IMAGE_FIELDS: Final = ("base_image_url", "mask_image_url")

FUNCTIONS: Final = (
    "stylization_all",
    "stylization_local",
    "description_edit",
    "description_edit_with_mask",
    "remove_watermark",
    "expand",
    "super_resolution",
    "colorization",
    "doodle",
    "control_cartoon_feature",
)
#: Functions that need ``mask_image_url``; every other function refuses one.
MASK_FUNCTIONS: Final = frozenset({"description_edit_with_mask"})


@dataclass(frozen=True)
class ParamSpec:
    """One entry of the request's ``parameters`` object."""

    name: str
    type: Literal["integer", "number", "boolean"]
    default: int | float | bool | None
    minimum: int | float | None = None
    maximum: int | float | None = None
    description: str = ""


PARAMS: Final[dict[str, ParamSpec]] = {
    p.name: p
    for p in (
        ParamSpec("n", "integer", 1, 1, 4, "Number of output images (each is billed)."),
        ParamSpec("seed", "integer", None, 0, 2147483647, "Random seed; random when omitted."),
        ParamSpec("watermark", "boolean", False, None, None, 'Add an "AI生成" mark bottom-right.'),
        ParamSpec(
            "strength", "number", 0.5, 0.0, 1.0, "How far to move from the original (0 to 1)."
        ),
        ParamSpec("top_scale", "number", 1.0, 1.0, 2.0, "Expand upwards (1.0 to 2.0)."),
        ParamSpec("bottom_scale", "number", 1.0, 1.0, 2.0, "Expand downwards (1.0 to 2.0)."),
        ParamSpec("left_scale", "number", 1.0, 1.0, 2.0, "Expand to the left (1.0 to 2.0)."),
        ParamSpec("right_scale", "number", 1.0, 1.0, 2.0, "Expand to the right (1.0 to 2.0)."),
        ParamSpec("upscale_factor", "integer", 1, 1, 4, "Enlargement factor; 1 enhances only."),
        ParamSpec("is_sketch", "boolean", False, None, None, "The input already is a sketch."),
    )
}

COMMON_PARAMS: Final = ("n", "seed", "watermark")
EXPAND_PARAMS: Final = ("top_scale", "bottom_scale", "left_scale", "right_scale")

#: Which parameters each function accepts (§2.2).
FUNCTION_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "stylization_all": (*COMMON_PARAMS, "strength"),
    "stylization_local": COMMON_PARAMS,
    "description_edit": (*COMMON_PARAMS, "strength"),
    "description_edit_with_mask": COMMON_PARAMS,
    "remove_watermark": COMMON_PARAMS,
    "expand": (*COMMON_PARAMS, *EXPAND_PARAMS),
    "super_resolution": (*COMMON_PARAMS, "upscale_factor"),
    "colorization": COMMON_PARAMS,
    "doodle": (*COMMON_PARAMS, "is_sketch"),
    "control_cartoon_feature": COMMON_PARAMS,
}

#: One line per function, for help text and schema descriptions.
FUNCTION_SUMMARIES: Final[dict[str, str]] = {
    "stylization_all": "Global style transfer (French picture book, gold-foil art).",
    "stylization_local": "Local style transfer: ice, cloud, lantern, wooden, porcelain, fluffy, "
    "weaving, balloon.",
    "description_edit": "Instruction edit of the whole image, no mask.",
    "description_edit_with_mask": "Edit (add, change, remove) inside the white area of a mask.",
    "remove_watermark": "Remove text and watermarks.",
    "expand": "Outpaint: widen the frame by a ratio per side.",
    "super_resolution": "Sharpen and upscale by an integer factor.",
    "colorization": "Colour a grayscale image; the prompt may name colours.",
    "doodle": "Turn a sketch or line art into an image.",
    "control_cartoon_feature": "Generate from a cartoon-character reference.",
}


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: str
    message: str


def _codes(*rows: tuple[int, str, str]) -> dict[str, ErrorCode]:
    return {code: ErrorCode(status, code, message) for status, code, message in rows}


#: Error codes with HTTP status and the service's message (§4).
ERRORS: Final[dict[str, ErrorCode]] = _codes(
    (400, "InvalidParameter", "Required parameter(s) missing or invalid, please check the request parameters."),
    (400, "IPInfringementSuspect", "Input data is suspected of being involved in IP infringement."),
    (400, "DataInspectionFailed", "Input data may contain inappropriate content."),
    (400, "BadRequest.EmptyInput", "Required input parameter missing from request."),
    (400, "BadRequest.EmptyParameters", 'Required parameter "parameters" missing from request.'),
    (400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.'),
    (400, "InvalidURL", "Invalid URL provided in your request."),
    (400, "Arrearage", "Access denied, please make sure your account is in good standing."),
    (401, "InvalidApiKey", "Invalid API-key provided."),
    (403, "AccessDenied", "Access denied."),
    (403, "Model.AccessDenied", "Model access denied."),
    (404, "ModelNotFound", "Model can not be found."),
    (408, "RequestTimeOut", "Request timed out, please try again later."),
    (413, "BadRequest.TooLarge", "Payload Too Large."),
    (415, "BadRequest.InputDownloadFailed", "Failed to download the input file."),
    (415, "BadRequest.UnsupportedFileFormat", "Input file format is not supported."),
    (429, "Throttling", "Requests throttling triggered."),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    (429, "Throttling.AllocationQuota", "Allocated quota exceeded, please increase your quota limit."),
    (500, "InternalError", "An internal error has occured, please try again later or contact service support."),
    (500, "InternalError.Algo", "An internal error has occured during execution, please try again later or contact service support."),
    (500, "InternalError.Timeout", "An internal timeout error has occured during execution, please try again later or contact service support."),
    (500, "SystemError", "An system error has occured, please try again later."),
    (503, "ModelUnavailable", "Model is unavailable, please try again later."),
)  # fmt: skip

#: FAILED-task codes worth a retry; everything else is final (DESIGN.md, "Scheduling").
TRANSIENT_TASK_CODES: Final = frozenset(
    {"InternalError", "InternalError.Algo", "InternalError.Timeout", "SystemError",
     "RequestTimeOut", "ModelUnavailable"}
)  # fmt: skip

#: The official SDK's wait() schedule (§8.2): sleep after poll k.
SDK_POLL_SLEEPS: Final = (1, 1, 2, 2, 2, 4, 4, 4, 5)
SDK_POLL_SLEEP_MAX: Final = 5


def is_transient(code: str) -> bool:
    """Whether a FAILED task with this code may succeed when submitted again."""
    return code in TRANSIENT_TASK_CODES or code.startswith("InternalError")

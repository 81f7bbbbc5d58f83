from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from wanrecipe import wire
from wanrecipe.emulator import engines
from wanrecipe.emulator.engines.decode import decode_image

from . import scenes


def defaults(function: str, **overrides: Any) -> dict[str, Any]:
    params = {
        name: wire.PARAMS[name].default
        for name in wire.FUNCTION_PARAMS[function]
        if wire.PARAMS[name].default is not None
    }
    params.update(overrides)
    return params


Render = Callable[..., tuple[engines.EditResult, np.ndarray]]


@pytest.fixture
def render() -> Render:
    """Run the real engine interface on an array; return the result and its decoded pixels."""

    def run(
        function: str,
        rgb: np.ndarray,
        prompt: str = "",
        *,
        mask: np.ndarray | None = None,
        seed: int = 7,
        **params: Any,
    ) -> tuple[engines.EditResult, np.ndarray]:
        extra = {
            k: params.pop(k) for k in ("badge", "time_budget", "max_output_pixels") if k in params
        }
        request = engines.EditRequest(
            function=function,
            image=scenes.png_bytes(rgb),
            prompt=prompt,
            parameters=defaults(function, **params),
            seed=seed,
            mask=None if mask is None else scenes.mask_bytes(mask),
            **extra,
        )
        result = engines.render(request)
        return result, decode_image(result.png)

    return run

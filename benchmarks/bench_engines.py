"""Time and peak memory of each engine at 1024² and 2048² (and super_resolution x4 to 4096²).

Each case runs in a fresh subprocess so its peak RSS is its own. "edit s" is the engine alone on
decoded pixels; "render s" the whole ``render`` call (decode, edit, PNG encoding).

    .venv/bin/python benchmarks/bench_engines.py            # all cases
    .venv/bin/python benchmarks/bench_engines.py --sizes 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "engines"))

#: (label, function, parameters, prompt, input kind). Defaults unless the label says otherwise.
CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("stylization_all", "stylization_all", {"strength": 0.5}, "法国绘本风格", "photo"),
    ("stylization_all gold", "stylization_all", {"strength": 0.5}, "金箔艺术", "photo"),
    ("stylization_local", "stylization_local", {}, "把房子变成木板风格", "photo"),
    ("description_edit", "description_edit", {"strength": 0.5}, "make it black and white", "photo"),
    ("description_edit_with_mask", "description_edit_with_mask", {}, "", "photo+mask"),
    ("remove_watermark", "remove_watermark", {}, "去除水印", "text"),
    ("remove_watermark (classical)", "remove_watermark", {}, "去除水印", "text"),
    ("expand (defaults)", "expand", {}, "a wide valley", "photo"),
    ("expand 1.5 all sides", "expand",
     {k: 1.5 for k in ("top_scale", "bottom_scale", "left_scale", "right_scale")}, "", "photo"),
    ("super_resolution x1", "super_resolution", {"upscale_factor": 1}, "", "photo"),
    ("super_resolution x4", "super_resolution", {"upscale_factor": 4}, "", "photo"),
    ("colorization", "colorization", {}, "蓝色背景，黄色的叶子", "grey"),
    ("doodle", "doodle", {"is_sketch": False}, "a cosy house, red roof", "photo"),
    ("control_cartoon_feature", "control_cartoon_feature", {}, "in a forest", "cartoon"),
]  # fmt: skip


def one(index: int, size: int) -> dict[str, Any]:
    import cv2
    import numpy as np
    import scenes

    from wanrecipe.emulator import engines
    from wanrecipe.emulator.engines.common import Budget, Job

    label, function, params, prompt, kind = CASES[index]
    if function == "super_resolution" and params.get("upscale_factor") == 4 and size > 1024:
        return {"label": label, "size": size, "skipped": "x4 above 1024 exceeds the 64 MP cap"}
    photo = scenes.landscape(size)
    mask = None
    hole = np.zeros((size, size), np.uint8)
    if kind == "text":
        photo, _ = scenes.with_text(photo)
    elif kind == "grey":
        photo = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    elif kind == "cartoon":
        photo = scenes.cartoon(size)
    elif kind == "photo+mask":
        cv2.circle(hole, (int(size * 0.585), int(size * 0.82)), int(size * 0.045), 1, -1)
        mask = scenes.mask_bytes(hole > 0)
    full = {"n": 1, "watermark": False, **params}
    request = engines.EditRequest(function, scenes.png_bytes(photo), prompt, full, 7, 0, mask)
    table = engines._engines()  # imports the engine modules (and below, models) before timing
    if function in ("remove_watermark", "stylization_all"):
        table[function](Job(function, photo[:64, :64], prompt, full, 7, 0, None, Budget(0.0)))
    # The edit alone, on decoded pixels (what the per-function targets are about) ...
    job = Job(function, photo, prompt, full, 7, 0, None if mask is None else hole > 0,
              Budget(engines.DEFAULT_TIME_BUDGETS.get(function, 1.5)))  # fmt: skip
    start = time.perf_counter()
    table[function](job)
    edit = time.perf_counter() - start
    # ... and the whole render call: decode, edit, PNG encoding (modules and models warm).
    start = time.perf_counter()
    result = engines.render(request)
    whole = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "label": label,
        "size": size,
        "out": f"{result.width}x{result.height}",
        "edit_s": round(edit, 3),
        "render_s": round(whole, 3),
        "peak_rss_mb": round(peak_mb),
        "engine": result.engine,
        "fidelity": result.fidelity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument(
        "--one", type=int, nargs=2, metavar=("CASE", "SIZE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    head = f"{'case':28} {'input':>5} {'output':>10} {'edit s':>7} {'render s':>8} {'peak MB':>7}"
    print(head + "  engine")
    for size in args.sizes:
        for i in range(len(CASES)):
            env = dict(os.environ)
            if "classical" in CASES[i][0]:
                env["WANRECIPE_NO_MODELS"] = "1"  # the path taken without the models extra
            proc = subprocess.run(
                [sys.executable, __file__, "--one", str(i), str(size)],
                capture_output=True, text=True, check=True, cwd=ROOT, env=env,
            )  # fmt: skip
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            if "skipped" in row:
                print(f"{row['label']:28} {size:>5} skipped: {row['skipped']}")
                continue
            print(
                f"{row['label']:28} {size:>5} {row['out']:>10} {row['edit_s']:>7.2f} "
                f"{row['render_s']:>8.2f} {row['peak_rss_mb']:>7}  "
                f"{row['engine']} ({row['fidelity']})"
            )


if __name__ == "__main__":
    main()

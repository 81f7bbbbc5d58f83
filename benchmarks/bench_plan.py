"""Validate and plan a generated 1,000-step recipe; print how long each part takes.

    python benchmarks/bench_plan.py [--steps 1000] [--seed 1]

Target: validate + plan under 1 s on a 2-core machine. The recipe mixes every function, fans
out and joins, uses templated parameters and prompts, and reads one local input image, so
every check runs (schema, templates, graph, rendering, preflight).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PIL import Image

from wanrecipe import plan_recipe, validate_recipe, wire
from wanrecipe.recipe.plan import estimate_wall_time

T = TypeVar("T")
TARGET_SECONDS = 1.0


def generate(steps: int, seed: int) -> str:
    """A recipe of ``steps`` steps; each uses one or two earlier ones (or the input photo)."""
    rng = random.Random(seed)
    lines = [
        "version: 1",
        "name: bench",
        "params:",
        "  photo: {type: image, default: in.png}",
        "  factor: {type: integer, default: 2, minimum: 1, maximum: 4}",
        "  strength: {type: number, default: 0.5, minimum: 0, maximum: 1}",
        "  style: {type: string, default: watercolour}",
        "defaults:",
        "  seed: 7",
        "  timeout: 10m",
        "steps:",
    ]
    functions = [f for f in wire.FUNCTIONS if f not in wire.MASK_FUNCTIONS]
    for i in range(steps):
        function = functions[i % len(functions)]
        source = (
            "params.photo" if i < 20 or rng.random() < 0.05 else f"steps.s{rng.randrange(i)}.image"
        )
        lines += [
            f"  s{i}:",
            f"    function: {function}",
            f'    image: "{{{{ {source} }}}}"',
            f'    prompt: "step {i} in {{{{ params.style }}}} style"',
        ]
        parameters = {"n": str(1 + i % 3)}
        if function in ("stylization_all", "description_edit"):
            parameters["strength"] = '"{{ params.strength }}"'
        elif function == "super_resolution":
            parameters["upscale_factor"] = '"{{ params.factor }}"'
        elif function == "expand":
            parameters["left_scale"] = "1.5"
        lines.append(
            "    parameters: {" + ", ".join(f"{k}: {v}" for k, v in parameters.items()) + "}"
        )
        if i > 20 and rng.random() < 0.3:
            lines.append(f"    needs: [s{rng.randrange(i)}]")
    lines += ["outputs:", f'  final: "{{{{ steps.s{steps - 1}.image }}}}"']
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[], T], repeat: int = 3) -> tuple[T, float]:
    """The result and the best of ``repeat`` wall times (the least disturbed by neighbours)."""
    best = float("inf")
    result: T
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "bench.yaml"
        recipe.write_text(generate(args.steps, args.seed), encoding="utf-8")
        Image.new("RGB", (640, 640), "gray").save(Path(tmp) / "in.png")

        # The first call pays for imports and schema compilation; report it separately.
        _, cold = timed(lambda: validate_recipe(recipe), repeat=1)
        report, validate_s = timed(lambda: validate_recipe(recipe))
        if not report.ok:
            for d in report.errors[:5]:
                print(d.format(), file=sys.stderr)
            return 1
        plan, plan_s = timed(lambda: plan_recipe(recipe))
        deps = {s.id: plan.recipe.deps(s.id) for s in plan.recipe.steps}
        _, schedule_s = timed(lambda: estimate_wall_time(deps))

    rows = [
        ("steps", f"{len(plan.steps)}"),
        ("levels", f"{len(plan.levels)}"),
        ("billed images", f"{plan.billed_images}"),
        ("cost", f"${plan.cost_usd:.2f}"),
        ("est. wall time", f"{plan.wall_seconds / 60:.1f} min"),
        ("validate (first call)", f"{cold:.3f} s"),
        ("validate", f"{validate_s:.3f} s"),
        ("plan (validate + plan)", f"{plan_s:.3f} s"),
        ("  of which scheduling", f"{schedule_s:.3f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>12}")
    ok = plan_s < TARGET_SECONDS
    print(f"{'target':<{width}}  {'< 1 s ' + ('ok' if ok else 'MISSED'):>12}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

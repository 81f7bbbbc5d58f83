"""A run's records and places: its step records before it starts, its outputs after it ends,
and where its run directory and state directory are by default."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..recipe.names import run_dir_name
from ..report.record import RunRecord, StepRecord


def default_run_dir(recipe_name: str, now: datetime | None = None) -> Path:
    """``runs/<name>/<UTC timestamp>``; a second run in the same second gets ``-2``, ..."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    # A name never steers the path (`../x`, `/abs`): validate warns when it was changed.
    base = Path("runs") / run_dir_name(recipe_name) / stamp
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{stamp}-{number}")
    return candidate


def default_state_dir(recipe_path: Path, env: Mapping[str, str] | None = None) -> Path:
    """``WANRECIPE_STATE_DIR``, else ``.wanrecipe/`` beside the recipe (like ``.git``)."""
    env = os.environ if env is None else env
    given = env.get("WANRECIPE_STATE_DIR")
    return Path(given) if given else Path(recipe_path).resolve().parent / ".wanrecipe"


def with_dependants(recipe: Any, steps: Sequence[str]) -> frozenset[str]:
    """The steps and everything downstream of them. Raises UsageError for unknown ids.

    A step with foreach:/matrix: may be named as written (``styles``: all its instances)."""
    ids = [i for s in steps for i in (recipe.instances(s) or (s,))]
    unknown = [s for s in ids if s not in recipe.step_ids]
    if unknown:
        written = [s.id for s in getattr(recipe, "steps_as_written", recipe.steps)]
        raise UsageError(f"no step {unknown[0]!r} in {recipe.name}; steps: {', '.join(written)}")
    found: set[str] = set()
    todo = list(ids)
    while todo:
        sid = todo.pop()
        if sid not in found:
            found.add(sid)
            todo.extend(recipe.dependents(sid))
    return frozenset(found)


def step_records(recipe: Any) -> dict[str, StepRecord]:
    """One record per step that runs, and one per step ``if:`` (or a skipped dependency)
    leaves out, already ``skipped`` with its reason; fanned-out instances carry their values."""
    records = {s.id: StepRecord(s.id, s.function, fanout=_fanout(s)) for s in recipe.steps}
    for skip in getattr(recipe, "skipped", {}).values():
        records[skip.id] = StepRecord(
            skip.id,
            skip.function,
            state="skipped",
            skipped_because=skip.reason,
            fanout=_fanout(skip),
        )
    return records


def _fanout(step: Any) -> dict[str, Any] | None:
    if step.fanout is None:
        return None
    return {"group": step.group, **json.loads(json.dumps(step.fanout.describe(), default=str))}


def collect_outputs(
    recipe: Any, record: RunRecord, run_dir: Path, render_outputs: Any
) -> dict[str, list[str]]:
    """The recipe's ``outputs:`` rendered from the steps that are done or cached."""
    from ..executor.inputs import StepImage

    done: dict[str, list[StepImage]] = {}
    for sid, step in record.steps.items():
        if step.state in ("done", "cached"):
            done[sid] = [
                StepImage(
                    sid,
                    r.index,
                    run_dir / r.path,
                    r.sha256,
                    r.size,
                    r.width,
                    r.height,
                    None,
                    0.0,
                    record.backend,
                )
                for r in step.results
            ]
    rendered = render_outputs(recipe, done)
    result: dict[str, list[str]] = {}
    for name, value in rendered.items():
        values: Sequence[object] = value if isinstance(value, list | tuple) else [value]
        result[name] = [str(v) for v in values]
    return result

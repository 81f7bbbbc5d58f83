"""The lock file: ``<recipe>.lock`` beside the recipe, what made each result, diff-friendly.

Per step: the function, the rendered prompt, the parameters with the seed sent, every input
(where it came from, sha256, size, dimensions), the content key, the task that made the result,
the backend it ran on, what it cost, and every output (file, sha256, size, dimensions).

It says what *made* each result, not what this run did: a cached step keeps the task id,
backend and cost of the task that produced its stored images. So two runs of the same locked
recipe write byte-identical lock files (no timestamps, no run directories, keys in a stable
order), and the diff between two lock files is exactly what changed.

``wanrecipe run --locked`` replays the locked seeds (:func:`check_lock` first refuses a recipe
that no longer matches); ``wanrecipe verify`` checks stored images against the lock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from .. import wire
from ..errors import ImageInputError, RecipeError, UsageError
from ..executor.identity import realm_of
from ..executor.inputs import StepImage
from ..executor.preview import facts_dict, placeholder, step_view
from ..recipe.model import Recipe
from ..redact import redact_value
from ..store import JournalOps as Journal
from . import yaml_block
from .files import write_text_atomic
from .record import RunRecord

LOCK_VERSION = 1
#: libyaml's safe loader where available: the same data, several times faster.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_HEADER = (
    "# wanrecipe lock file: what made each result of {file}.\n"
    "# Written by `wanrecipe run`; replay it with `wanrecipe run --locked`, check stored\n"
    "# images with `wanrecipe verify`. Commit it beside the recipe.\n"
)


@dataclass(frozen=True)
class LockedOutput:
    file: str
    sha256: str
    size: int
    width: int
    height: int


@dataclass(frozen=True)
class LockedStep:
    id: str
    function: str
    prompt: str
    parameters: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    key: str
    task_id: str | None
    backend: str
    images: int
    outputs: tuple[LockedOutput, ...]

    @property
    def seed(self) -> int:
        return int(self.parameters["seed"])


@dataclass(frozen=True)
class Lock:
    path: Path
    name: str
    steps: dict[str, LockedStep]

    @property
    def seeds(self) -> dict[str, int]:
        return {sid: step.seed for sid, step in self.steps.items()}


def lock_path(recipe_path: Path) -> Path:
    """``recipes/old-photo.yaml`` -> ``recipes/old-photo.lock``."""
    return Path(recipe_path).with_suffix(".lock")


# -- writing -------------------------------------------------------------------------------


def build_lock(
    recipe: Recipe, record: RunRecord, journal: Journal, previous: Lock | None = None
) -> dict[str, Any]:
    """The lock document for a finished run. Steps that did not finish this time keep their
    entry from ``previous`` (the last lock), so a failed or interrupted re-run does not
    forget what an earlier run made."""
    run_dir = Path(record.run_dir)
    realm = realm_of(record.backend)
    finished: dict[str, list[StepImage]] | None = None
    steps: dict[str, Any] = {}
    for step in recipe.steps:
        rec = record.steps.get(step.id)
        if rec is None or rec.state not in ("done", "cached") or rec.key is None:
            if previous is not None and step.id in previous.steps:
                steps[step.id] = _locked_dict(previous.steps[step.id])
            continue
        if rec.prompt is not None and rec.parameters is not None and rec.inputs is not None:
            # What the scheduler prepared: no re-render, no input read again.
            function, prompt = rec.function, rec.prompt
            parameters, inputs = rec.parameters, rec.inputs
        else:  # a record without them (a library caller's own scheduler): work them out
            if finished is None:
                finished = _placeholders(record, run_dir)
            upstream = {d: finished[d] for d in recipe.deps(step.id)}
            view = step_view(recipe, step.id, upstream, realm)
            function, prompt = view.rendered.function, view.rendered.prompt
            parameters = dict(view.rendered.parameters)
            inputs = {role: facts_dict(f) for role, f in view.inputs.items()}
        entry = journal.lookup_done(rec.key)
        made_by = entry.attempt if entry is not None else None
        task_id = made_by.task_id if made_by else rec.cached_from or _last_task(rec)
        images = (made_by.usage_images if made_by else None) or rec.images_billed
        steps[step.id] = {
            "function": function,
            "prompt": prompt,
            "parameters": _sorted({**parameters, "seed": rec.seed}),
            "inputs": {role: dict(inputs[role]) for role in sorted(inputs)},
            "key": rec.key,
            "task_id": task_id,
            "backend": made_by.backend if made_by else record.backend,
            "images": images,
            "cost_usd": str(wire.PRICE_PER_IMAGE_USD * images),
            "outputs": [
                {
                    "file": r.path,
                    "sha256": r.sha256,
                    "size": r.size,
                    "width": r.width,
                    "height": r.height,
                }
                for r in sorted(rec.results, key=lambda r: r.index)
            ],
        }
    total = sum((Decimal(s.get("cost_usd", "0")) for s in steps.values()), Decimal(0))
    return {
        "version": LOCK_VERSION,
        "recipe": recipe.name,
        "params": {k: _param(recipe, k, v) for k, v in sorted(recipe.params.items())},
        "images": sum(int(s.get("images", 0)) for s in steps.values()),
        "cost_usd": str(total),
        "steps": steps,
    }


#: Text that libyaml's emitter writes exactly as PyYAML's does (tested): printable, no line
#: breaks, nothing outside the Basic Multilingual Plane. A lock with anything else is written
#: by the (10x slower) pure-Python emitter, so the bytes never depend on which one ran.
_SAME_IN_C = re.compile(r"[\x20-\x7e\xa0-\ud7ff\uff00-\uffef]*")


def _dumper(value: Any) -> Any:
    fast = getattr(yaml, "CSafeDumper", None)
    return fast if fast is not None and _plain_text(value) else yaml.SafeDumper


def _plain_text(value: Any) -> bool:
    if isinstance(value, str):
        return _SAME_IN_C.fullmatch(value) is not None
    if isinstance(value, Mapping):
        return all(_plain_text(k) and _plain_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain_text(v) for v in value)
    return True


def dump_lock(document: Mapping[str, Any], recipe_file: str) -> str:
    body = yaml_block.dump(dict(document))  # the same bytes, a fraction of the time
    if body is None:
        body = yaml.dump(
            dict(document),
            Dumper=_dumper(document),
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=10_000,
        )
    return _HEADER.format(file=recipe_file) + body


def write_lock(recipe: Recipe, record: RunRecord, journal: Journal) -> Path | None:
    """Write ``<recipe>.lock`` when at least one step finished; returns its path."""
    if not any(s.state in ("done", "cached") for s in record.steps.values()):
        return None
    path = lock_path(recipe.path)
    previous = None
    if path.exists():
        try:
            previous = read_lock(path)
        except UsageError:
            previous = None  # unreadable: replaced by this run's
    text = dump_lock(build_lock(recipe, record, journal, previous), recipe.path.name)
    write_text_atomic(path, text, keep_if_unchanged=True)
    return path


def _locked_dict(step: LockedStep) -> dict[str, Any]:
    images = step.images
    return {
        "function": step.function,
        "prompt": step.prompt,
        "parameters": _sorted(step.parameters),
        "inputs": {role: dict(v) for role, v in sorted(step.inputs.items())},
        "key": step.key,
        "task_id": step.task_id,
        "backend": step.backend,
        "images": images,
        "cost_usd": str(wire.PRICE_PER_IMAGE_USD * images),
        "outputs": [
            {"file": o.file, "sha256": o.sha256, "size": o.size, "width": o.width,
             "height": o.height}
            for o in step.outputs
        ],
    }  # fmt: skip


def _placeholders(record: RunRecord, run_dir: Path) -> dict[str, list[StepImage]]:
    return {
        sid: [
            placeholder(sid, r.index, r.sha256, r.size, r.width, r.height, run_dir / r.path)
            for r in rec.results
        ]
        for sid, rec in record.steps.items()
        if rec.state in ("done", "cached")
    }


def _sorted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: mapping[k] for k in sorted(mapping)}


def _param(recipe: Recipe, name: str, value: object) -> object:
    decl = recipe.param_decls.get(name)
    if decl is not None and decl.type == "image" and isinstance(value, str):
        path = Path(value)
        if path.is_absolute():
            return recipe.display_path(path)
    # A param may be a signed URL (-p photo=https://...?Signature=...): never its query.
    return redact_value(value)


def _last_task(rec: Any) -> str | None:
    for attempt in reversed(rec.attempts):
        if attempt.task_id:
            return str(attempt.task_id)
    return None


# -- reading and checking ----------------------------------------------------------------


def read_lock(path: Path) -> Lock:
    """Parse a lock file. Raises UsageError when it is missing or malformed."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except FileNotFoundError:
        raise UsageError(
            f"no lock file {path}: run the recipe once without --locked to write it"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the lock file: {exc}") from None
    try:
        if data.get("version") != LOCK_VERSION:
            raise UsageError(
                f"{path}: lock file version {data.get('version')!r}, this wanrecipe reads "
                f"version {LOCK_VERSION}"
            )
        steps = {
            str(sid): LockedStep(
                id=str(sid),
                function=str(s["function"]),
                prompt=str(s["prompt"]),
                parameters=dict(s["parameters"]),
                inputs={str(k): dict(v) for k, v in s["inputs"].items()},
                key=str(s["key"]),
                task_id=s.get("task_id"),
                backend=str(s.get("backend", "")),
                images=int(s.get("images", 0)),
                outputs=tuple(
                    LockedOutput(
                        str(o["file"]),
                        str(o["sha256"]),
                        int(o["size"]),
                        int(o["width"]),
                        int(o["height"]),
                    )
                    for o in s["outputs"]
                ),
            )
            for sid, s in (data.get("steps") or {}).items()
        }
        for step in steps.values():
            step.seed  # noqa: B018 - every locked step has a seed
    except UsageError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: malformed lock file ({type(exc).__name__}: {exc})") from None
    return Lock(path, str(data.get("recipe", "")), steps)


def check_lock(recipe: Recipe, lock: Lock) -> list[str]:
    """What differs between the recipe and its lock, one line per problem ("step x: ...").

    Every step is rendered with the *locked* upstream results standing in for its inputs, so
    the check needs no request: a replay that reproduces the locked results sends exactly the
    locked requests."""
    problems: list[str] = []
    for sid in lock.steps:
        if sid not in recipe.step_ids:
            problems.append(f"step {sid}: in the lock but no longer in the recipe")
    for step in recipe.steps:
        locked = lock.steps.get(step.id)
        if locked is None:
            problems.append(
                f"step {step.id}: not in the lock (it had not finished when the lock was "
                "written); run without --locked"
            )
            continue
        missing = [d for d in recipe.deps(step.id) if d not in lock.steps]
        if missing:
            continue  # reported for the upstream step
        upstream = {
            d: [
                placeholder(d, i, o.sha256, o.size, o.width, o.height, Path(o.file))
                for i, o in enumerate(lock.steps[d].outputs)
            ]
            for d in recipe.deps(step.id)
        }
        try:
            view = step_view(recipe, step.id, upstream, "emulator")
        except (RecipeError, ImageInputError) as exc:
            problems.append(f"step {step.id}: cannot render against the lock: {exc}")
            continue
        problems.extend(f"step {step.id}: {p}" for p in _differences(view, locked))
    return problems


def _differences(view: Any, locked: LockedStep) -> list[str]:
    rendered = view.rendered
    out: list[str] = []
    if rendered.function != locked.function:
        out.append(f"function is {rendered.function}, the lock has {locked.function}")
    if rendered.prompt != locked.prompt:
        out.append(f"prompt is {rendered.prompt!r}, the lock has {locked.prompt!r}")
    now = {k: v for k, v in rendered.parameters.items() if k != "seed"}
    then = {k: v for k, v in locked.parameters.items() if k != "seed"}
    for name in sorted(now.keys() | then.keys()):
        if name not in then:
            out.append(f"parameter {name}={now[name]!r} is not in the lock")
        elif name not in now:
            out.append(f"parameter {name}={then[name]!r} of the lock is no longer set")
        elif now[name] != then[name] or isinstance(now[name], bool) != isinstance(then[name], bool):
            out.append(f"parameter {name} is {now[name]!r}, the lock has {then[name]!r}")
    seed = rendered.parameters.get("seed")
    if seed is not None and seed != locked.seed:
        out.append(f"seed is {seed}, the lock has {locked.seed}")
    for role in sorted(view.inputs.keys() | locked.inputs.keys()):
        facts = view.inputs.get(role)
        then_input = locked.inputs.get(role)
        if facts is None:
            out.append(f"the lock has a {_role(role)} but the recipe sets none")
            continue
        if then_input is None:
            out.append(f"a {_role(role)} is set but the lock has none")
            continue
        if facts.source != then_input.get("source"):
            out.append(
                f"{_role(role)} comes from {facts.source}, the lock has {then_input.get('source')}"
            )
        elif not facts.from_step:
            digest = then_input.get("sha256") or then_input.get("url_sha256")
            if facts.digest != digest:
                out.append(
                    f"{_role(role)} {facts.source} changed (sha256 {str(digest)[:12]} in the "
                    f"lock, {facts.digest[:12]} now)"
                )
    return out


def _role(role: str) -> str:
    return "mask" if role == "mask_image_url" else "image"

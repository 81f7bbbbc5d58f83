"""What the cache holds for each step of a recipe, worked out the way the scheduler works it out.

``plan`` and ``cache gc`` need each step's content key without running anything. A step's key
depends on the sha256 of its inputs, and an input may be an upstream step's result: that one
is known only when the upstream step is cached (its stored result stands in for the output).
So keys are computed level by level, rendering each step with placeholder outputs built from
the cached upstream results, local files hashed and URLs identified by ``input_digest``,
exactly as ``Scheduler._prepare`` does. A step below one that will run cannot be known yet.

The lock file (``report/lock.py``) uses :func:`step_view` too, so its input digests, rendered
prompts and parameters are the scheduler's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import images
from ..errors import ImageInputError, RecipeError
from ..recipe.model import Recipe
from ..recipe.plan import check_rendering
from ..recipe.render import RenderedStep, render_step
from ..redact import redact_url
from ..store import JournalOps as Journal
from .identity import input_digest, recorded_seed, step_identity, step_key
from .inputs import StepImage

MarkStatus = Literal["cached", "reattach", "dangling", "run"]


@dataclass(frozen=True)
class InputFacts:
    """One input image as the key sees it, and as the lock file shows it."""

    #: ``in.png`` (relative to the recipe), ``steps.a``, ``steps.a.images[1]`` or a URL
    #: without its query string.
    source: str
    #: What the content key uses: the sha256 of the bytes, or of ``url:<URL>`` when unfetched.
    digest: str
    sha256: str | None
    size: int | None
    width: int | None
    height: int | None

    @property
    def from_step(self) -> bool:
        return self.source.startswith("steps.")


@dataclass(frozen=True)
class StepView:
    """A step rendered against known upstream results: its request values and identity."""

    rendered: RenderedStep
    inputs: dict[str, InputFacts]
    identity: str
    realm: str

    def key(self, seed: int) -> str:
        """The content key for this step with ``seed`` (the scheduler's ``step_key``)."""
        return step_key(
            self.rendered.function,
            self.rendered.prompt,
            {**self.rendered.parameters, "seed": seed},
            {role: facts.digest for role, facts in self.inputs.items()},
            self.realm,
        )


@dataclass(frozen=True)
class Mark:
    """What a run would do with one step: reuse, re-attach, look for a lost submit, or run."""

    status: MarkStatus
    #: Why, in a few words ("never run", "prompt changed", "task 1234 still on the service").
    reason: str
    #: Images billed if the step runs (``n``); 0 for cached and re-attached steps.
    billed_images: int
    key: str | None = None
    task_id: str | None = None


def step_view(
    recipe: Recipe,
    sid: str,
    upstream: Mapping[str, Sequence[StepImage]],
    realm: str,
) -> StepView:
    """Render ``sid`` with ``upstream`` results and describe its inputs.

    Raises RecipeError (rendering) or ImageInputError (an unreadable local input)."""
    rendered = render_step(recipe, sid, upstream)
    inputs = {"base_image_url": _facts(recipe, rendered.image)}
    if rendered.mask is not None:
        inputs["mask_image_url"] = _facts(recipe, rendered.mask)
    digests = {role: facts.digest for role, facts in inputs.items()}
    params = dict(rendered.parameters)
    identity = step_identity(rendered.function, rendered.prompt, params, digests, realm)
    return StepView(rendered, inputs, identity, realm)


def placeholder(
    sid: str, index: int, sha256: str, size: int, width: int, height: int, path: Path
) -> StepImage:
    """A stand-in for a finished step's output (no live URL: a key never depends on one)."""
    return StepImage(sid, index, path, sha256, size, width, height, None, 0.0, "")


def cache_preview(
    recipe: Recipe,
    journal: Journal,
    realm: str,
    *,
    force: frozenset[str] = frozenset(),
    no_cache: bool = False,
) -> dict[str, Mark]:
    """Per step, in declared order: cached / reattach / dangling / run, and why."""
    # Images each step asks for, rendered (a templated `n` counts as what it renders to),
    # for the steps whose inputs are not known yet.
    rendered, _ = check_rendering(recipe)
    counts = {sid: step.n for sid, step in rendered.items()}
    known: dict[str, list[StepImage] | None] = {}
    marks: dict[str, Mark] = {}
    for level in recipe.levels():
        for sid in level:
            marks[sid], known[sid] = _mark(
                recipe, journal, realm, sid, known, force, no_cache, counts.get(sid, 1)
            )
    return {s.id: marks[s.id] for s in recipe.steps}


def _mark(
    recipe: Recipe,
    journal: Journal,
    realm: str,
    sid: str,
    known: Mapping[str, list[StepImage] | None],
    force: frozenset[str],
    no_cache: bool,
    n: int,
) -> tuple[Mark, list[StepImage] | None]:
    pending = [d for d in recipe.deps(sid) if known.get(d) is None]
    if pending:
        return Mark("run", f"after {pending[0]}, which will run first", n), None
    try:
        view = step_view(recipe, sid, {d: known[d] or [] for d in recipe.deps(sid)}, realm)
    except (RecipeError, ImageInputError) as exc:
        return Mark("run", f"cannot render: {exc}", n), None
    n = view.rendered.n
    seed = view.rendered.parameters.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = recorded_seed(journal, recipe=str(recipe.path), step=sid, identity=view.identity)
    if seed is None:
        return Mark("run", _why(recipe, journal, sid, view), n), None
    key = view.key(seed)
    if no_cache or sid in force:
        return Mark("run", "--no-cache" if no_cache else "--force", n, key), None
    state = journal.cache_status([key])[key]
    if state.status == "cached" and state.done is not None:
        done = state.done.attempt
        outputs = [
            placeholder(
                sid, r.index, r.sha256, r.size, r.width or 0, r.height or 0,
                journal.blobs.path(r.sha256),
            )
            for r in done.results
        ]  # fmt: skip
        return Mark("cached", f"result of task {done.task_id}", 0, key, done.task_id), outputs
    if state.status == "reattach":
        task = next(a.task_id for a in state.in_flight if a.task_id)
        return Mark("reattach", f"task {task} is still on the service", 0, key, task), None
    if state.status == "dangling":
        return (
            Mark(
                "dangling",
                "an earlier run stopped while submitting: it may already be billed; the run "
                "looks for its task in the task list before submitting again",
                n,
                key,
            ),
            None,
        )
    return Mark("run", _why(recipe, journal, sid, view, key), n, key), None


def _why(recipe: Recipe, journal: Journal, sid: str, view: StepView, key: str | None = None) -> str:
    """Why a step will run: what differs from its latest attempt in this state dir."""
    previous = journal.attempts(step=sid, recipe=str(recipe.path))
    if not previous:
        return "never run"
    last = previous[-1]
    if key is not None and last.key == key:
        if last.state == "done":
            return "its stored images are missing"
        code = f" ({last.error_code})" if last.error_code else ""
        return f"the last attempt ended {last.state}{code}"
    request = last.request
    sent = request.get("input", {})
    rendered = view.rendered
    if sent.get("function") != rendered.function:
        return "function changed"
    if sent.get("prompt") != rendered.prompt:
        return "prompt changed"
    old = {k: v for k, v in request.get("parameters", {}).items() if k != "seed"}
    new = {k: v for k, v in rendered.parameters.items() if k != "seed"}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        return "parameters changed: " + ", ".join(changed)
    if "seed" in rendered.parameters and rendered.parameters["seed"] != last.seed:
        return "seed changed"
    if request.get("identity") == view.identity:
        return "no stored result"
    other = "dashscope" if view.realm != "dashscope" else "emulator"
    digests = {role: facts.digest for role, facts in view.inputs.items()}
    if request.get("identity") == step_identity(
        rendered.function, rendered.prompt, dict(rendered.parameters), digests, other
    ):
        return f"only run on the {other} backend so far"
    sources = ", ".join(f.source for f in view.inputs.values())
    return f"an input image changed ({sources})"


def _facts(recipe: Recipe, ref: object) -> InputFacts:
    if isinstance(ref, StepImage):
        source = f"steps.{ref.step}" if ref.index == 0 else f"steps.{ref.step}.images[{ref.index}]"
        return InputFacts(source, ref.sha256, ref.sha256, ref.size, ref.width, ref.height)
    if isinstance(ref, Path):
        return _file_facts(recipe.display_path(ref), _read(ref))
    text = str(ref)
    if images.is_data_uri(text):
        _mime, data = images.parse_data_uri(text)
        return _file_facts(redact_url(text), data)
    if images.is_remote(text):
        return InputFacts(redact_url(text), input_digest(None, text), None, None, None, None)
    path = Path(text)
    return _file_facts(recipe.display_path(path), _read(path))


def prepared_facts(recipe: Recipe, ref: object, sha256: str | None, info: Any) -> InputFacts:
    """An input's facts from what preparing it already found (its sha256 and header), so
    nothing is read again; the same facts as :func:`step_view` works out."""
    if isinstance(ref, StepImage) or sha256 is None or info is None:
        return _facts(recipe, ref)  # a step output or a URL: nothing to read
    text = str(ref)
    if isinstance(ref, Path):
        source = recipe.display_path(ref)
    elif images.is_data_uri(text):
        source = redact_url(text)
    else:
        source = recipe.display_path(Path(text))
    return InputFacts(source, sha256, sha256, info.size_bytes, info.width, info.height)


def facts_dict(facts: InputFacts) -> dict[str, Any]:
    """An input as the lock file (and the run record) shows it."""
    if facts.sha256 is None:
        # A URL the service fetches: identified by the sha256 of the URL, not of its bytes.
        return {"source": facts.source, "url_sha256": facts.digest}
    return {
        "source": facts.source,
        "sha256": facts.sha256,
        "size": facts.size,
        "width": facts.width,
        "height": facts.height,
    }


def _file_facts(source: str, data: bytes) -> InputFacts:
    info = images.inspect_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return InputFacts(source, digest, digest, len(data), info.width, info.height)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read: {exc.strerror}") from exc


_WORDS: dict[str, str] = {
    "cached": "cached",
    "reattach": "re-attach",
    "dangling": "look up",
    "run": "will run",
}


def billed(marks: Mapping[str, Mark]) -> int:
    """Images a run would pay for: steps that will run, and lost submits not found again."""
    return sum(m.billed_images for m in marks.values() if m.status in ("run", "dangling"))


def mark_dict(mark: Mark) -> dict[str, object]:
    """One step's mark as ``plan --json`` shows it."""
    return {
        "status": mark.status,
        "reason": mark.reason,
        "billed_images": mark.billed_images if mark.status in ("run", "dangling") else 0,
        "key": mark.key,
        "task_id": mark.task_id,
    }


def format_marks(marks: Mapping[str, Mark], state_dir: str) -> str:
    """The ``plan`` section that says what the cache saves."""
    from .. import wire

    lines = [f"cache ({state_dir}):"]
    width = max((len(s) for s in marks), default=0)
    for sid, mark in marks.items():
        lines.append(f"  {sid:<{max(width, 16)}} {_WORDS[mark.status]:<10} {mark.reason}")
    counts = {word: 0 for word in _WORDS}
    for mark in marks.values():
        counts[mark.status] += 1
    parts = [f"{n} {_WORDS[s]}" for s, n in counts.items() if n]
    images = billed(marks)
    lines.append(
        f"{', '.join(parts)}: {images} billed image{'s' if images != 1 else ''}, "
        f"est. ${wire.PRICE_PER_IMAGE_USD * images:.6f}"
        + (
            " (at most: a lost submit found again is not billed twice)"
            if counts["dangling"]
            else ""
        )
    )
    return "\n".join(lines)

"""From a schema-valid document to a :class:`Recipe`: params bound, defaults merged, templates
analysed, references and ``needs`` resolved into the graph, cycles and unused params found.

Every problem becomes a Diagnostic; all of them are collected before giving up.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from .. import wire
from ..durations import DEFAULT_TIMEOUT_SECONDS, parse_duration
from ..errors import Diagnostic, RecipeError
from .build_fanout import FanoutFields, fanout_names
from .dag import Graph
from .expand import Expansion, expand, names_used
from .loader import Document, Location, PathKey, SourceMap
from .model import Budget, Param, ParamType, Recipe, Step
from .names import name_problem
from .params import GivenValue, bind
from .schema import check_document
from .schema_build import DEFAULT_MAX_INSTANCES
from .templating import Template, TemplateProblem, compile_template

TEMPLATED_FIELDS = ("image", "mask", "prompt")


def build_recipe(
    doc: Document, path: Path, given: Sequence[GivenValue] = ()
) -> tuple[Recipe | None, list[Diagnostic]]:
    """The recipe (None when there are errors) and every diagnostic, warnings included.

    Schema errors stop here: later checks assume the document's shape.
    """
    problems = check_document(doc)
    if problems:
        return None, problems
    builder = _Builder(doc, path.resolve())
    recipe = builder.build(given)
    return recipe, builder.diagnostics


def declarations(doc: Document) -> dict[str, Param]:
    """The document's param declarations, no value bound. Raises RecipeError (schema errors)."""
    if not isinstance(doc.data, dict):
        raise RecipeError(
            [
                Diagnostic(
                    doc.source.file, 1, 1, "", "a recipe must be a mapping (version:, steps:, ...)"
                )
            ]
        )
    problems = check_document(doc)
    if any(d.severity == "error" for d in problems):
        raise RecipeError(problems)
    return _Builder(doc, Path(doc.source.file).resolve()).param_decls()


def _items(name: str, raw: Mapping[str, Any] | None, where: Location) -> Param:
    raw = raw or {"type": "string"}
    enum = raw.get("enum")
    return Param(
        name=f"{name}[]",
        type=cast(ParamType, raw.get("type", "string")),
        enum=tuple(enum) if enum is not None else None,
        minimum=raw.get("minimum"),
        maximum=raw.get("maximum"),
        location=where,
    )


class _Builder:
    def __init__(self, doc: Document, path: Path) -> None:
        self.data: dict[str, Any] = doc.data
        self.source: SourceMap = doc.source
        self.path = path
        self.diagnostics: list[Diagnostic] = []
        # A template that does not parse may use any param: then no "unused" warnings.
        self.unparsed_template = False

    def error(self, where: Location, dotted: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(where.file, where.line, where.column, dotted, message, hint=hint)
        )

    def warn(self, where: Location, dotted: str, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(where.file, where.line, where.column, dotted, message, "warning", hint=hint)
        )

    def build(self, given: Sequence[GivenValue]) -> Recipe | None:
        decls = self.param_decls()
        values, problems = bind(decls, given, self.path.parent)
        self.diagnostics.extend(problems)
        used_params: set[str] = set()
        steps = {sid: self.step(sid, raw, used_params) for sid, raw in self.data["steps"].items()}
        outputs, output_locations = self.outputs(steps, used_params)
        deps = self.resolve_deps(steps)
        graph = Graph(list(steps), deps)
        cycle = graph.find_cycle()
        if cycle:
            first = steps[cycle[0]]
            self.error(
                first.location,
                f"steps.{cycle[0]}",
                "dependency cycle: " + " -> ".join(cycle),
                "a step cannot use its own output, directly or through other steps; "
                "remove one reference or needs entry",
            )
        for name in decls:
            if name not in used_params and not self.unparsed_template:
                self.warn(
                    self.source.key_at(("params", name)),
                    f"params.{name}",
                    "declared but never used",
                    f"use it as {{{{ params.{name} }}}} or remove it",
                )
        renamed = name_problem(str(self.data.get("name") or self.path.stem))
        if renamed:
            self.warn(
                self.source.at(("name",)),
                "name",
                renamed,
                "a name is a label, not a path: use letters, digits, '.', '_' and '-'",
            )
        if any(d.severity == "error" for d in self.diagnostics):
            self.diagnostics.sort()
            return None
        name = str(self.data.get("name") or self.path.stem)
        description = str(self.data.get("description") or "")
        expansion = expand(
            steps,
            graph,
            values,
            {"name": name, "description": description},
            int(self.data.get("max_instances") or DEFAULT_MAX_INSTANCES),
        )
        self.diagnostics.extend(expansion.diagnostics)
        for output, template_text in outputs.items():
            refs = compile_template(template_text).steps
            if refs and all(not expansion.groups.get(ref) for ref in refs):
                self.warn(
                    output_locations[output],
                    f"outputs.{output}",
                    f"refers only to skipped steps ({', '.join(sorted(refs))}): it will be empty",
                )
        self.diagnostics.sort()
        if any(d.severity == "error" for d in self.diagnostics):
            return None
        return Recipe(
            path=self.path,
            file=self.source.file,
            name=name,
            description=description,
            params=values,
            param_decls=decls,
            steps=tuple(expansion.steps),
            outputs=outputs,
            output_locations=output_locations,
            graph=self.instance_graph(graph, expansion),
            warnings=tuple(self.diagnostics),
            budget=self.budget(),
            groups=expansion.groups,
            skipped=expansion.skipped,
            declared=tuple(steps.values()),
        )

    @staticmethod
    def instance_graph(written: Graph, expansion: Expansion) -> Graph:
        # Without fan-out or skips the instances are the steps as written: same graph.
        same = not expansion.skipped and len(expansion.steps) == len(written.nodes)
        if same and all(s.fanout is None for s in expansion.steps):
            return written
        return Graph([s.id for s in expansion.steps], expansion.deps)

    def budget(self) -> Budget | None:
        raw = self.data.get("budget")
        if raw is None:
            return None
        # str() first: Decimal(0.1) would carry the float's binary error.
        return Budget(Decimal(str(raw["max_usd"])), self.source.at(("budget", "max_usd")))

    # -- params ------------------------------------------------------------------------------

    def param_decls(self) -> dict[str, Param]:
        decls: dict[str, Param] = {}
        for name, raw in (self.data.get("params") or {}).items():
            enum = raw.get("enum")
            decl = Param(
                name=name,
                type=cast(ParamType, raw["type"]),
                has_default="default" in raw,
                default=raw.get("default"),
                description=str(raw.get("description") or ""),
                enum=tuple(enum) if enum is not None else None,
                minimum=raw.get("minimum"),
                maximum=raw.get("maximum"),
                location=self.source.key_at(("params", name)),
                items=_items(name, raw.get("items"), self.source.at(("params", name, "items")))
                if raw["type"] == "list"
                else None,
            )
            if decl.has_default:
                # Defaults are checked where they are written, not where a -p would be.
                decl = replace(decl, location=self.source.at(("params", name, "default")))
            decls[name] = decl
        return decls

    # -- steps -------------------------------------------------------------------------------

    def step(self, sid: str, raw: Mapping[str, Any], used_params: set[str]) -> Step:
        defaults: Mapping[str, Any] = self.data.get("defaults") or {}
        function: str = raw["function"]
        here = ("steps", sid)
        sources: dict[str, Location] = {}
        for key in ("function", "image", "mask", "prompt", "needs", "retry", "timeout"):
            if key in raw:
                sources[key] = self.source.at((*here, key))
        for key in ("foreach", "matrix", "if", "on_skipped"):
            if key in raw:
                sources[key] = self.source.at((*here, key))
        for name in raw.get("matrix") or {}:
            sources[f"matrix.{name}"] = self.source.at((*here, "matrix", name))
        parameters: dict[str, object] = {}
        for name in wire.FUNCTION_PARAMS[function]:
            if name in defaults:
                parameters[name] = defaults[name]
                sources[f"parameters.{name}"] = self.source.at(("defaults", name))
        for name, value in (raw.get("parameters") or {}).items():
            parameters[name] = value
            sources[f"parameters.{name}"] = self.source.at((*here, "parameters", name))
        retry = raw.get("retry", defaults.get("retry"))
        if "retry" not in raw and "retry" in defaults:
            sources["retry"] = self.source.at(("defaults", "retry"))
        timeout_raw = raw.get("timeout", defaults.get("timeout"))
        if "timeout" not in raw and "timeout" in defaults:
            sources["timeout"] = self.source.at(("defaults", "timeout"))
        timeout = DEFAULT_TIMEOUT_SECONDS
        if timeout_raw is not None:
            try:
                timeout = parse_duration(timeout_raw)
            except ValueError as exc:
                self.error(sources["timeout"], f"steps.{sid}.timeout", str(exc))
        needs_raw = raw.get("needs") or ()
        needs = (needs_raw,) if isinstance(needs_raw, str) else tuple(needs_raw)

        references: set[str] = set()
        fields: list[tuple[str, object]] = [(k, raw[k]) for k in TEMPLATED_FIELDS if k in raw]
        fields += [(f"parameters.{k}", v) for k, v in parameters.items()]
        allowed = fanout_names(raw)
        for name, value in fields:
            if not isinstance(value, str):
                continue
            template = self.template(
                value, sources[name], f"steps.{sid}.{name}", (*here, *name.split("."))
            )
            if template is None:
                continue
            references |= template.steps
            used_params |= template.params
            self.check_params_known(template, sources[name], f"steps.{sid}.{name}")
            self.check_fanout_names(value, allowed, sources[name], f"steps.{sid}.{name}")
        fanout = FanoutFields(self, sid, raw, sources, used_params)
        return Step(
            id=sid,
            function=function,
            image=raw["image"],
            mask=raw.get("mask"),
            prompt=raw.get("prompt", ""),
            parameters=parameters,
            needs=needs,
            retries=retry,
            timeout=timeout,
            description=str(raw.get("description") or ""),
            location=self.source.key_at(here),
            sources=sources,
            references=frozenset(references),
            foreach=raw.get("foreach"),
            matrix=raw.get("matrix"),
            condition=raw.get("if"),
            on_skipped=raw.get("on_skipped", "skip"),
            foreach_source=fanout.source,
        )

    def template(
        self, value: str, where: Location, dotted: str, path: PathKey | None = None
    ) -> Template | None:
        try:
            template = compile_template(value)
        except TemplateProblem as exc:
            self.unparsed_template = True
            if path is not None and where == self.source.at(path):
                where = self.source.text_line_at(path, exc.line)
            self.error(where, dotted, exc.message, exc.hint)
            return None
        for message, hint in template.problems:
            self.error(where, dotted, message, hint)
        return None if template.problems else template

    def check_fanout_names(
        self, value: str, allowed: frozenset[str], where: Location, dotted: str
    ) -> None:
        for name in sorted(names_used(value) - allowed):
            needs = {"item": "foreach:", "matrix": "matrix:"}.get(name, "foreach: or matrix:")
            self.error(
                where,
                dotted,
                f"{name!r} is only defined in a step with {needs}",
                None
                if dotted.startswith("outputs.") or name == "loop"
                else f"add {needs} to the step, or use params",
            )

    def check_params_known(self, template: Template, where: Location, dotted: str) -> None:
        declared = list(self.data.get("params") or {})
        for name in sorted(template.params - set(declared)):
            self.error(where, dotted, f"unknown param {name!r}", _suggest(name, declared, "params"))

    def outputs(
        self, steps: Mapping[str, Step], used_params: set[str]
    ) -> tuple[dict[str, str], dict[str, Location]]:
        outputs: dict[str, str] = {}
        locations: dict[str, Location] = {}
        for name, value in (self.data.get("outputs") or {}).items():
            where = self.source.at(("outputs", name))
            outputs[name] = value
            locations[name] = where
            dotted = f"outputs.{name}"
            template = self.template(value, where, dotted, ("outputs", name))
            if template is None:
                continue
            used_params |= template.params
            self.check_params_known(template, where, dotted)
            self.check_fanout_names(value, frozenset(), where, dotted)
            for ref in sorted(template.steps - set(steps)):
                self.error(
                    where, dotted, f"unknown step {ref!r}", _suggest(ref, list(steps), "steps")
                )
            if template.is_literal:
                self.error(
                    where,
                    dotted,
                    "an output must name step results",
                    f'write e.g. "{{{{ steps.{list(steps)[-1]}.image }}}}"',
                )
        return outputs, locations

    def resolve_deps(self, steps: Mapping[str, Step]) -> dict[str, set[str]]:
        deps: dict[str, set[str]] = {}
        ids = list(steps)
        for sid, step in steps.items():
            mine: set[str] = set()
            for ref in sorted(step.references):
                if ref == sid:
                    self.error(
                        self.reference_location(step, ref),
                        f"steps.{sid}",
                        "a step cannot use its own output",
                        "refer to an earlier step, or to a param",
                    )
                elif ref not in steps:
                    self.error(
                        self.reference_location(step, ref),
                        f"steps.{sid}",
                        f"unknown step {ref!r}",
                        _suggest(ref, ids, "steps"),
                    )
                else:
                    mine.add(ref)
            source = step.foreach_source
            if source is not None:
                where = step.location_of("foreach")
                if source == sid:
                    self.error(
                        where, f"steps.{sid}.foreach", "a step cannot go over its own images"
                    )
                elif source not in steps:
                    self.error(
                        where,
                        f"steps.{sid}.foreach",
                        f"unknown step {source!r}",
                        _suggest(source, ids, "steps"),
                    )
                else:
                    mine.add(source)
            for i, need in enumerate(step.needs):
                where = self.source.at(("steps", sid, "needs", i))
                if need == sid:
                    self.error(where, f"steps.{sid}.needs", "a step cannot need itself")
                elif need not in steps:
                    self.error(
                        where,
                        f"steps.{sid}.needs",
                        f"unknown step {need!r}",
                        _suggest(need, ids, "steps"),
                    )
                else:
                    mine.add(need)
            deps[sid] = mine
        return deps

    def reference_location(self, step: Step, ref: str) -> Location:
        # The first field whose template mentions the step: that is the line to fix.
        fields: list[tuple[str, object]] = [
            ("image", step.image),
            ("mask", step.mask),
            ("prompt", step.prompt),
            *((f"parameters.{k}", v) for k, v in step.parameters.items()),
        ]
        for name, value in fields:
            if isinstance(value, str) and ref in value:
                return step.location_of(name)
        return step.location


def _suggest(name: str, options: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known {what}: {', '.join(options)}" if options else f"the recipe declares no {what}"

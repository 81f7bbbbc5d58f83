"""report.html of real runs on the real emulator: what the page says, links to, and hides."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html import unescape
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.report.html import write_report

from .helpers import CHAIN, Page, make_batch, make_image, run, thumb_size, write_recipe


def _check_links(page: Page, page_dir: Path) -> None:
    """Every link is an anchor on the page or a relative file that exists; never data:."""
    for href in page.links:
        assert not href.startswith(("data:", "http:", "https:", "javascript:")), href
        if href.startswith("#"):
            assert href[1:] in page.ids, f"dangling anchor {href}"
            continue
        target = page_dir / unquote(href)
        assert target.is_file(), f"link to a missing file: {href}"


def test_a_run_report_shows_every_step_with_its_inputs_outputs_and_facts(tmp_path, emu):
    recipe = write_recipe(tmp_path / "work", CHAIN)
    record = run(recipe, emu, tmp_path / "run")
    assert record.status == "ok"
    path = write_report(tmp_path / "run")
    assert path == tmp_path / "run" / "report.html"
    html = path.read_text(encoding="utf-8")
    page = Page(html)

    # Header: name, description, params, backend, status, totals.
    assert "chain" in page.text and "Colour a photo, then sharpen it" in page.text
    assert "params.colors blue sky" in page.text and "params.factor 2" in page.text
    assert f"backend url:127.0.0.1:{emu.base_url.split(':')[2].split('/')[0]}" in page.text
    assert "OK" in page.text.upper()
    assert "tasks 3" in page.text and "cache hits 0" in page.text
    assert f"${record.cost_usd:.4f}" in page.text and "at DashScope prices" in page.text
    assert "images 4 4 billed" in page.text

    # The graph: inline SVG, a node per step linking to its section, an edge per dependency.
    svg = html.split('<svg class="dag"', 1)[1].split("</svg>", 1)[0]
    for sid in ("colorize", "upscale", "variants"):
        assert f'href="#step-{sid}"' in svg and f"step-{sid}" in page.ids
    assert svg.count('class="dag-edge"') == 2

    # Each step: prompt, seed, task id, times, cost, cached or not.
    for sid, step in record.steps.items():
        section = html.split(f'id="step-{sid}"', 1)[1].split("</section>", 1)[0]
        text = Page(section).text
        attempt = step.attempts[-1]
        assert attempt.task_id and attempt.task_id in text
        assert attempt.submit_time and attempt.submit_time in text
        assert attempt.end_time and attempt.end_time in text
        assert f"+{attempt.noticed_at:.2f} s" in text
        assert f"seed {step.seed}" in text
        assert f"${step.cost_usd:.4f}" in text
        assert "cached no" in text
        assert attempt.request["input"]["prompt"] in text
        # Outputs as thumbnails linking to the files, with the engine's label.
        for result in step.results:
            assert f'href="{result.path}"' in section
            with Image.open(tmp_path / "run" / result.path) as im:
                label = im.info["wanrecipe:fidelity"]
            assert f"badge fid-{label}" in section
    upscale = html.split('id="step-upscale"', 1)[1].split("</section>", 1)[0]
    assert "upscale_factor" in upscale and 'href="colorize.png"' in upscale, "input thumbnail"
    # The local input is linked by relative path from the run directory.
    colorize = html.split('id="step-colorize"', 1)[1].split("</section>", 1)[0]
    assert 'href="../work/in.png"' in colorize

    # Thumbnails: JPEG data URIs of at most 256 px; nothing else is an image source.
    assert page.imgs
    for img in page.imgs:
        w, h = thumb_size(img["src"])
        assert max(w, h) <= 256 and (w, h) == (int(img["width"]), int(img["height"]))
    _check_links(page, path.parent)

    # Script data only as JSON; no secrets, no signed query strings, no result URLs.
    assert [s.get("type") for s in page.scripts] == ["application/json", None]
    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert data["kind"] == "run" and data["steps"] == ["colorize", "upscale", "variants"]
    assert "sk-" not in html and "?" not in "".join(page.links)
    assert "/results/" not in html and "Signature" not in html
    # Nothing from outside the page: no stylesheet or script files, fonts or CSS URLs.
    assert "<link" not in html and "@import" not in html and "@font-face" not in html
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", html))
    assert all(s.get("src") is None for s in page.scripts)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "script-src 'sha256-" in unescape(csp.group(1))


def test_a_failed_run_reports_the_code_message_and_what_was_skipped(tmp_path, report_pool):
    recipe = write_recipe(tmp_path / "work", CHAIN)
    config = EmulatorConfig(engine_time_budget=0.2, faults="task.inspection=first:1")
    with EmulatorThread(config, executor=report_pool) as emu:
        record = run(recipe, emu, tmp_path / "run")
    assert record.status == "failed"
    error = record.steps["colorize"].error
    assert error is not None
    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    text = Page(html).text
    assert "chain FAILED" in text.replace("chain failed", "chain FAILED")
    section = Page(html.split('id="step-colorize"', 1)[1].split("</section>", 1)[0]).text
    assert error.code == "DataInspectionFailed"
    assert f"failed : {error.code}" in section.replace("failed: ", "failed : ")
    assert error.message in section
    for sid in ("upscale", "variants"):
        part = Page(html.split(f'id="step-{sid}"', 1)[1].split("</section>", 1)[0]).text
        assert "skipped" in part and "colorize did not finish" in part
    assert "tasks 1" in text and "images 0 0 billed" in text


def test_a_cached_rerun_says_cached_costs_nothing_and_still_shows_prompts(tmp_path, emu):
    recipe = write_recipe(tmp_path / "work", CHAIN)
    state = tmp_path / "state"
    first = run(recipe, emu, tmp_path / "run1", state=state)
    again = run(recipe, emu, tmp_path / "run2", state=state)
    assert {s.state for s in again.steps.values()} == {"cached"}
    html = write_report(tmp_path / "run2").read_text(encoding="utf-8")
    text = Page(html).text
    assert "cache hits 3" in text and "tasks 0" in text and "$0.0000" in text
    for sid, step in first.steps.items():
        section = html.split(f'id="step-{sid}"', 1)[1].split("</section>", 1)[0]
        part = Page(section).text
        assert f"the stored result of task {step.attempts[-1].task_id}" in part
        # The record of a cached step has no request: the prompt comes from the recipe.
        assert step.attempts[-1].request["input"]["prompt"] in part
        assert "as the recipe renders it now" in part
        for result in again.steps[sid].results:
            assert f'href="{result.path}"' in section
    _check_links(Page(html), tmp_path / "run2")


def test_a_placeholder_never_passes_for_a_real_edit(tmp_path, emu):
    recipe = write_recipe(
        tmp_path / "work",
        """\
        version: 1
        name: cartoon
        steps:
          edit:
            function: control_cartoon_feature
            image: in.png
            prompt: the character waves hello
        """,
    )
    make_image(tmp_path / "work" / "in.png", gray=False)
    record = run(recipe, emu, tmp_path / "run")
    assert record.status == "ok"
    with Image.open(tmp_path / "run" / record.steps["edit"].results[0].path) as im:
        assert im.info["wanrecipe:fidelity"] == "placeholder"
    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    section = html.split('id="step-edit"', 1)[1].split("</section>", 1)[0]
    assert section.count("badge fid-placeholder") >= 2  # the step and its output
    assert "fid-real" not in section
    assert "1 placeholder image" in Page(html).text


def test_a_batch_report_has_a_row_per_row_linking_to_row_pages(tmp_path, emu):
    recipe = write_recipe(tmp_path / "work", CHAIN)
    rows = []
    for i, colors in enumerate(["blue sky", "red roof", "green hills"]):
        run(recipe, emu, tmp_path / f"single{i}", params={"colors": colors})
        rows.append((f"row-{i}", {"colors": colors}, tmp_path / f"single{i}"))
    batch = make_batch(tmp_path / "batch", rows)
    path = write_report(batch)
    html = path.read_text(encoding="utf-8")
    page = Page(html)
    grid_rows = re.findall(r'<tr data-filter="([^"]*)"', html)
    assert len(grid_rows) == 3 and "row-1 ok colors=red roof" in grid_rows[1]
    for key, _, _ in rows:
        assert f'href="{key}/report.html"' in html
        row_page = batch / key / "report.html"
        assert row_page.is_file()
        row_html = row_page.read_text(encoding="utf-8")
        assert 'href="../report.html"' in row_html and "batch chain" in row_html
        _check_links(Page(row_html), row_page.parent)
    assert 'id="filter"' in html
    # A row's page rebuilt on its own still links back to its batch.
    (batch / "row-2" / "report.html").unlink()
    write_report(batch / "row-2")
    assert 'href="../report.html"' in (batch / "row-2" / "report.html").read_text()
    for img in page.imgs:
        assert img["loading"] == "lazy" and max(thumb_size(img["src"])) <= 128
    assert len(page.imgs) == 3 * 3  # final + two variants per row
    # Every grid thumbnail carries its engine label: a placeholder is never unmarked.
    labels = []
    for key, _, _ in rows:
        for name in ("upscale.png", "variants.png", "variants-2.png"):
            with Image.open(batch / key / name) as im:
                labels.append(im.info["wanrecipe:fidelity"])
    grid = html.split("<tbody>", 1)[1]
    assert sorted(re.findall(r'class="badge fid-(\w+)"', grid)) == sorted(labels)
    _check_links(page, batch)


def test_report_rebuilds_from_run_json_alone(tmp_path, emu):
    recipe = write_recipe(tmp_path / "work", CHAIN)
    run(recipe, emu, tmp_path / "run")
    recipe.unlink()  # the recipe file is gone: run.json still has everything the page needs
    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    text = Page(html).text
    assert "blue sky" in text and "make it brighter" in text
    assert html.count('class="dag-edge"') == 2  # edges from the recorded inputs


def test_the_templates_ship_as_package_data():
    import tomllib
    from fnmatch import fnmatch
    from importlib.resources import files

    root = Path(__file__).parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]["wanrecipe"]
    templates = files("wanrecipe.report.html") / "templates"
    names = sorted(p.name for p in templates.iterdir() if p.is_file())  # type: ignore[union-attr]
    assert {"base.html.j2", "run.html.j2", "batch.html.j2", "diff.html.j2"} <= set(names)
    for name in names:
        rel = f"report/html/templates/{name}"
        assert any(fnmatch(rel, pattern) for pattern in patterns), f"{rel} not package data"


def test_on_dashscope_the_cost_reads_spent(tmp_path, emu):
    """The same record as a paid run would write it (backend dashscope:<region>)."""
    recipe = write_recipe(tmp_path / "work", CHAIN)
    run(recipe, emu, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    record["backend"], record["base_url"] = "dashscope:cn-beijing", "dashscope.aliyuncs.com"
    (tmp_path / "run" / "run.json").write_text(json.dumps(record), encoding="utf-8")
    text = Page(write_report(tmp_path / "run").read_text(encoding="utf-8")).text
    assert f"${Decimal(record['cost_usd']):.4f} spent" in text
    assert "at DashScope prices" not in text and "local emulator" not in text

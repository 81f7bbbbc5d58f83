"""The commands: `wanrecipe run` leaves report.html (also when interrupted), `report`
rebuilds it, `diff` compares two runs. Real subprocesses against a real emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.report.html import write_diff

from .helpers import CHAIN, Page, run, thumb_size, write_recipe

ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
ENV.pop("DASHSCOPE_API_KEY", None)
ENV.pop("WANRECIPE_BACKEND", None)


def wanrecipe(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanrecipe", *args],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_run_writes_the_report_prints_its_path_and_opens_it(tmp_path, emu):
    recipe = write_recipe(tmp_path, CHAIN)
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "browser.sh"
    fake_browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n', encoding="utf-8")
    fake_browser.chmod(0o755)
    env = {**ENV, "BROWSER": str(fake_browser)}
    done = wanrecipe(
        "run", str(recipe), "--base-url", emu.base_url, "--out", "out", "--open",
        "--state-dir", "state", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = tmp_path / "out" / "report.html"
    assert report.is_file()
    assert f"report {Path('out') / 'report.html'}" in done.stderr
    assert opened.read_text(encoding="utf-8").strip() == report.resolve().as_uri()
    assert "colorize" in Page(report.read_text(encoding="utf-8")).text

    # `wanrecipe report` rebuilds it from run.json.
    report.unlink()
    again = wanrecipe("report", "out", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(Path("out") / "report.html") and report.is_file()


def test_report_of_a_directory_without_a_record_exits_2_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    done = wanrecipe("report", "empty", cwd=tmp_path)
    assert done.returncode == 2
    assert "empty/run.json" in done.stderr and "no run record" in done.stderr
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "run.json").write_text('{"steps": {', encoding="utf-8")
    done = wanrecipe("report", "torn", cwd=tmp_path)
    assert done.returncode == 2 and "torn/run.json:1: not valid JSON" in done.stderr
    (tmp_path / "odd").mkdir()
    odd = {"steps": {"a": {"function": "colorization", "results": [{"index": "zz"}]}}}
    (tmp_path / "odd" / "run.json").write_text(json.dumps(odd), encoding="utf-8")
    done = wanrecipe("report", "odd", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "odd/run.json: not a run record this version can read" in done.stderr
    assert "Traceback" not in done.stderr


SLOW = """\
    version: 1
    name: slow
    steps:
      a: {function: colorization, image: in.png, prompt: first}
      b: {function: super_resolution, image: "{{ steps.a.image }}", prompt: second}
      c: {function: colorization, image: "{{ steps.b.image }}", prompt: third}
"""


def test_an_interrupted_run_still_gets_a_report(tmp_path, report_pool):
    recipe = write_recipe(tmp_path, SLOW)
    config = EmulatorConfig(engine_time_budget=0.2, latency=1.5)
    with EmulatorThread(config, executor=report_pool) as emu:
        cmd = [
            sys.executable, "-m", "wanrecipe", "run", str(recipe), "--base-url", emu.base_url,
            "--out", "out", "--state-dir", "state", "--json",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("step") == "a" and event.get("state") == "done":
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    record = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "interrupted"
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    text = Page(html).text
    assert "slow INTERRUPTED" in text.replace("slow interrupted", "slow INTERRUPTED")
    assert 'href="a.png"' in html, "the finished step's output is on the page"
    assert "report out" in err


DIFF = """\
    version: 1
    name: pair
    params:
      colors: {type: string, default: blue sky}
    defaults: {seed: 7}
    steps:
      colorize:
        function: colorization
        image: in.png
        prompt: "{{ params.colors }} over the hills"
      sharpen:
        function: super_resolution
        image: in.png
        prompt: Image super resolution
"""


def test_diff_highlights_changed_params_prompts_seeds_and_shows_pixel_differences(tmp_path, emu):
    recipe = write_recipe(tmp_path / "work", DIFF)
    run(recipe, emu, tmp_path / "a", params={"colors": "blue sky"})
    changed = textwrap.dedent(DIFF).replace("defaults: {seed: 7}", "defaults: {seed: 8}")
    recipe.write_text(changed, encoding="utf-8")
    run(recipe, emu, tmp_path / "b", params={"colors": "red <b>roof</b>"})
    path = write_diff(tmp_path / "a", tmp_path / "b")
    assert path == tmp_path / "b" / "diff-a.html"
    html = path.read_text(encoding="utf-8")
    page = Page(html)
    assert '<tr class="changed"><th>params.colors</th>' in html
    assert "red &lt;b&gt;roof&lt;/b&gt;" in html and "<b>roof</b>" not in html
    colorize = html.split('id="step-colorize"', 1)[1].split("</section>", 1)[0]
    assert "prompt changed" in colorize
    assert "<del>blue sky</del>" in colorize or "<del>blue</del>" in colorize
    assert "<ins>" in colorize
    assert '<tr class="changed"><th>seed</th><td><code>7</code></td><td><code>8</code></td>' in html
    # Outputs side by side with a pixel difference; links reach each run's files.
    assert "pixel difference of output 1" in colorize and "mean difference" in colorize
    for href in page.links:
        if not href.startswith("#"):
            assert (path.parent / href).exists(), href
    assert 'href="../a/colorize.png"' in html and 'href="colorize.png"' in html
    assert 'href="../a/report.html"' in html and (tmp_path / "a" / "report.html").is_file()
    for img in page.imgs:
        assert max(thumb_size(img["src"])) <= 256

    # A run against itself: every output identical, nothing highlighted.
    same = Page(write_diff(tmp_path / "a", tmp_path / "a", tmp_path / "same.html").read_text())
    assert "0 of 2 steps differ" in same.text and same.text.count("identical files") == 2


def test_diff_command_writes_where_asked(tmp_path, emu):
    recipe = write_recipe(tmp_path, DIFF)
    run(recipe, emu, tmp_path / "a")
    run(recipe, emu, tmp_path / "b", params={"colors": "green"})
    done = wanrecipe("diff", "a", "b", "--out", "cmp/x.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(Path("cmp") / "x.html")
    assert "1 of 2 steps differ" in Page((tmp_path / "cmp" / "x.html").read_text()).text


def test_diff_of_a_directory_without_a_record_exits_2(tmp_path, emu):
    recipe = write_recipe(tmp_path, DIFF)
    run(recipe, emu, tmp_path / "a")
    (tmp_path / "nothing").mkdir()
    done = wanrecipe("diff", "a", "nothing", cwd=tmp_path)
    assert done.returncode == 2
    assert "nothing/run.json" in done.stderr and "no run record" in done.stderr
    assert not list((tmp_path / "nothing").iterdir()), "nothing written"


def test_a_failed_cli_run_still_writes_its_report(tmp_path, report_pool):
    recipe = write_recipe(tmp_path, SLOW)
    config = EmulatorConfig(engine_time_budget=0.2, faults="task.inspection=first:1")
    with EmulatorThread(config, executor=report_pool) as emu:
        done = wanrecipe(
            "run", str(recipe), "--base-url", emu.base_url, "--out", "out",
            "--state-dir", "state", cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "report out" in done.stderr
    text = Page((tmp_path / "out" / "report.html").read_text(encoding="utf-8")).text
    assert "DataInspectionFailed" in text and "a did not finish" in text

"""Hostile inputs that do run: a name that would steer paths, a gray mask, and an ``outputs:``
template that fails only on the real results. Real runs against one real emulator."""

from __future__ import annotations

import json
from pathlib import Path

from wanrecipe.emulator.server import EmulatorThread

from .helpers import cli, gray_ramp, png_bytes

STEP = """\
version: 1
name: {name}
steps:
  c:
    function: colorization
    image: in.png
"""


def _write(where: Path, text: str) -> None:
    (where / "recipe.yaml").write_text(text, encoding="utf-8")
    (where / "in.png").write_bytes(png_bytes(noise=False))


def test_a_name_never_steers_the_run_directory(tmp_path: Path, emulator: EmulatorThread):
    work = tmp_path / "work"
    work.mkdir()
    for name, expected in (("../escaped", "escaped"), ("/tmp/abs", "tmp-abs"), ("'..'", "recipe")):
        _write(work, STEP.format(name=name))
        result = cli("run", "recipe.yaml", "--base-url", emulator.base_url, cwd=work)
        assert result.exit_code == 0, result.stderr
        assert "is not a plain directory name" in result.stderr
        assert "recipe.yaml:2:7: warning: name: " in result.stderr
        runs = list((work / "runs").iterdir())
        assert expected in {p.name for p in runs}
    # Nothing was written outside ./runs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert {p.name for p in work.iterdir()} <= {"recipe.yaml", "in.png", "runs", "recipe.lock"}


def test_a_gray_mask_warns_with_file_and_line(tmp_path: Path):
    (tmp_path / "in.png").write_bytes(png_bytes())
    (tmp_path / "mask.png").write_bytes(gray_ramp())
    (tmp_path / "recipe.yaml").write_text(
        "version: 1\nsteps:\n  c:\n    function: description_edit_with_mask\n"
        "    image: in.png\n    mask: mask.png\n    prompt: a red door\n",
        encoding="utf-8",
    )
    result = cli("validate", "recipe.yaml", cwd=tmp_path)
    assert result.exit_code == 0
    assert (
        "recipe.yaml:6:11: warning: steps.c.mask: mask.png: 86% of the mask's pixels are gray"
        in result.stderr
    )


def test_an_outputs_error_after_the_run_is_a_message_and_run_json_is_written(
    tmp_path: Path, emulator: EmulatorThread
):
    # Fine with placeholders (they have no `size`), too big with the real image.
    final = (
        "{% if steps.c.image.size is defined %}{{ range(10**9) | list }}{% endif %}"
        "{{ steps.c.image }}"
    )
    _write(tmp_path, STEP.format(name="late") + f"outputs:\n  final: '{final}'\n")
    result = cli("run", "recipe.yaml", "--base-url", emulator.base_url, "--out", "out",
                 cwd=tmp_path)  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "recipe.yaml:8:10: error: outputs.final: template limit: range() of" in result.stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed"
    assert record["steps"]["c"]["state"] == "done"
    assert any("outputs.final" in w for w in record["warnings"])
    assert (tmp_path / "out" / "c.png").exists()

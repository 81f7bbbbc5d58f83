"""Report pages: size on disk, time to write, and DOMContentLoaded in headless Chromium.

Two pages, both from real runs on the emulator (in a temporary directory):
- a 50-step run (25 colorizations, each followed by a description edit);
- a 500-row batch, rows cycling through four real runs (three ok, one failed), laid out per the
  batch-record contract (until the batch runner lands this is how a batch is made here).

DOMContentLoaded comes from the Navigation Timing API of Debian's /usr/bin/chromium.

    .venv/bin/python benchmarks/bench_report.py [--rows 500] [--steps 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from report.browser import chromium, console_errors, open_page  # noqa: E402
from report.helpers import CHAIN, make_batch, run, write_recipe  # noqa: E402

from wanrecipe.emulator.config import EmulatorConfig  # noqa: E402
from wanrecipe.emulator.server import EmulatorThread  # noqa: E402
from wanrecipe.report.html import write_report  # noqa: E402


def steps_recipe(steps: int) -> str:
    lines = ["version: 1", "name: many", "defaults: {seed: 3}", "steps:"]
    for i in range(steps // 2):
        lines.append(f"  c{i:03d}: {{function: colorization, image: in.png, prompt: tint {i}}}")
        lines.append(
            f'  e{i:03d}: {{function: description_edit, image: "{{{{ steps.c{i:03d}.image }}}}",'
            f" prompt: brighter {i}}}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    table: list[tuple[str, float, float, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        base = Path(tmp)
        with EmulatorThread(EmulatorConfig(engine_time_budget=0.2)) as emu:
            many = write_recipe(base / "many", steps_recipe(args.steps))
            t = time.perf_counter()
            run(many, emu, base / "many-run")
            print(f"{args.steps}-step run on the emulator: {time.perf_counter() - t:.1f}s")
            chain = write_recipe(base / "chain", CHAIN)
            sources = []
            for i, colors in enumerate(["blue sky", "red roof", "green hills"]):
                run(chain, emu, base / f"single{i}", params={"colors": colors})
                sources.append(({"colors": colors}, base / f"single{i}"))
        faulty = EmulatorConfig(engine_time_budget=0.2, faults="task.inspection=first:1")
        with EmulatorThread(faulty) as emu:
            run(chain, emu, base / "failed", state=base / "state-failed")
        sources.append(({"colors": "doomed"}, base / "failed"))
        rows = [(f"row-{n:03d}", *sources[n % len(sources)]) for n in range(args.rows)]
        # Separate files per row, as rows that made different images have (hard links of one
        # image would be thumbnailed once).
        batch = make_batch(base / "batch", rows, copy=True)

        pages = []
        for label, folder in ((f"{args.steps}-step run", base / "many-run"),
                              (f"{args.rows}-row batch", batch)):  # fmt: skip
            t = time.perf_counter()
            page = write_report(folder)
            pages.append((label, page, time.perf_counter() - t))
        with chromium() as browser:
            for label, page, write_s in pages:
                dcl = []
                for _ in range(3):
                    timing = open_page(browser, page)
                    dcl.append(timing["domContentLoadedEventEnd"] - timing["startTime"])
                errors = len(console_errors(browser))
                size = page.stat().st_size / 1e6
                table.append((label, size, write_s, min(dcl), errors))
    print()
    print(f"{'page':<16} {'size MB':>8} {'target':>7} {'write s':>8} {'DCL ms':>7} "
          f"{'target':>7} {'errors':>6}")  # fmt: skip
    for label, size, write_s, dcl, errors in table:
        size_target = "< 5" if "step" in label else ""
        dcl_target = "< 2000" if "row" in label else ""
        print(f"{label:<16} {size:>8.2f} {size_target:>7} {write_s:>8.1f} {dcl:>7.0f} "
              f"{dcl_target:>7} {errors:>6}")  # fmt: skip


if __name__ == "__main__":
    main()

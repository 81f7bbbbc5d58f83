"""Budgets and consent: reservations before each submit, a clean stop at the cap, plan's
refusal, and the DashScope confirmation rule (no request sent when refused)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from wanrecipe import wire
from wanrecipe.cli import main
from wanrecipe.emulator.config import EmulatorConfig
from wanrecipe.emulator.server import EmulatorThread
from wanrecipe.errors import UsageError
from wanrecipe.executor.budget import Budget, consent_needed, parse_usd

PRICE = wire.PRICE_PER_IMAGE_USD


def test_reservations_count_what_is_in_flight():
    budget = Budget(PRICE * 5)
    assert budget.reserve(2) and budget.reserve(2)  # two tasks of n=2 in flight
    assert not budget.reserve(2)  # 6 images would cross the cap, whatever finishes later
    assert budget.refused and "budget" in budget.refused
    budget.settle(2, 1)  # one of them billed only one image
    assert budget.billed == 1 and budget.reserved == 2
    assert budget.reserve(2)  # 1 + 2 + 2 = 5: exactly at the cap is allowed
    assert not budget.reserve(1)


def test_a_batch_row_starts_only_when_all_of_it_fits():
    from wanrecipe.executor.budget import RowBudget

    budget = RowBudget(PRICE * 5, {"a": 2, "b": 2, "c": 2}, lambda nid: nid.split("/")[0])
    assert budget.reserve(1, "a/x") and budget.reserve(1, "b/x")  # rows a, b hold 4
    assert not budget.reserve(1, "c/x")  # c needs 2 more: 6 > 5
    assert budget.reserve(1, "a/y")  # a's second step draws from a's hold
    budget.settle(1, 1)
    budget.settle(1, 1)
    budget.settle(1, 1)
    budget.release_row("a")
    assert budget.billed == 3 and budget.reserved == 1  # b's second step still held


async def test_two_processes_row_budgets_share_one_tally(tmp_path):
    """Two batches' budgets (as two processes would hold them) on one state directory's
    tally: rows are held whole, across both; each process's row hold, in-flight and billed
    figures reach the tally; closing gives back holds and keeps what was billed."""
    from wanrecipe.executor.budget_ledger import StateDirBudgetLedger, Tally
    from wanrecipe.executor.budget_shared import SharedRowBudget

    def budget(planned):
        ledger = StateDirBudgetLedger(tmp_path, "shared", ttl_s=30.0)
        return SharedRowBudget(PRICE * 5, planned, lambda nid: nid.split("/")[0], ledger,
                               renew_s=5.0)  # fmt: skip

    first, second = budget({"a": 2, "b": 2}), budget({"c": 2, "d": 2})
    try:
        assert await first.areserve(1, "a/x")  # row a holds 2
        assert await second.areserve(1, "c/x")  # row c holds 2: 4 of 5
        assert not await first.areserve(1, "b/x")  # b needs 2: 6 > 5, whatever is local
        assert first.refused == (
            "budget $0.100350 reached: $0.080280 billed, in flight or held across every "
            "process on it, row b would add up to $0.040140"
        )
        assert first.tally().committed == 4
        second.settle(1, 1)  # c's first task billed; its second step still held
        assert await second.areserve(1, "c/y")  # drawn from c's hold
        second.settle(1, 1)
        second.release_row("c")
        assert second.tally() == Tally(committed=4, billed=2)  # after second's own writes
        assert first.tally() == Tally(committed=4, billed=2)
        assert await first.areserve(1, "a/y")
        first.settle(1, 0)
        first.settle(1, 1)  # row a: one image of the two it held
        first.release_row("a")
        # Written in order on first's own thread (another process may see the old, higher
        # figure for a moment: the safe side); its tally() comes after them.
        assert first.tally().committed == 3
        assert await second.areserve(1, "d/x")  # d's 2 fit: 5 of 5
        second.settle(1, 0)  # d's task billed nothing (it failed); d's second step is held
    finally:
        first.close()
        second.close()
    later = budget({"e": 2})
    try:
        # Both closed: 1 + 2 billed stay, d's hold comes back.
        assert later.tally().committed == 3
        assert await later.areserve(1, "e/x") and not await later.areserve(1, "f/x")
    finally:
        later.close()


def test_parse_usd():
    assert parse_usd("$0.50") == Decimal("0.50")
    with pytest.raises(UsageError, match="not an amount"):
        parse_usd("lots")
    with pytest.raises(UsageError, match="positive"):
        parse_usd("-1")


def test_budget_stops_the_batch_before_the_limit(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=6)
    monkeypatch.chdir(tmp_path)
    max_usd = PRICE * 9 + Decimal("0.001")  # room for 9 images: 4 rows of 2, not 5
    with EmulatorThread(EmulatorConfig(concurrency=4, rps=4, rps_burst=4, latency=0.3)) as emu:
        result = CliRunner().invoke(
            main, ["run", str(recipe), "--batch", "rows.csv", "--out", "out",
                   "--base-url", emu.base_url, "--concurrency", "4", "--rps", "4",
                   "--max-cost", str(max_usd)],
        )  # fmt: skip
        stats = emu.stats()
    assert result.exit_code == 3, result.output
    # What the service billed stays within the budget, with 4 tasks in flight at a time.
    assert PRICE * stats["billed_images"] <= max_usd
    assert stats["billed_images"] == 8
    assert stats["tasks"]["peak_running"] >= 3
    top = json.loads((tmp_path / "out" / "run.json").read_text())
    assert top["status"] == "budget"
    assert top["images_billed"] == 8
    assert top["left_images"] == 12 - 8
    assert "the budget was reached: 2 rows left (4 images)" in result.output
    assert f"would cost ${PRICE * 4:.4f} more" in result.output
    # A row starts only when all of it fits: whole rows done, the others not started.
    assert [r["status"] for r in top["rows"]] == ["ok"] * 4 + ["skipped"] * 2
    for row in top["rows"][:4]:
        assert (tmp_path / "out" / row["dir"] / "style.png").is_file()


def test_recipe_budget_applies_to_a_single_run(batch_dir, tmp_path, monkeypatch):
    from .conftest import RECIPE

    recipe = batch_dir(rows=1, recipe=RECIPE + "budget: {max_usd: 0.03}\n")
    monkeypatch.chdir(tmp_path)
    with EmulatorThread(EmulatorConfig()) as emu:
        result = CliRunner().invoke(main, ["run", str(recipe), "--base-url", emu.base_url,
                                           "--out", "out"])  # fmt: skip
        stats = emu.stats()
    assert result.exit_code == 3, result.output
    assert stats["billed_images"] == 1
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "budget"
    assert "1 steps left (1 images)" in result.output


def test_plan_over_budget_exits_3(batch_dir):
    recipe = batch_dir(rows=1)
    result = CliRunner().invoke(main, ["plan", str(recipe), "--max-cost", "0.03"])
    assert result.exit_code == 3, result.output
    assert "over the budget of $0.03 by $0.0101" in result.output
    assert CliRunner().invoke(main, ["plan", str(recipe), "--max-cost", "1"]).exit_code == 0


def test_plan_honours_the_recipes_budget(batch_dir):
    from .conftest import RECIPE

    recipe = batch_dir(rows=1, recipe=RECIPE + "budget: {max_usd: 0.01}\n")
    result = CliRunner().invoke(main, ["plan", str(recipe)])
    assert result.exit_code == 3, result.output


def test_consent_rule():
    env = {"WANRECIPE_CONFIRM_USD": "1"}
    assert consent_needed("dashscope", Decimal("1.5"), None, env=env).needed
    assert not consent_needed("dashscope", Decimal("0.5"), None, env=env).needed
    assert not consent_needed("dashscope", Decimal("5"), Decimal("10"), env=env).needed
    # The emulator (embedded or at a URL) never asks.
    assert not consent_needed("local", Decimal("100"), None, env=env).needed
    assert not consent_needed("url", Decimal("100"), None, env=env).needed
    assert consent_needed("dashscope", Decimal("0.2"), None, env={"WANRECIPE_CONFIRM_USD": "0.1"})


def test_paid_run_over_the_threshold_is_refused_without_yes(batch_dir, tmp_path, monkeypatch):
    """--backend dashscope pointed at a loopback emulator: refused before any request."""
    recipe = batch_dir(rows=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("WANRECIPE_CONFIRM_USD", "0.05")  # 6 images = $0.12
    with EmulatorThread(EmulatorConfig()) as emu:
        args = ["run", str(recipe), "--batch", "rows.csv", "--backend", "dashscope",
                "--base-url", emu.base_url, "--out", "out"]  # fmt: skip
        refused = CliRunner().invoke(main, args)
        single = CliRunner().invoke(main, [*args[:2], *args[4:]])
        untouched = emu.stats()
        budgeted = CliRunner().invoke(main, [*args, "--max-cost", "1"])
        stats = emu.stats()
    assert refused.exit_code == 2, refused.output
    assert "has no budget" in refused.output and "--yes" in refused.output
    assert single.exit_code == 0, single.output  # one row: $0.04, under the threshold
    assert untouched["submissions"]["attempts"] == 2  # the single run's two steps only
    assert budgeted.exit_code == 0, budgeted.output
    assert stats["submissions"]["attempts"] == 2 + 6
    assert "spent" in budgeted.output


def test_yes_starts_the_paid_run(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("WANRECIPE_CONFIRM_USD", "0.01")
    with EmulatorThread(EmulatorConfig()) as emu:
        result = CliRunner().invoke(
            main, ["run", str(recipe), "--batch", "rows.csv", "--backend", "dashscope",
                   "--base-url", emu.base_url, "--out", "out", "--yes"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_plan_of_a_batch_counts_every_row_against_the_budget(batch_dir, tmp_path, monkeypatch):
    recipe = batch_dir(rows=3)
    monkeypatch.chdir(tmp_path)
    ok = CliRunner().invoke(main, ["plan", str(recipe), "--batch", "rows.csv", "--json"])
    assert ok.exit_code == 0, ok.output
    document = json.loads(ok.output)
    assert document["billed_images"] == 6 and len(document["rows"]) == 3
    over = CliRunner().invoke(
        main, ["plan", str(recipe), "--batch", "rows.csv", "--max-cost", "0.1"]
    )
    assert over.exit_code == 3, over.output
    assert "over the budget of $0.1 by $0.0204" in over.output
    sliced = CliRunner().invoke(
        main, ["plan", str(recipe), "--batch", "rows.csv", "--rows", "1:2", "--max-cost", "0.1"]
    )
    assert sliced.exit_code == 0, sliced.output

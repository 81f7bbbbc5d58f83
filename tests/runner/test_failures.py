"""Failures, retries and every fault kind of the emulator, as the runner meets them."""

from __future__ import annotations

import pytest

from wanrecipe.executor.retry import RetryPolicy

from .conftest import fast_options  # noqa: F401  (fixtures come from conftest)
from .test_run import assert_quota_kept, run

ONE_STEP = """\
    version: 1
    name: d
    steps:
      a: {function: colorization, image: in.png, prompt: ""}
"""

BRANCHES = """\
    version: 1
    name: branches
    steps:
      first:
        function: colorization
        image: in.png
        prompt: ""
      after:
        function: super_resolution
        image: "{{ steps.first.image }}"
        prompt: sharper
      other:
        function: description_edit
        image: in.png
        prompt: make it brighter
"""


async def test_a_failed_step_skips_its_dependants_and_others_go_on(emulator, recipe_file):
    path = recipe_file(BRANCHES)
    async with emulator(faults="task.inspection=first:1") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    assert record.status == "failed"
    first, after, other = (record.steps[k] for k in ("first", "after", "other"))
    assert first.state == "failed"
    assert first.error is not None and first.error.code == "DataInspectionFailed"
    assert len(first.attempts) == 1, "DataInspectionFailed is final: never retried"
    assert after.state == "skipped" and after.skipped_because == "first did not finish"
    assert other.state == "done"
    assert stats["submissions"]["accepted"] == 2
    assert record.images_billed == 1


async def test_fail_fast_submits_nothing_more(emulator, recipe_file):
    path = recipe_file(BRANCHES)
    # One slot: `other` waits for it while `first` runs, so fail-fast can still spare it.
    async with emulator(faults="task.inspection=first:1") as emu:
        record = await run(path, emu, fail_fast=True, quota=_quota(concurrency=1))
        stats = emu.stats()
    assert record.steps["first"].state == "failed"
    assert record.steps["other"].state == "skipped"
    assert stats["submissions"]["accepted"] == 1


def _quota(**kw):
    from wanrecipe.executor.quota import Quota

    return Quota(**kw)


@pytest.mark.parametrize(
    "fault,code", [("task.error", "InternalError"), ("task.timeout", "InternalError.Timeout")]
)
async def test_transient_task_failures_are_retried(emulator, recipe_file, fault, code):
    path = recipe_file(BRANCHES)
    async with emulator(faults=f"{fault}=first:1") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    first = record.steps["first"]
    assert record.status == "ok"
    assert [a.status for a in first.attempts] == ["FAILED", "SUCCEEDED"]
    assert first.attempts[0].error is not None and first.attempts[0].error.code == code
    assert stats["submissions"]["accepted"] == 4
    assert record.images_billed == 3 == stats["billed_images"]


async def test_recipe_retry_bounds_the_attempts(emulator, recipe_file):
    path = recipe_file("""\
        version: 1
        name: r
        steps:
          a: {function: colorization, image: in.png, prompt: "", retry: 1}
    """)
    async with emulator(faults="task.error=first:5") as emu:
        record = await run(path, emu)
    a = record.steps["a"]
    assert a.state == "failed" and len(a.attempts) == 2
    assert a.error is not None and a.error.code == "InternalError"


@pytest.mark.parametrize("fault", ["submit.429", "submit.500"])
async def test_refused_submits_are_retried(emulator, recipe_file, fault):
    path = recipe_file(BRANCHES)
    async with emulator(faults=f"{fault}=first:2") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    assert record.status == "ok"
    assert stats["faults"][fault] == 2
    assert stats["submissions"]["accepted"] == 3, "a refused submit creates no task"


async def test_a_lost_submit_is_found_in_the_task_list_not_sent_again(emulator, recipe_file):
    # The task is created, then the connection closes unanswered: submitting again would bill
    # twice. The runner finds the task in the account's task list and waits for it instead.
    path = recipe_file(ONE_STEP)
    async with emulator(faults="submit.lost=first:1") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    a = record.steps["a"]
    assert a.state == "done"
    assert stats["submissions"]["attempts"] == 1
    assert stats["billed_images"] == 1 == record.images_billed
    assert any("found task" in w for w in record.warnings)


async def test_a_dropped_submit_with_no_task_is_sent_again(emulator, recipe_file):
    path = recipe_file(ONE_STEP)
    async with emulator(faults="submit.drop=first:1") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    assert record.steps["a"].state == "done"
    assert stats["submissions"]["attempts"] == 2
    assert stats["submissions"]["accepted"] == 1
    assert any("no task of that submit" in w for w in record.warnings)


@pytest.mark.parametrize("fault", ["query.500", "query.503", "query.504"])
async def test_query_errors_are_retried(emulator, recipe_file, fault):
    path = recipe_file(BRANCHES)
    async with emulator(faults=f"{fault}=first:2") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    assert record.status == "ok"
    assert stats["faults"][fault] == 2
    assert stats["submissions"]["accepted"] == 3


async def test_partial_success_keeps_the_good_outputs(emulator, recipe_file):
    path = recipe_file("""\
        version: 1
        name: p
        steps:
          a:
            function: colorization
            image: in.png
            prompt: ""
            parameters: {n: 3}
    """)
    async with emulator(faults="output.timeout=first:1") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    a = record.steps["a"]
    assert a.state == "done"
    assert a.images_billed == 2 == stats["billed_images"]
    assert [r.index for r in a.results] == [1, 2]
    assert [r.path for r in a.results] == ["a-2.png", "a-3.png"]
    assert [e.code for e in a.failed_outputs] == ["InternalError.Timeout"]


async def test_download_errors_are_retried(emulator, recipe_file):
    path = recipe_file(BRANCHES)
    async with emulator(faults="download.500=first:2") as emu:
        record = await run(path, emu)
        stats = emu.stats()
    assert record.status == "ok"
    assert stats["faults"]["download.500"] == 2


async def test_an_expired_result_url_fails_the_step_clearly(emulator, recipe_file):
    path = recipe_file(BRANCHES)
    async with emulator(faults="download.expired=first:1") as emu:
        record = await run(path, emu)
    failed = [s for s in record.steps.values() if s.state == "failed"]
    assert len(failed) == 1
    assert failed[0].error is not None
    assert "result download failed" in failed[0].error.message
    assert failed[0].images_billed == 1, "the lost image was still billed, and the record says so"


async def test_a_step_timeout_bounds_the_wait(emulator, recipe_file):
    path = recipe_file("""\
        version: 1
        name: t
        steps:
          slow: {function: colorization, image: in.png, prompt: "", timeout: 0.5s}
    """)
    async with emulator(latency=3) as emu:
        record = await run(path, emu)
    slow = record.steps["slow"]
    assert slow.state == "failed"
    assert slow.error is not None and slow.error.code == "WaitTaskTimeout"
    # Failed with WaitTaskTimeout at all proves the bound: the 3 s task would have succeeded.
    assert slow.finished_at is not None


async def test_throttling_is_absorbed_and_the_quota_kept_by_default(emulator, recipe_file):
    steps = "\n".join(
        f"  s{i}: {{function: colorization, image: in.png, prompt: ''}}" for i in range(6)
    )
    path = recipe_file(f"version: 1\nname: many\nsteps:\n{steps}\n")
    async with emulator(over_concurrency="reject") as emu:
        record = await run(path, emu)
        assert_quota_kept(emu)
    assert record.status == "ok" and record.images_billed == 6


async def test_a_client_quota_above_the_accounts_is_throttled_and_recovers(emulator, recipe_file):
    steps = "\n".join(
        f"  s{i}: {{function: colorization, image: in.png, prompt: ''}}" for i in range(6)
    )
    path = recipe_file(f"version: 1\nname: many\nsteps:\n{steps}\n")
    async with emulator(rps=1, rps_burst=1, over_concurrency="reject") as emu:
        # A client that ignores the account's rate meets 429 after 429: it must keep waiting
        # (own budget, shared back-off) and finish, not give up.
        retry = RetryPolicy(
            base=0.05, cap=0.2, throttle_base=0.2, throttle_cap=1.0, throttle_attempts=40
        )
        record = await run(path, emu, quota=_quota(submit_rps=20, concurrency=2), retry=retry)
        stats = emu.stats()
    assert record.status == "ok", {k: s.error for k, s in record.steps.items()}
    assert record.images_billed == 6
    assert stats["submissions"]["refused_by_code"].get("Throttling.RateQuota", 0) > 0

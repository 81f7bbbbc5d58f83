"""The polling schedule: never later than the official SDK while nothing is learned; once
durations are known, a finish is noticed within a fraction of a second, spending the query
quota (each running task's share) and never more than the SDK's queries plus the hard cap."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wanrecipe.backends import TaskState
from wanrecipe.backends.models import parse_task
from wanrecipe.executor.learned import (
    DURATIONS_FILE,
    duration_realm,
    load_durations,
    save_durations,
)
from wanrecipe.executor.polling import (
    DurationKey,
    DurationModel,
    PollPlan,
    PollPolicy,
    duration_key,
    grid_phase,
    sdk_poll_time,
    sdk_polls_by,
    sdk_queries_for,
)

SPACING = 0.2  # 2 running tasks, 10 queries/s


def simulate(
    model: DurationModel,
    key: DurationKey | str,
    end: float,
    *,
    started: float = 0.0,
    latency: float = 0.0,
    spacing: float = SPACING,
    policy: PollPolicy | None = None,
) -> list[float]:
    """Query send times (seconds since submit) until the first one at or after ``end``;
    ``latency`` passes between a query's send and the next decision (its round trip)."""
    plan = PollPlan(model, key, policy or model.policy, spacing)
    times: list[float] = []
    t = plan.next_time(0.0)
    while True:
        plan.sent_at(t)
        times.append(t)
        if t >= end:
            return times
        t += latency
        following = plan.next_time(t, started)
        assert following >= t
        t = following
        assert len(times) < 2000


def sdk_notice(end: float) -> float:
    k = 0
    while sdk_poll_time(k) < end:
        k += 1
    return sdk_poll_time(k)


def test_sdk_schedule() -> None:
    # dashscope's BaseAsyncApi.wait: 1 s sleeps, doubled every 3 polls, at most 5 s
    assert [sdk_poll_time(k) for k in range(13)] == [0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 30, 35, 40]
    assert [sdk_polls_by(t) for t in (-1, 0, 0.5, 1, 3.9, 4, 12, 26, 30, 34.9)] == [
        0, 1, 1, 2, 3, 4, 7, 10, 11, 11,
    ]  # fmt: skip
    # a 9 s task is noticed at 12 s, after 7 queries (DESIGN.md)
    assert sdk_notice(9) == 12 and sdk_queries_for(9) == 7
    assert sdk_queries_for(8) == 6 and sdk_queries_for(1.0) == 2 and sdk_queries_for(0.2) == 2
    assert sdk_queries_for(0.0) == 1 and sdk_queries_for(30.0) == 11


durations = st.floats(min_value=0.05, max_value=60, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(
    history=st.lists(durations, max_size=20),
    run=durations,
    started=st.floats(0, 5),
    latency=st.floats(0, 0.1),
    concurrency=st.integers(1, 50),
    query_qps=st.floats(0.5, 100),
)
def test_the_schedule_keeps_the_quota_and_the_cap(
    history: list[float],
    run: float,
    started: float,
    latency: float,
    concurrency: int,
    query_qps: float,
) -> None:
    """Each task asks at most once per concurrency/query_qps seconds (so all running tasks
    together stay within the query rate), and never more than the SDK's queries for the same
    task plus the hard cap."""
    policy = PollPolicy()
    model = DurationModel(policy)
    for d in history:
        model.observe("expand", d)
    spacing = policy.spacing_for(concurrency, query_qps)
    assert spacing >= min(1.0, concurrency / query_qps) - 1e-12  # within each task's share
    end = started + run
    times = simulate(model, "expand", end, started=started, latency=latency, spacing=spacing)
    gaps = [b - a for a, b in itertools_pairwise(times)]
    assert all(g >= spacing - 1e-9 for g in gaps), (spacing, gaps)
    # any one-second window holds at most floor(1/spacing) + 1 of this task's queries
    for i, t in enumerate(times):
        inside = sum(1 for u in times[i:] if u < t + 1.0)
        assert inside <= math.floor(1.0 / spacing + 1e-9) + 1
    assert len(times) <= sdk_queries_for(times[-1]) + policy.dense_cap


def itertools_pairwise(xs: list[float]) -> list[tuple[float, float]]:
    return list(itertools.pairwise(xs))


@settings(max_examples=400, deadline=None)
@given(
    others=st.lists(durations, max_size=10),
    run=st.floats(0.0, 60, allow_nan=False),
    started=st.floats(0, 5),
    latency=st.floats(0, 0.1),
)
def test_cold_is_never_later_than_the_sdk(
    others: list[float], run: float, started: float, latency: float
) -> None:
    """Nothing learned about the function (other functions' durations at most): whatever the
    duration, the finish is seen no later than the SDK would see it."""
    model = DurationModel()
    for d in others:
        model.observe("doodle", d)
    end = started + run
    times = simulate(model, "expand", end, started=started, latency=latency)
    assert times[-1] <= sdk_notice(end) + 1e-9


@pytest.mark.parametrize("duration", [0.5, 1.0, 3.0, 9.0, 14.0, 30.0])
def test_learned_constant_duration_is_noticed_at_once(duration: float) -> None:
    model = DurationModel()
    for _ in range(10):
        model.observe("colorization", duration)
    times = simulate(model, "colorization", duration)
    assert times[-1] - duration <= 0.15
    lo, hi = model.window("colorization")
    assert times[0] >= lo  # no look before the window
    assert len(times) <= 1 + math.ceil((hi - lo) / SPACING)


def test_spread_durations_spend_the_quota_in_the_window() -> None:
    rng = random.Random(7)
    model = DurationModel()
    for _ in range(40):
        model.observe("expand", rng.uniform(5, 15))
    ours, sdk, our_q, sdk_q = [], [], [], []
    for _ in range(300):
        end = rng.uniform(5, 15)
        times = simulate(model, "expand", end, latency=0.005)
        ours.append(times[-1] - end)
        sdk.append(sdk_notice(end) - end)
        our_q.append(len(times))
        sdk_q.append(sdk_queries_for(end))
    ours.sort()
    assert ours[len(ours) // 2] <= 0.15 and ours[int(0.95 * len(ours))] <= SPACING + 0.05
    assert max(ours) <= max(sdk)
    # about one query per spacing inside the window, none before it
    assert statistics.mean(our_q) <= (statistics.mean(ours) + 10) / SPACING
    assert all(q <= s + PollPolicy().dense_cap for q, s in zip(our_q, sdk_q, strict=True))


def test_fast_tasks_after_learning() -> None:
    """The benchmark case: 1 s tasks, as the runner sees them after the first one."""
    rng = random.Random(1)
    model = DurationModel()
    model.observe("super_resolution", 1.0)
    delays = []
    for _ in range(100):
        end = 1.0 + rng.uniform(-0.01, 0.03)
        times = simulate(model, "super_resolution", end, latency=0.002)
        delays.append(times[-1] - end)
        assert len(times) <= sdk_queries_for(end) + 1
        model.observe("super_resolution", end)
    delays.sort()
    assert delays[50] < 0.1 and delays[95] < 0.15


def test_an_overrun_task_costs_at_most_the_sdk_plus_the_cap() -> None:
    model = DurationModel()
    for _ in range(10):
        model.observe("expand", 2.0)
    end = 600.0
    times = simulate(model, "expand", end, latency=0.01)
    assert times[-1] <= sdk_notice(end)  # past the window the SDK's times are kept
    assert len(times) <= sdk_queries_for(end) + PollPolicy().dense_cap
    assert len(times) > sdk_queries_for(end)  # the cap is spent, not more


def test_prior_and_pooling() -> None:
    model = DurationModel(PollPolicy(prior_low=4.0, prior_high=12.0))
    assert model.window("expand") == (4.0, 12.0)
    model.observe("doodle", 2.0)
    lo, hi = model.window("expand")  # falls back on what other functions took
    assert lo < 2.0 < hi < 3.0
    assert model.distribution("expand").prior
    model.observe("expand", 8.0)
    lo, hi = model.window("expand")
    assert 7.0 < lo < 8.0 < hi < 9.0
    assert not model.distribution("expand").prior
    model.observe("expand", float("nan"))
    model.observe("expand", -1)
    assert model.samples("expand") == ((8.0,), True)


def test_durations_are_learned_per_kind_of_task() -> None:
    """x1 and x4 upscales, 0.3 MP and 16 MP outputs are told apart; a new kind falls back
    on the function's durations."""
    model = DurationModel()
    x1 = duration_key("super_resolution", {"upscale_factor": 1}, 512, 512)
    x4 = duration_key("super_resolution", {"upscale_factor": 4}, 1024, 1024)
    assert x1.levels() == (
        "super_resolution|mp0.25|n1|x1", "super_resolution|n1|x1", "super_resolution",
    )  # fmt: skip
    assert x4.levels()[0] == "super_resolution|mp16|n1|x4"
    for _ in range(5):
        model.observe(x1, 3.0)
        model.observe(x4, 12.0)
    assert 2.5 < model.window(x1)[1] < 3.5
    assert 11.5 < model.window(x4)[0] < 12.5
    # x2 never seen: its function's durations (both kinds), not the prior
    x2 = duration_key("super_resolution", {"upscale_factor": 2}, 512, 512)
    lo, hi = model.window(x2)
    assert lo < 3.0 and hi > 12.0 and not model.distribution(x2).prior
    # the finest key needs a few samples before it wins over a coarser one
    big = duration_key("super_resolution", {"upscale_factor": 1}, 2048, 2048)
    model.observe(big, 9.0)
    assert model.window(big)[0] < 3.0  # one sample: the x1 key (any size) still decides
    model.observe(big, 9.0)
    model.observe(big, 9.0)
    assert 8.5 < model.window(big)[0] < 9.0
    expand = duration_key("expand", {"left_scale": 2.0, "right_scale": 2.0}, 1000, 1000)
    assert expand.megapixels == pytest.approx(2.0)  # 2000 x 1000
    assert duration_key("colorization", {"n": 3}, None, None).levels() == (
        "colorization|n3", "colorization",
    )  # fmt: skip


def test_learned_durations_are_kept_per_realm(tmp_path) -> None:
    """Every loopback emulator is one realm whatever its port; DashScope regions are apart."""
    assert duration_realm("url:127.0.0.1:40001") == duration_realm("local") == "local"
    assert duration_realm("dashscope:cn-beijing") == "dashscope:cn-beijing"
    model = DurationModel()
    for _ in range(3):
        model.observe(duration_key("colorization", {}, 512, 512), 4.0)
    save_durations(tmp_path, "url:127.0.0.1:40001", model)
    warm = load_durations(tmp_path, "url:127.0.0.1:50002", DurationModel())
    assert not warm.distribution("colorization").prior
    assert 3.5 < warm.window("colorization")[0] < 4.0
    cold = load_durations(tmp_path, "dashscope:cn-beijing", DurationModel())
    assert cold.distribution("colorization").prior
    saved = json.loads((tmp_path / DURATIONS_FILE).read_text())
    assert list(saved["backends"]) == ["local"]
    # a file from before keys had levels (function -> samples) still teaches
    (tmp_path / DURATIONS_FILE).write_text(
        json.dumps({"version": 1, "backends": {"local": {"expand": [7.0, 7.0, 7.0]}}})
    )
    old = load_durations(tmp_path, "local", DurationModel())
    assert 6.5 < old.window(duration_key("expand", {}, 512, 512))[0] < 7.0
    (tmp_path / DURATIONS_FILE).write_text("{damaged")
    assert load_durations(tmp_path, "local", DurationModel()).distribution("expand").prior


def state(status: str, submit: str, scheduled: str | None, end: str | None) -> TaskState:
    output = {"task_id": "t", "task_status": status, "submit_time": submit}
    if scheduled:
        output["scheduled_time"] = scheduled
    if end:
        output["end_time"] = end
    return parse_task({"request_id": "r", "output": output}, "t")


def test_learns_running_time_from_server_timestamps() -> None:
    model = DurationModel()
    done = state(
        "SUCCEEDED", "2025-02-21 17:56:31.786", "2025-02-21 17:56:33.000", "2025-02-21 17:56:40.500"
    )
    assert done.queue_seconds == pytest.approx(1.214)
    assert done.run_seconds == pytest.approx(7.5)
    model.observe_task("expand", done)
    assert model.samples("expand") == ((pytest.approx(7.5),), True)
    # A FAILED task often ends at once (validation): it would teach the wrong duration.
    model.observe_task(
        "expand", state("FAILED", "2025-02-21 17:56:31.786", None, "2025-02-21 17:56:31.900")
    )
    assert len(model.samples("expand")[0]) == 1


def test_pending_task_pushes_the_window() -> None:
    model = DurationModel()
    for _ in range(10):
        model.observe("expand", 2.0)
    # Still PENDING at 5 s: it cannot end before 5 + ~2 s, so do not poll before ~7 s.
    plan = PollPlan(model, "expand", model.policy, SPACING)
    plan.sent_at(plan.next_time(0.0))
    assert 6.8 < plan.next_time(5.0, started=5.0) < 7.2


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        PollPolicy(prior_low=0)
    with pytest.raises(ValueError):
        PollPolicy(prior_low=3.0, prior_high=2.0)
    with pytest.raises(ValueError):
        PollPolicy(min_interval=0)


def test_cold_keeps_the_sdk_times_and_warm_skips_those_before_the_window() -> None:
    model = DurationModel()
    cold = simulate(model, "expand", 9.0)
    assert {0.0, 1.0, 2.0, 4.0} <= set(cold)  # the prior is 5-15 s; the SDK's looks stay
    for _ in range(5):
        model.observe("expand", 10.0)
    warm = simulate(model, "expand", 10.0)
    assert warm[0] > 9.0 and len(warm) <= 2
    # Another function's durations guide, but the SDK's looks stay.
    assert simulate(model, "doodle", 3.0)[:3] == [0.0, 1.0, 2.0]
    early = PollPolicy(early_checks=(0.5,))
    assert simulate(DurationModel(early), "expand", 0.3, policy=early) == [0.0, 0.5]


def test_policy_spacing() -> None:
    assert PollPolicy().spacing_for(2, 10.0) == pytest.approx(0.2 / 0.9)
    assert PollPolicy().spacing_for(50, 20.0) == 1.0  # never sparser than the SDK's first gap
    assert PollPolicy().spacing_for(1, 1000.0) == PollPolicy().min_interval
    assert PollPolicy(spacing=0.3).spacing_for(2, 10.0) == 0.3
    with pytest.raises(ValueError):
        PollPolicy(spacing=0)
    with pytest.raises(ValueError):
        PollPolicy(dense_cap=-1)


@given(
    history=st.lists(st.floats(0.01, 100), min_size=1, max_size=30),
    level=st.floats(0, 1),
)
def test_distribution_cdf_inverts_quantile(history: list[float], level: float) -> None:
    model = DurationModel()
    for d in history:
        model.observe("f", d)
    dist = model.distribution("f")
    x = dist.quantile(level)
    assert dist.seconds[0] <= x <= dist.seconds[-1]
    assert dist.cdf(x) >= level - 1e-9 or x == dist.seconds[-1]
    # monotone
    assert dist.quantile(min(1.0, level + 0.01)) >= x - 1e-9


@pytest.mark.parametrize("duration", [0.35, 1.0, 2.5, 9.0])
def test_a_fixed_duration_is_seen_just_after_it_ends(duration: float) -> None:
    """The warm grid is placed just after the learned durations (not on a grid that ends at
    the margin-widened window's end): a task of a fixed duration is seen a few ms after its
    end, with one query, whatever the spacing."""
    model = DurationModel()
    for _ in range(8):
        model.observe("expand", duration)
    for spacing in (0.05, 0.22, 0.7):
        times = simulate(model, "expand", duration, spacing=spacing)
        assert 0 <= times[-1] - duration <= 0.02, (spacing, times)
        # no earlier than the window (the shortest seen less a margin), one per spacing
        lo, _ = model.window("expand")
        assert len(times) <= 1 + math.ceil((duration - lo) / spacing)


def test_the_grid_sits_where_most_tasks_end() -> None:
    """One long outlier does not move the grid away from where the others end."""
    model = DurationModel()
    for _ in range(9):
        model.observe("expand", 1.0)
    model.observe("expand", 1.37)
    assert simulate(model, "expand", 1.0)[-1] - 1.0 <= 0.02
    late = simulate(model, "expand", 1.37)
    assert late[-1] - 1.37 <= SPACING + 1e-9


@given(
    samples=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=64),
    spacing=st.floats(0.05, 1.0),
)
def test_grid_phase_is_an_offset_within_one_spacing(samples: list[float], spacing: float) -> None:
    phase = grid_phase(sorted(samples), spacing)
    assert phase is not None and 0.0 <= phase < spacing
    assert grid_phase((), spacing) is None


@pytest.mark.parametrize("late", [0.0, 0.004, 0.03, 0.09])
def test_a_query_sent_late_does_not_push_the_next_past_the_end(late: float) -> None:
    """The query before the end went out a few ms late (a timer, a busy loop): the next one
    still comes just after the learned end, not a whole spacing later."""
    model = DurationModel()
    for _ in range(4):
        model.observe("expand", 9.0)
    plan = PollPlan(model, "expand", model.policy, SPACING)
    t = plan.next_time(0.0)
    times = []
    while t < 9.0:
        t += late  # sent late
        plan.sent_at(t)
        times.append(t)
        t = plan.next_time(t + 0.002)
    assert t - 9.0 <= 0.03 + late, [*times, t]
    assert all(b - a >= SPACING - 1e-9 for a, b in itertools.pairwise([*times, t]))

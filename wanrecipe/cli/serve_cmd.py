"""serve: run the local emulator."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import click

from ..emulator.config import EmulatorConfig, Latency, parse_duration, parse_latency
from ..emulator.faults import parse_faults, spec_help
from ..errors import UsageError
from . import main

_HELP = f"""Run the local DashScope image-edit emulator (base URL http://HOST:PORT/api/v1).

Point the official SDK at it with dashscope.base_http_api_url = "http://127.0.0.1:8080/api/v1",
or wanrecipe with --base-url. Counters: GET http://HOST:PORT/emulator/stats.

\b
Fault injection (--faults SPEC):
{spec_help()}

\b
Example:
  wanrecipe serve --port 8080 --latency realistic --faults 'submit.429=first:2,query.503=0.1'
"""


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def _latency(_ctx: click.Context, _param: click.Parameter, value: str) -> Latency:
    try:
        return parse_latency(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def _faults(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        parse_faults(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@main.command(help=_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port (0 = any free port).")
@click.option(
    "--latency",
    default="fast",
    show_default=True,
    callback=_latency,
    help="fast (as soon as the engine is done), realistic (5-15 s per task, seeded) or "
    "fixed seconds (e.g. 3).",
)
@click.option(
    "--rps", default=2.0, show_default=True, help="Submissions per second (0 = unlimited)."
)
@click.option(
    "--rps-burst", default=2, show_default=True, help="Submissions that may arrive back to back."
)
@click.option(
    "--concurrency", default=2, show_default=True, help="Tasks running at once (0 = unlimited)."
)
@click.option(
    "--over-concurrency",
    type=click.Choice(["queue", "reject"]),
    default="queue",
    show_default=True,
    help="Extra tasks wait PENDING, or the submit gets 429 Throttling.AllocationQuota.",
)
@click.option(
    "--query-qps",
    default=20.0,
    show_default=True,
    help="Task queries per second before 429 (0 = unlimited).",
)
@click.option("--faults", default="", callback=_faults, metavar="SPEC", help="See below.")
@click.option("--fault-seed", default=0, show_default=True, help="Seed of the fault draws.")
@click.option(
    "--api-key",
    default=None,
    envvar="WANRECIPE_EMULATOR_API_KEY",
    help="Accept only this bearer key (default: any non-empty key).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep results and uploads here (default: in memory).",
)
@click.option("--task-ttl", default="24h", show_default=True, callback=_duration,
              help="How long task ids stay queryable (24h, 90s, 0.5s, ...).")  # fmt: skip
@click.option("--url-ttl", default="24h", show_default=True, callback=_duration,
              help="How long result URLs stay valid.")  # fmt: skip
@click.option(
    "--validate-images",
    type=click.Choice(["task", "submit"]),
    default="task",
    show_default=True,
    help="Where image problems show: a FAILED task, or a 4xx answer to the submit.",
)
@click.option("--workers", default=2, show_default=True, help="Engine processes.")
@click.option("--badge", is_flag=True, help="Draw a visible fidelity badge on every result.")
@click.option("--seed", default=0, show_default=True, help="Seed of latency and task-seed draws.")
@click.option("--quiet", "-q", is_flag=True, help="No access log.")
def serve(quiet: bool, **options: Any) -> None:
    try:
        config = EmulatorConfig(**options)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        asyncio.run(_serve(config, quiet=quiet))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {exc}") from None


async def _serve(config: EmulatorConfig, *, quiet: bool) -> None:
    from ..emulator.app import RedactedAccessLogger
    from ..emulator.server import running_emulator
    from ..loopback import is_loopback_host

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log_class = None if quiet else RedactedAccessLogger
    async with running_emulator(config, access_log_class=log_class) as emu:
        click.echo(f"wanrecipe emulator listening on {emu.base_url}", err=True)
        if not is_loopback_host(config.host):
            click.echo("warning: not a loopback address; anyone who can reach it can use it",
                       err=True)  # fmt: skip
        click.echo(f"stats: {emu.origin}/emulator/stats   (Ctrl-C to stop)", err=True)
        await stop.wait()
    click.echo("stopped", err=True)

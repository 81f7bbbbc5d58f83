"""The run's money: a budget ledger of billed + in-flight (reserved) cost.

Before a submit the scheduler reserves the most the task can bill (``n`` images at the
model's price); nothing is reserved that would push billed + reserved over the budget, however
many tasks are in flight. When the task ends the reservation is settled with what was actually
billed (``usage.image_count``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import wire
from ..errors import UsageError

#: Above this estimate a paid run without a budget asks first (env WANRECIPE_CONFIRM_USD).
DEFAULT_CONFIRM_USD = Decimal("1")


def parse_usd(text: str | float | Decimal, what: str = "--max-cost") -> Decimal:
    """``"2"``, ``"0.50"``, ``"$3"`` -> Decimal. Raises UsageError."""
    raw = str(text).strip().lstrip("$")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise UsageError(f"{what}: {text!r} is not an amount in USD (e.g. 2 or 0.50)") from None
    if not value.is_finite() or value < 0:
        raise UsageError(f"{what}: {text!r} must be a positive amount in USD")
    return value


def images_cost(images: int) -> Decimal:
    return wire.PRICE_PER_IMAGE_USD * images


class Budget:
    """Billed and reserved images of one run against ``max_usd``. Single event loop only."""

    def __init__(self, max_usd: Decimal) -> None:
        self.max_usd = Decimal(max_usd)
        self.billed = 0
        self.reserved = 0
        #: Of ``reserved``: images of tasks submitted and not ended (they may bill).
        self.in_flight = 0
        #: Set when a reservation was refused: the run is at its budget.
        self.refused: str | None = None

    @property
    def committed_usd(self) -> Decimal:
        return images_cost(self.billed + self.reserved)

    def fits(self, images: int) -> bool:
        return images_cost(self.billed + self.reserved + images) <= self.max_usd

    def _admit(self, images: int) -> bool:
        """Whether ``images`` more may be reserved (a shared budget asks its tally)."""
        return self.fits(images)

    def reserve(self, images: int, what: str = "") -> bool:
        """Reserve ``images`` before a submit; False (and nothing reserved) if over budget."""
        if not self._admit(images):
            self.refused = self.refused or (
                f"budget ${self.max_usd} reached: ${self.committed_usd} billed or in flight, "
                f"{what or 'the next task'} would add ${images_cost(images)}"
            )
            return False
        self.reserved += images
        self.in_flight += images
        return True

    async def areserve(self, images: int, what: str = "") -> bool:
        """:meth:`reserve` from the event loop (a shared budget asks its tally off the loop)."""
        return self.reserve(images, what)

    def settle(self, reserved: int, billed: int) -> None:
        """A reserved task ended: drop its reservation, count what it billed."""
        self.reserved = max(0, self.reserved - reserved)
        self.in_flight = max(0, self.in_flight - reserved)
        self.billed += billed

    def add_billed(self, billed: int) -> None:
        """Billed by a task this run did not submit (one an earlier run left in flight)."""
        self.billed += billed


@dataclass(frozen=True)
class Consent:
    """Whether a run may start without asking, and what to say when it may not."""

    needed: bool
    message: str = ""


def confirm_threshold(env: Mapping[str, str] | None = None) -> Decimal:
    env = os.environ if env is None else env
    given = env.get("WANRECIPE_CONFIRM_USD")
    return parse_usd(given, "WANRECIPE_CONFIRM_USD") if given else DEFAULT_CONFIRM_USD


def consent_needed(
    backend_kind: str,
    estimate_usd: Decimal,
    max_usd: Decimal | None,
    *,
    env: Mapping[str, str] | None = None,
) -> Consent:
    """A paid run (``dashscope``) over the threshold and without a budget needs a yes.

    The emulator and other loopback servers never ask: nothing is billed there.
    """
    if backend_kind != "dashscope" or max_usd is not None:
        return Consent(False)
    threshold = confirm_threshold(env)
    if estimate_usd <= threshold:
        return Consent(False)
    return Consent(
        True,
        f"this run may cost up to ${estimate_usd:.4f} on DashScope (over "
        f"${threshold}, WANRECIPE_CONFIRM_USD) and has no budget",
    )


class RowBudget(Budget):
    """A batch's budget: a row starts only when all of it fits.

    The first submit of a row holds the row's whole planned cost (every step's ``n``), and
    its later steps draw from that hold; so the budget stops the batch *between* rows, never
    leaving rows half paid for. A row that ends (done, failed, skipped) gives back what it
    still holds.
    """

    def __init__(self, max_usd: Decimal, planned: Mapping[str, int], row_of: Any) -> None:
        super().__init__(max_usd)
        self._planned = dict(planned)  # row -> images
        self._row_of = row_of
        self._held: dict[str, int] = {}

    def reserve(self, images: int, what: str = "") -> bool:
        row = self._row_of(what)
        if row not in self._held:
            whole = max(images, self._planned.get(row, images))
            if not self._admit(whole):
                self.refused = self.refused or (
                    f"budget ${self.max_usd} reached: ${self.committed_usd} billed or held "
                    f"by rows in progress, row {row} would add up to ${images_cost(whole)}"
                )
                return False
            self._held[row] = whole
            self.reserved += whole
        take = min(images, self._held[row])
        self._held[row] -= take
        extra = images - take  # more than planned (an n rendered from upstream output)
        if extra:
            if not self._admit(extra):
                self._held[row] += take
                self.refused = self.refused or (
                    f"budget ${self.max_usd} reached: {what} would add ${images_cost(extra)}"
                )
                return False
            self.reserved += extra
        self.in_flight += images
        return True

    def release_row(self, row: str) -> None:
        """The row ended: what it still holds is free again."""
        left = self._held.get(row, 0)
        self.reserved = max(0, self.reserved - left)
        if row in self._held:
            self._held[row] = 0


def budget_of(recipe: Any, max_usd: Any = None) -> Any:
    """The run's budget in USD (a Decimal) or None: ``--max-cost`` wins over the recipe's
    ``budget: {max_usd: ...}``."""
    if max_usd is not None:
        return parse_usd(max_usd)
    declared = getattr(recipe, "budget", None)
    value = (
        declared.get("max_usd")
        if isinstance(declared, Mapping)
        else getattr(declared, "max_usd", None)
    )
    return None if value is None else Decimal(str(value))

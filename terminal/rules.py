"""The terminal's decisions (docs/terminal-rules.md), as pure functions. No Textual here.

Each function names the rules it implements (S1..S18), so tests can cite them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from cardio.model import Category, LifeCycle, PinState, Scheme
from cardio.pin import INITIAL_PIN
from cardio.pin_policy import Violation, check_new_pin

__all__ = ["Violation", "check_new_pin"]  # S15 lives with the card layer: the outlet needs it too

FORCED_SCHEME = Scheme.EMPLOYEE_MEDICAL  # S8: urban-employee basic medical insurance only
FORCED_CATEGORY = Category.SOCIAL_SECURITY  # S12: never an old medical insurance card ('L')


@dataclass(frozen=True)
class CardFacts:
    """What the terminal learned from the card (and, for `lost`, from the host).

    None means the card did not say: a real card may not answer GET DATA C1.
    """

    category: str | None = None
    scheme: str | None = None
    life_cycle: LifeCycle | None = None
    pin_state: PinState | None = None
    tries_left: int | None = None
    try_limit: int | None = None
    birth_date: dt.date | None = None
    lost: bool = False

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0

    @property
    def effective_pin_state(self) -> PinState:
        """Rule 8: a card that does not report its PIN state is treated as ENABLED."""
        return self.pin_state if self.pin_state is not None else PinState.ENABLED


@dataclass(frozen=True)
class Settings:
    upgrade_date: dt.date  # S8: the system upgrade (a configurable date)
    today: dt.date | None = None  # None: the real date, read at each decision

    @property
    def upgraded(self) -> bool:
        """A terminal left running across the upgrade date starts forcing the change."""
        return (self.today or dt.date.today()) >= self.upgrade_date


class Decision(StrEnum):
    """What happens once a card is read, in the order docs/terminal-rules.md §3 gives."""

    LOST = "lost"  # 2, S18
    NOT_ACTIVATED = "not-activated"  # 3, S13
    BLOCKED = "blocked"  # 4, S17
    FORCED_CHANGE = "forced-change"  # 5, S8
    ASK_PIN = "ask-pin"  # 6 and 8, S5
    NO_PIN = "no-pin"  # 7, S4 and S16


def forced_change_due(facts: CardFacts, settings: Settings) -> bool:
    """S8, S9, S11, S12: upgrade reached, category 1, scheme 310, PIN still INITIAL."""
    return (
        settings.upgraded
        and facts.category == FORCED_CATEGORY
        and facts.scheme == FORCED_SCHEME
        and facts.pin_state is PinState.INITIAL
    )


def decide(facts: CardFacts, settings: Settings) -> Decision:
    """Rules 2-8 (rule 1, an unreadable card, is the reader's error before any facts)."""
    refusal = may_change_pin(facts)
    if refusal is not None:
        return refusal
    if forced_change_due(facts, settings):
        return Decision.FORCED_CHANGE
    if facts.effective_pin_state is PinState.ENABLED:
        return Decision.ASK_PIN
    return Decision.NO_PIN


def may_change_pin(facts: CardFacts) -> Decision | None:
    """Rules 2-4 (S18, S13, S17), in that order: these cards get no PIN operation at all,
    neither a payment nor a holder's change (S2, S3). None = go ahead."""
    if facts.lost:
        return Decision.LOST
    if facts.life_cycle is LifeCycle.NOT_ACTIVATED:
        return Decision.NOT_ACTIVATED
    if facts.blocked:
        return Decision.BLOCKED
    return None


def current_pin_for_forced_change() -> str:
    """S1, S8: the forced change sends the initial PIN as the old one."""
    return INITIAL_PIN

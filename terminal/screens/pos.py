"""The terminal as its screens see it: everything a screen may read of the app or ask of
it. Screens type against `Pos` (PadScreen.pos), never against the app itself, so what
they touch is listed here and nowhere else; PosApp provides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Chrome:
    """What stays on the pad for the whole session, as catalogue keys."""

    title: str  # the title bar
    menu: tuple[str, ...]  # the menu's choices, in order
    hint: tuple[str, ...]  # the hint line under the pad, in parts
    with_x: bool = False  # the keypad's X key: the outlet types ID numbers, some end in X


class Pos(Protocol):
    """What a screen may use of the terminal."""

    @property
    def chrome(self) -> Chrome: ...

    @property
    def card_present(self) -> bool: ...

    @property
    def entry(self) -> str:
        """What is being typed (a new entry screen shows it)."""
        ...

    @property
    def trace_lines(self) -> Iterable[str]:
        """The APDU trace so far (a new screen shows it)."""
        ...

    @property
    def trace_shown(self) -> bool: ...

    def t(self, key: str, **params: object) -> str:
        """A catalogue phrase in the terminal's language."""
        ...

    def pad_key(self, name: str) -> None:
        """A key typed or clicked; the terminal routes it by what it is doing."""
        ...

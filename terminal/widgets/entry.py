"""The entry line: PIN digits as `*`, amounts with their decimal point."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from cardio.pin import PIN_LENGTH


class Entry(Static):
    """Shows what is being typed. A secret entry shows only `*`, never the digits."""

    value: reactive[str] = reactive("", layout=False)

    def __init__(self, *, kind: str, suffix: str = "", **kwargs: object):
        """`kind` is 'pin' (shown as *), 'amount' (fen shown as yuan) or 'text'."""
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.kind = kind
        self.suffix = suffix

    def render(self) -> str:
        if self.kind == "pin":
            shown = ["*"] * len(self.value) + ["_"] * (PIN_LENGTH - len(self.value))
            return " ".join(shown)
        if self.kind == "amount":
            fen = int(self.value or "0")
            return f"{fen // 100}.{fen % 100:02d} {self.suffix}".rstrip()
        return self.value or "_"

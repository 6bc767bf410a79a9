"""The entry line: PIN digits as `*`, amounts with their decimal point."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from cardio.pin import PIN_LENGTH


class Entry(Static):
    """Shows what is being typed. A secret entry shows only `*`, never the digits."""

    value: reactive[str] = reactive("", layout=False)

    def __init__(self, *, secret: bool, max_length: int, suffix: str = "", **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.secret = secret
        self.max_length = max_length
        self.suffix = suffix

    def render(self) -> str:
        if self.secret:
            shown = ["*"] * len(self.value) + ["_"] * (PIN_LENGTH - len(self.value))
            return " ".join(shown)
        fen = int(self.value or "0")
        return f"{fen // 100}.{fen % 100:02d} {self.suffix}".rstrip()


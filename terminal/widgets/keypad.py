"""The PIN pad's keys, in the style of Textual's calculator example.

Keys and clicks share one path: both end in the app's `pad_key(name)`. A typed key
goes there directly, in the order typed, and lights its button; a click goes there
through the button's Pressed message. (Pressing the button for a typed key, as the
calculator example does, lets fast typing arrive out of order: each button has its
own message queue.) Buttons never take focus, so Enter always means confirm.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Button

# keyboard key -> the button's name
KEY_NAMES = {
    **{str(d): str(d) for d in range(10)},
    "enter": "confirm",
    "backspace": "back",
    "escape": "cancel",
    "delete": "clear",
    "x": "X",  # the last character of some ID numbers (the outlet's X key)
    "X": "X",
}
LABELLED = ("confirm", "back", "cancel", "clear", "X")  # keys labelled in words (key_*)


class PadKey(Button, can_focus=False):
    """A key of the pad; `name` is what the app receives."""

    def flash(self) -> None:
        """Show the key as pressed for a moment, without sending Pressed."""
        self.add_class("-active")
        self.set_timer(self.active_effect_duration, lambda: self.remove_class("-active"))


class Keypad(Grid):
    """1 2 3 取消 / 4 5 6 退格 / 7 8 9 清除 / 0 确认 (at the outlet: 0 X 确认)."""

    def __init__(self, labels: dict[str, str], *, with_x: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.labels = labels
        self.with_x = with_x  # the service outlet types ID numbers, some ending in X

    def compose(self) -> ComposeResult:
        rows = [("1", "2", "3", "cancel"), ("4", "5", "6", "back"), ("7", "8", "9", "clear")]
        for row in rows:
            for name in row:
                yield self._key(name)
        if self.with_x:
            yield self._key("0", classes="zero-x")
            yield self._key("X")
        else:
            yield self._key("0", classes="zero")
        yield self._key("confirm")

    def _key(self, name: str, classes: str = "") -> PadKey:
        label = self.labels.get(name, name)
        kind = "digit" if name.isdigit() else name
        return PadKey(label, id=f"key-{name}", name=name, classes=f"{kind} {classes}".strip())

    def flash(self, name: str) -> None:
        for key in self.query(f"#key-{name}").results(PadKey):
            key.flash()

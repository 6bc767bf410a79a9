"""The PIN pad's keys, in the style of Textual's calculator example.

Keys and clicks share one path: a key press presses its button, and the button's
Pressed message is the only thing screens act on. Buttons never take focus, so
Enter always means confirm.
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
}


class PadKey(Button, can_focus=False):
    """A key of the pad; `name` is what screens receive."""


class Keypad(Grid):
    """1 2 3 取消 / 4 5 6 退格 / 7 8 9 清除 / 0 确认."""

    def __init__(self, labels: dict[str, str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.labels = labels

    def compose(self) -> ComposeResult:
        rows = [("1", "2", "3", "cancel"), ("4", "5", "6", "back"), ("7", "8", "9", "clear")]
        for row in rows:
            for name in row:
                yield self._key(name)
        yield self._key("0", classes="zero")
        yield self._key("confirm")

    def _key(self, name: str, classes: str = "") -> PadKey:
        label = self.labels.get(name, name)
        kind = "digit" if name.isdigit() else name
        return PadKey(label, id=f"key-{name}", name=name, classes=f"{kind} {classes}".strip())

    def press(self, key: str) -> bool:
        """Press the button of a keyboard key; False when the key is not on the pad."""
        name = KEY_NAMES.get(key)
        if name is None:
            return False
        self.query_one(f"#key-{name}", PadKey).press()
        return True

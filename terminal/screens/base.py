"""What every screen of the pad has: a title bar, a message panel, the keypad, the trace."""

from __future__ import annotations

from typing import cast

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, RichLog, Static

from terminal.screens.pos import Pos
from terminal.widgets.keypad import KEY_NAMES, LABELLED, Keypad


class PadScreen(Screen[None], inherit_bindings=False):
    """Subclasses fill the panel. No focus keys and no copy key: only the pad's own."""

    @property
    def pos(self) -> Pos:
        """The terminal, as far as a screen may see it."""
        return cast(Pos, self.app)

    def t(self, key: str, **params: object) -> str:
        return self.pos.t(key, **params)

    def compose(self) -> ComposeResult:
        with Vertical(id="pad"):
            with Horizontal(id="topbar"):
                yield Static(self.t(self.pos.chrome.title), id="title")
                yield Static("", id="card-status")
            with Horizontal(id="body"):
                with Vertical(id="panel"):
                    yield from self.compose_panel()
                yield Keypad(
                    {name: self.t(f"key_{name}") for name in LABELLED},
                    with_x=self.pos.chrome.with_x,
                    id="keypad",
                )
            trace = RichLog(id="trace", max_lines=400, wrap=True, markup=False, auto_scroll=True)
            trace.can_focus = False  # Enter always means confirm
            yield trace
            yield Static("  ".join(self.t(key) for key in self.pos.chrome.hint), id="hint")
        yield Static(self.t("too_small"), id="too-small")

    def compose_panel(self) -> ComposeResult:
        yield Static("", id="lines")

    def on_mount(self) -> None:
        # Textual calls on_mount of every class in the MRO: subclasses must not call super().
        self.refresh_status()
        trace = self.query_one("#trace", RichLog)
        trace.write(self.t("trace_title"))
        for entry in self.pos.trace_lines:
            trace.write(entry)
        self.set_trace_visible(self.pos.trace_shown)

    def refresh_status(self) -> None:
        key = "card_present" if self.pos.card_present else "no_card"
        self.query_one("#card-status", Static).update(self.t(key))

    def add_trace(self, entry: str) -> None:
        """A screen not mounted yet has no pane: it shows `trace_lines` when it is."""
        for trace in self.query("#trace").results(RichLog):
            trace.write(entry)

    def set_trace_visible(self, visible: bool) -> None:
        self.query_one("#trace", RichLog).display = visible
        self.set_class(visible, "tracing")

    def on_key(self, event: events.Key) -> None:
        name = KEY_NAMES.get(event.key)
        if name is None:
            return
        event.stop()
        event.prevent_default()
        for keypad in self.query(Keypad):  # none while the screen is still being built
            keypad.flash(name)
        self.pos.pad_key(name)

    @on(Button.Pressed, "#keypad Button")
    def _pressed(self, event: Button.Pressed) -> None:
        """A click. The app routes by its state, not by this screen, so keys typed
        while a screen is being replaced still land where they belong."""
        event.stop()
        if event.button.name:
            self.pos.pad_key(event.button.name)

    def show_entry(self, text: str) -> None:
        """The typed text changed (screens with an entry line show it)."""

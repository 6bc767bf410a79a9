"""One screen per stage of a transaction; each shows a `View` of the flow."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from cardio import identity
from terminal.flow import Line, Stage, Tone, View
from terminal.screens.base import PadScreen
from terminal.widgets.entry import Entry

TONE_STYLES = {Tone.PLAIN: "", Tone.OK: "bold green", Tone.ERROR: "bold red"}


class StageScreen(PadScreen):
    """Base of the stage screens: the flow's lines, and keys handed to the app."""

    def __init__(self, view: View) -> None:
        super().__init__()
        self.view = view

    def title_key(self) -> str:
        return self.pos.flow_title_key()

    def compose_panel(self) -> ComposeResult:
        yield Static(self.t(self.title_key()), id="stage-title")
        yield Static("", id="lines")

    def on_mount(self) -> None:
        self.show(self.view)

    def show(self, view: View) -> None:
        """Show another view of the same stage (e.g. a wrong PIN, asked again)."""
        self.view = view
        self.query_one("#lines", Static).update(self.lines_text(view.lines))

    def lines_text(self, lines: tuple[Line, ...]) -> Text:
        text = Text()
        for item in lines:
            text.append(self.t(item.key, **dict(item.params)) + "\n", style=TONE_STYLES[item.tone])
        return text



class EntryScreen(StageScreen):
    """Amount, ID number or PIN entry."""

    kind = "pin"

    def compose_panel(self) -> ComposeResult:
        yield from super().compose_panel()
        yield Entry(kind=self.kind, suffix=self.t("yuan") if self.kind == "amount" else "",
                    id="entry")

    def on_mount(self) -> None:
        self.show_entry(self.pos.entry)

    def show_entry(self, text: str) -> None:
        for entry in self.query(Entry):  # none yet while the screen is being built
            entry.value = text


class AmountScreen(EntryScreen):
    kind = "amount"


class IdScreen(EntryScreen):
    """The holder's ID number, at the service outlet."""

    kind = "text"


class PinScreen(EntryScreen):
    """Current, new or repeated PIN: digits shown as `*` only."""


class WaitScreen(StageScreen):
    """Waiting for the card, or for the card to answer."""


class ResultScreen(StageScreen):
    def lines_text(self, lines: tuple[Line, ...]) -> Text:
        text = super().lines_text(lines)
        text.append("\n" + self.t("press_enter"))
        return text


class InfoScreen(ResultScreen):
    def lines_text(self, lines: tuple[Line, ...]) -> Text:
        info = self.view.info
        text = Text()
        if info is None:
            return text
        s = info.status
        rows = [
            ("holder", identity.mask_name(info.name) if info.name else "-"),
            ("id_number", identity.mask_id(info.ssn) if info.ssn else "-"),
            ("card_number", info.card_number or "-"),
            ("scheme", self.t(f"scheme_{info.scheme}") if info.scheme in ("310", "390", "170")
             else self.t("scheme_unknown")),
            ("life_cycle",
             self.t(f"life_{s.life_cycle.value}" if s.life_cycle else "life_unknown")),
            ("pin_state", self.t(f"state_{s.pin_state.value}" if s.pin_state else "state_unknown")),
        ]
        for label, value in rows:
            text.append(f"{self.t(label)}: ", style="bold")
            text.append(f"{value}\n")
        if s.tries_left is not None:
            text.append(self.t("tries_left", n=s.tries_left) + "\n")
        if info.category == "L":
            text.append(self.t("legacy_card") + "\n")
        text.append("\n" + self.t("press_enter"))
        return text


SCREENS: dict[Stage, type[StageScreen]] = {
    Stage.AMOUNT: AmountScreen,
    Stage.ID_NUMBER: IdScreen,
    Stage.INSERT: WaitScreen,
    Stage.READING: WaitScreen,
    Stage.WORKING: WaitScreen,
    Stage.SETTLING: WaitScreen,
    Stage.PIN: PinScreen,
    Stage.NEW_PIN: PinScreen,
    Stage.CONFIRM_PIN: PinScreen,
    Stage.RESULT: ResultScreen,
    Stage.INFO: InfoScreen,
}

"""One screen per stage of a transaction; each shows a `View` of the flow."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from cardio import identity
from cardio.model import Category, Scheme
from terminal.flow.view import Line, Stage, Tone, View
from terminal.screens.base import PadScreen
from terminal.widgets.entry import Entry

TONE_STYLES = {Tone.PLAIN: "", Tone.OK: "bold green", Tone.ERROR: "bold red"}


class StageScreen(PadScreen):
    """Base of the stage screens: the flow's title and lines, and keys handed to the app."""

    def __init__(self, view: View, title_key: str) -> None:
        super().__init__()
        self.view = view
        self.title_key = title_key  # the transaction's title, a catalogue key

    def compose_panel(self) -> ComposeResult:
        yield Static(self.t(self.title_key), id="stage-title")
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
        yield Entry(
            kind=self.kind, suffix=self.t("yuan") if self.kind == "amount" else "", id="entry"
        )

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
    """Waiting for the card, for the card to answer, or for the holder's 确认."""


class ResultScreen(StageScreen):
    """The end of a transaction: what happened, then 请取回卡片 while the card is in."""

    def lines_text(self, lines: tuple[Line, ...]) -> Text:
        text = super().lines_text(lines)
        self._add_take_card(text)
        return text

    def _add_take_card(self, text: Text) -> None:
        text.append("\n")
        if self.pos.card_present:
            text.append(self.t("take_card") + "\n", style="bold")
        text.append(self.t("press_enter"))

    def refresh_status(self) -> None:
        super().refresh_status()
        if self.is_mounted:
            self.show(self.view)


class InfoScreen(ResultScreen):
    def lines_text(self, lines: tuple[Line, ...]) -> Text:
        info = self.view.info
        text = Text()
        if info is None:
            return text
        s = info.status
        if self.view.lost:
            text.append(self.t("lost") + "\n", style="bold red")
        if s.tries_left == 0:
            pin_state = self.t("state_LOCKED")  # S17: what the holder must know first
        elif s.pin_state:
            pin_state = self.t(f"state_{s.pin_state.value}")
        else:
            pin_state = self.t("state_unknown")
        rows = [
            ("holder", identity.mask_name(info.name) if info.name else "-"),
            ("id_number", identity.mask_id(info.ssn) if info.ssn else "-"),
            ("card_number", info.card_number or "-"),
            (
                "scheme",
                self.t(f"scheme_{info.scheme}")
                if info.scheme in tuple(Scheme)
                else self.t("scheme_unknown"),
            ),
            (
                "life_cycle",
                self.t(f"life_{s.life_cycle.value}" if s.life_cycle else "life_unknown"),
            ),
            ("pin_state", pin_state),
        ]
        for label, value in rows:
            text.append(f"{self.t(label)}: ", style="bold")
            text.append(f"{value}\n")
        if s.tries_left is not None:
            text.append(self.t("tries_remaining", n=s.tries_left) + "\n")
        if info.category == Category.OLD_MEDICAL:
            text.append(self.t("legacy_card") + "\n")
        self._add_take_card(text)
        return text


SCREENS: dict[Stage, type[StageScreen]] = {
    Stage.AMOUNT: AmountScreen,
    Stage.ID_NUMBER: IdScreen,
    Stage.INSERT: WaitScreen,
    Stage.READING: WaitScreen,
    Stage.WORKING: WaitScreen,
    Stage.PRESETTLING: WaitScreen,
    Stage.SETTLING: WaitScreen,
    Stage.CONFIRM_AMOUNT: WaitScreen,
    Stage.PIN: PinScreen,
    Stage.NEW_PIN: PinScreen,
    Stage.CONFIRM_PIN: PinScreen,
    Stage.RESULT: ResultScreen,
    Stage.INFO: InfoScreen,
}

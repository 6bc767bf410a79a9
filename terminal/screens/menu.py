"""The main menu, which is also where the terminal waits for a card."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from terminal.screens.base import PadScreen


class MenuScreen(PadScreen):
    def __init__(self, notice: str | None = None) -> None:
        super().__init__()
        self.notice = notice

    def on_mount(self) -> None:
        self.show_menu()

    def refresh_status(self) -> None:
        super().refresh_status()
        if self.is_mounted:
            self.show_menu()

    def show_menu(self) -> None:
        text = Text()
        for key in self.pos.chrome.menu:
            text.append(self.t(key) + "\n", style="bold")
        text.append("\n" + self.t("choose") + "\n")
        if self.notice:
            text.append(self.notice + "\n", style="bold red")
        if not self.pos.card_present:
            text.append(self.t("insert_card"), style="bold")
        elif self.notice:  # a transaction just ended with the card still in
            text.append(self.t("take_card"), style="bold")
        self.query_one("#lines", Static).update(text)

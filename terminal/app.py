"""`pos-terminal`: the pharmacy's PIN pad for the social security card.

Data flows one way: keypad -> screen -> flow/rules -> reader -> card. Reader calls run
in worker threads and come back as messages, so the screen never freezes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message

from cardio.card import profiles, store
from cardio.card.state import CardFileError
from cardio.outlet import Operation, OutletError
from cardio.pin import PIN_LENGTH
from cardio.readers.base import CardEvent, EventKind, Reader
from cardio.readers.errors import (
    CardRemovedError,
    NoCardError,
    NoReaderError,
    NoServiceError,
    ProtocolError,
    ReaderError,
    ReaderGoneError,
    SharingViolationError,
)
from cardio.readers.virtual import VirtualReader
from cardio.resources import user_dir
from host.api import HostError, SettlementHost
from terminal import strings
from terminal.flow import (
    MAX_AMOUNT_DIGITS,
    Command,
    Flow,
    Purpose,
    ReadCard,
    Stage,
    View,
)
from terminal.outlet_flow import ID_LENGTH, TITLES, OutletFlow, RunOutlet
from terminal.rules import Settings
from terminal.screens.base import PadScreen
from terminal.screens.confirm import ConfirmScreen
from terminal.screens.menu import MenuScreen
from terminal.screens.stages import SCREENS, StageScreen
from terminal.worker import Desk, OutletSetup, Result, deliver, execute

DEFAULT_PROFILE = "employee-new"
DEFAULT_UPGRADE_DATE = dt.date(2020, 4, 13)  # S8: in the past, so the upgrade is in force
MENU_CHOICES = {"1": Purpose.PAY, "2": Purpose.CHANGE, "3": Purpose.INFO}
OUTLET_CHOICES = {"1": Operation.RESET_PIN, "2": Operation.RESTORE_INITIAL,
                  "3": Operation.CANCEL_PIN, "4": Operation.ACTIVATE}
FLOW_TITLES = {Purpose.PAY: "pay", Purpose.CHANGE: "change", Purpose.INFO: "info"}


class CardChanged(Message):
    def __init__(self, event: CardEvent) -> None:
        super().__init__()
        self.event = event


class CardResult(Message):
    """What a worker got from the card for flow number `flow_id`."""

    def __init__(
        self, flow_id: int, result: Result, present: bool = True,
    ) -> None:
        super().__init__()
        self.flow_id = flow_id
        self.result = result
        self.present = present  # was the card still there when the worker finished


class TraceLine(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


@dataclass(frozen=True)
class Options:
    settings: Settings
    lang: str = "zh"
    virtual: bool = True
    trace_file: Path | None = None
    phones: dict[str, str] | None = None
    outlet: OutletSetup | None = None
    host: SettlementHost | None = None  # None: payments end at the card's authorisation
    terminal_id: str = "POS-0001"
    receipts: Path | None = None


class PosApp(App[None]):
    CSS_PATH = "terminal.tcss"
    TITLE = "pos-terminal"
    BINDINGS = [
        Binding("f2", "toggle_card", "card", show=False),
        Binding("f12", "toggle_trace", "APDU", show=False),
        Binding("ctrl+q", "quit", "quit", show=False),
    ]

    def __init__(self, reader: Reader, options: Options) -> None:
        super().__init__()
        self.reader = reader
        self.options = options
        self.lang = options.lang
        self.card_present = reader.card_present() if options.virtual else False
        self.show_trace = False
        self.trace_lines: deque[str] = deque(maxlen=400)
        self.flow: Flow | OutletFlow | None = None
        self.entry = ""  # what is being typed; PIN digits live here only until Enter
        self.flow_id = 0
        self._reader_lock = threading.Lock()
        self._trace_lock = threading.Lock()
        self._trace_out = (
            open(options.trace_file, "a", encoding="utf-8")  # noqa: SIM115 - closed on exit
            if options.trace_file else None
        )
        reader.trace = self._trace
        reader.subscribe(self._card_event)
        self.desk = Desk(reader, host=options.host, terminal_id=options.terminal_id,
                         receipts=options.receipts, outlet=options.outlet)

    # --- text ---------------------------------------------------------------------

    def t(self, key: str, **params: object) -> str:
        return strings.text(self.lang, key, **params)

    def key_labels(self) -> dict[str, str]:
        return {name: self.t(f"key_{name}") for name in ("confirm", "back", "cancel", "clear")}

    def hint_text(self) -> str:
        parts = [self.t("hint")]
        if self.options.virtual:
            parts.append(self.t("hint_virtual"))
        parts.append(self.t("hint_trace"))
        return "  ".join(parts)

    def title_key(self) -> str:
        return "outlet_title" if self.options.outlet else "title"

    def menu_keys(self) -> list[str]:
        if self.options.outlet:
            return list(TITLES.values())
        return ["menu_pay", "menu_change", "menu_info"]

    def flow_title_key(self) -> str:
        if isinstance(self.flow, OutletFlow):
            return TITLES[self.flow.operation]
        return FLOW_TITLES[self.flow.purpose] if self.flow else self.title_key()

    # --- life -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(MenuScreen())
        if not self.options.virtual:
            watch = getattr(self.reader, "watch", None)
            if watch is not None:
                watch()

    def on_unmount(self) -> None:
        self.reader.unsubscribe(self._card_event)
        # Let a running card command finish first; a hung reader call gets a moment only.
        locked = self._reader_lock.acquire(timeout=2.0)
        try:
            with contextlib.suppress(ReaderError):
                self.reader.close()
        finally:
            if locked:
                self._reader_lock.release()
        if self._trace_out:
            self._trace_out.close()

    @property
    def pad(self) -> PadScreen | None:
        screen = self.screen
        return screen if isinstance(screen, PadScreen) else None

    # --- the pad's keys ----------------------------------------------------------------

    def pad_key(self, name: str) -> None:
        """Every key and click, in the order typed, routed by what the terminal is doing."""
        flow = self.flow
        if flow is None:
            if self.options.outlet and name in OUTLET_CHOICES:
                self.start_outlet(OUTLET_CHOICES[name])
            elif not self.options.outlet and name in MENU_CHOICES:
                self.start_flow(MENU_CHOICES[name])
            elif name == "cancel":
                self.confirm_quit()
            return
        view = flow.view
        if view.entry:
            self._edit(name, view)
        elif view.final and name in ("confirm", "cancel"):
            self.end_flow()
        elif name == "cancel" and view.stage in (Stage.INSERT, Stage.READING):
            # Not while a PIN command or a debit is under way: its answer must be shown.
            self.cancel_flow()

    def _edit(self, name: str, view: View) -> None:
        stage = view.stage
        limit = {Stage.AMOUNT: MAX_AMOUNT_DIGITS, Stage.ID_NUMBER: ID_LENGTH}.get(stage, PIN_LENGTH)
        if name.isdigit() or (name == "X" and stage is Stage.ID_NUMBER):
            leading_zero = stage is Stage.AMOUNT and not self.entry and name == "0"
            if len(self.entry) < limit and not leading_zero:
                self._set_entry(self.entry + name)
        elif name == "back":
            self._set_entry(self.entry[:-1])
        elif name == "clear":
            self._set_entry("")
        elif name == "confirm":
            text = self.entry
            self._set_entry("")  # nothing typed is kept once it is used
            self.flow_entered(text)
        elif name == "cancel":
            self.cancel_flow()

    def _set_entry(self, text: str) -> None:
        self.entry = text
        pad = self.pad
        if pad is not None:
            pad.show_entry(text)

    # --- flows ------------------------------------------------------------------------

    def start_flow(self, purpose: Purpose) -> None:
        self.flow_id += 1
        self.entry = ""
        self.flow = Flow(purpose, self.options.settings, phone_of=self._phone_of,
                         settles=self.options.host is not None,
                         terminal_id=self.options.terminal_id)
        self._show(self.flow.view, new=True)
        self._run(self.flow.start())

    def start_outlet(self, operation: Operation) -> None:
        self.flow_id += 1
        self.entry = ""
        self.flow = OutletFlow(operation)
        self._show(self.flow.view, new=True)

    def _phone_of(self, ssn: str) -> str | None:
        return (self.options.phones or {}).get(ssn)

    def flow_entered(self, text: str) -> None:
        if self.flow is not None:
            command = self.flow.entered(text)
            self._show(self.flow.view)
            self._run(command)

    def cancel_flow(self) -> None:
        if self.flow is not None:
            self.flow.cancel()
        self.end_flow()

    def end_flow(self, notice: str | None = None) -> None:
        self.flow = None
        self.entry = ""
        self.flow_id += 1  # late answers for the old flow are dropped
        self.switch_screen(MenuScreen(notice))

    def _show(self, view: View, new: bool = False) -> None:
        cls = SCREENS[view.stage]
        current = self.screen
        same_screen = not new and type(current) is cls and isinstance(current, StageScreen)
        if same_screen and (view.entry or current.view.stage is view.stage):
            current.show(view)
            return
        self.switch_screen(cls(view))

    def _run(self, command: Command | RunOutlet | None) -> None:
        if command is None or self.flow is None:
            return
        if isinstance(command, ReadCard):
            if not self.card_present:
                return  # the flow shows "insert card"; the insert event resumes it
            self.flow.reading()
            self._show(self.flow.view)
        self._card_work(self.flow_id, command)

    @work(thread=True, group="card")
    def _card_work(self, flow_id: int, command: Command | RunOutlet) -> None:
        """Blocking reader calls, off the UI thread; the answer comes back as a message."""
        with self._reader_lock:
            result, present = execute(self.desk, command)
        self.post_message(CardResult(flow_id, result, present))

    def on_card_result(self, message: CardResult) -> None:
        flow = self.flow
        if flow is None or message.flow_id != self.flow_id:
            return
        command = deliver(flow, message.result, message.present,
                          describe=lambda error: self.t(reader_error_key(error)))
        self._show(flow.view)
        self._run(command)

    # --- the card comes and goes ---------------------------------------------------------

    def _card_event(self, event: CardEvent) -> None:
        """Called from the reader's thread (PC/SC) or ours (virtual): post, never act."""
        self.post_message(CardChanged(event))

    def on_card_changed(self, message: CardChanged) -> None:
        kind = message.event.kind
        if kind is EventKind.INSERTED:
            self.card_present = True
        elif kind in (EventKind.REMOVED, EventKind.READER_GONE, EventKind.SERVICE_LOST):
            self.card_present = False
        else:
            return
        pad = self.pad
        if pad is not None:
            pad.refresh_status()
        flow = self.flow
        if flow is None:
            return
        if self.card_present:
            self._run(flow.card_inserted())
        elif flow.removed():
            self.end_flow(self.t("removed"))

    def action_toggle_card(self) -> None:
        if isinstance(self.reader, VirtualReader):
            self._toggle_virtual_card()

    @work(thread=True, group="card")
    def _toggle_virtual_card(self) -> None:
        reader = self.reader
        if not isinstance(reader, VirtualReader):
            return
        with self._reader_lock:
            try:
                if reader.card_present():
                    reader.remove()
                else:
                    reader.insert()
            except (store.StoreError, CardFileError) as e:
                self.call_from_thread(self.notify, self.t("card_in_use", reason=str(e)),
                                      severity="error")

    # --- trace -------------------------------------------------------------------------------

    def _trace(self, text: str) -> None:
        """Masked APDU lines from the reader (any thread)."""
        if self._trace_out is not None:
            with self._trace_lock:
                self._trace_out.write(text + "\n")
                self._trace_out.flush()
        self.post_message(TraceLine(text))

    def on_trace_line(self, message: TraceLine) -> None:
        self.trace_lines.append(message.text)
        pad = self.pad
        if pad is not None:
            pad.add_trace(message.text)

    def action_toggle_trace(self) -> None:
        self.show_trace = not self.show_trace
        pad = self.pad
        if pad is not None:
            pad.set_trace_visible(self.show_trace)

    def _fatal_error(self) -> None:
        """Textual's crash report, without local variables: they may hold PIN digits."""
        from rich.traceback import Traceback

        self.bell()
        self._exit_renderables.append(Traceback(show_locals=False, width=None))
        self._close_messages_no_wait()

    def confirm_quit(self) -> None:
        def done(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(self.t("quit_question"), self.t("quit_hint")), done)


# --- command line --------------------------------------------------------------------------------


def reader_error_key(error: ReaderError) -> str:
    """The catalogue key of a reader error, so the screen speaks the terminal's language."""
    return READER_ERROR_KEYS.get(type(error), "reader_failed")


READER_ERROR_KEYS: dict[type[ReaderError], str] = {
    NoServiceError: "reader_no_service",
    NoReaderError: "reader_none",
    NoCardError: "reader_no_card",
    CardRemovedError: "reader_removed",
    ReaderGoneError: "reader_gone",
    SharingViolationError: "reader_shared",
    ProtocolError: "reader_protocol",
}


def default_card() -> Path:
    """The embedded default: a virtual employee-new card in the user data folder."""
    folder = user_dir() / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DEFAULT_PROFILE}.json"
    if not path.exists():
        profiles.new_card(DEFAULT_PROFILE, path)
    return path


def load_phones(path: Path | None) -> dict[str, str]:
    """Holders' phone numbers by social security number (S15's phone rule)."""
    if path is None:
        from cardio.resources import data_dir

        path = data_dir("holders") / "holders.json"
        if not path.exists():
            return {}
    doc = json.loads(path.read_text("utf-8"))
    return {h["ssn"]: h["phone"] for h in doc.get("holders", []) if h.get("phone")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pos-terminal", description="Pharmacy PIN pad.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--card", metavar="PATH", help="a card file (virtual card)")
    where.add_argument("--reader", metavar="NAME|INDEX", help="a PC/SC reader")
    p.add_argument("--upgrade-date", metavar="YYYY-MM-DD", type=dt.date.fromisoformat,
                   default=DEFAULT_UPGRADE_DATE, help="the system upgrade date (S8)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--trace", metavar="FILE", type=Path, help="append the APDU trace here")
    p.add_argument("--holders", metavar="FILE", type=Path, help="holders' phones (JSON)")
    outlet = p.add_argument_group("service outlet")
    outlet.add_argument("--outlet", action="store_true",
                        help="the service outlet's operations (reset, restore, cancel, activate)")
    keys = outlet.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="FILE", type=Path, help="issuer master key file (mode 600)")
    keys.add_argument("--test-key", action="store_true", help="the fixture cards' public test key")
    outlet.add_argument("--operator", default=None, help="who operates (for the outlet log)")
    outlet.add_argument("--outlet-log", metavar="FILE", type=Path, help="the outlet log")
    settle = p.add_argument_group("settlement")
    settle.add_argument("--host-db", metavar="PATH", type=Path,
                        help="the settlement host's database (default: user data folder)")
    settle.add_argument("--terminal-id", default="POS-0001", help="this terminal's id")
    settle.add_argument("--receipts", metavar="DIR", type=Path,
                        help="also write each receipt as a text file here")
    args = p.parse_args(argv)
    if args.outlet and not (args.key or args.test_key):
        p.error("--outlet needs the issuer key: --key FILE (or --test-key for test cards)")
    return args


def open_host(db: Path | None) -> SettlementHost:
    from host.cli import default_db, seed_file
    from host.sqlite import SqliteHost

    return SqliteHost(db or default_db(), seed=seed_file())


def outlet_setup(args: argparse.Namespace) -> OutletSetup | None:
    if not args.outlet:
        return None
    import getpass

    from cardio import outlet
    from cardio.cli import default_outlet_log

    key = outlet.fixture_master_key() if args.test_key else outlet.load_key(args.key)
    return OutletSetup(key, args.operator or getpass.getuser(),
                       args.outlet_log or default_outlet_log())


def build(args: argparse.Namespace) -> PosApp:
    """The app for these arguments; raises ReaderError / StoreError with a clear message."""
    settings = Settings(upgrade_date=args.upgrade_date)  # today: read at each decision
    options = Options(settings, lang=args.lang, virtual=args.reader is None,
                      trace_file=args.trace, phones=load_phones(args.holders),
                      outlet=outlet_setup(args), host=open_host(args.host_db),
                      terminal_id=args.terminal_id, receipts=args.receipts)
    reader: Reader
    if args.reader is not None:
        from cardio.readers import pcsc

        reader = pcsc.PcscReader(pcsc.resolve(args.reader))
    else:
        reader = VirtualReader(Path(args.card) if args.card else default_card())
    return PosApp(reader, options)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app = build(args)
    except (ReaderError, store.StoreError, CardFileError, OutletError, HostError, OSError,
            ValueError) as e:
        print(f"pos-terminal: {e}", file=sys.stderr)
        return 2 if isinstance(e, CardFileError) else 1
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

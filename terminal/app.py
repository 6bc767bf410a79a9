"""`pos-terminal`: the pharmacy's PIN pad for the social security card.

Data flows one way: keypad -> screen -> flow/rules -> reader -> card. Reader calls run
in worker threads and come back as messages, so the screen never freezes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer

from cardio.card import profiles, store
from cardio.card.state import CardFileError
from cardio.outlet import Operation, OutletError
from cardio.pin import PIN_LENGTH
from cardio.readers.base import CardEvent, EventKind, Reader
from cardio.readers.errors import ReaderBusyError, ReaderError
from cardio.readers.virtual import VirtualReader
from cardio.resources import private_folders, user_dir
from cardio.trace import failure
from cardio.usage import OneLineParser, one_line
from host.api import HostError, SettlementHost
from terminal import strings
from terminal.flow import (
    MAX_AMOUNT_DIGITS,
    Command,
    Flow,
    Purpose,
    ReadCard,
    Settle,
    Stage,
    View,
)
from terminal.outlet_flow import ID_LENGTH, TITLES, OutletFlow, RunOutlet
from terminal.rules import Settings
from terminal.screens.base import PadScreen
from terminal.screens.confirm import ConfirmScreen
from terminal.screens.menu import MenuScreen
from terminal.screens.stages import SCREENS, StageScreen
from terminal.worker import (
    DEFAULT_CARD_TIMEOUT,
    Desk,
    OutletSetup,
    Result,
    deliver,
    execute,
)

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "employee-new"
DEFAULT_UPGRADE_DATE = dt.date(2020, 4, 13)  # S8: in the past, so the upgrade is in force
MENU_CHOICES = {"1": Purpose.PAY, "2": Purpose.CHANGE, "3": Purpose.INFO}
OUTLET_CHOICES = {"1": Operation.RESET_PIN, "2": Operation.RESTORE_INITIAL,
                  "3": Operation.CANCEL_PIN, "4": Operation.ACTIVATE}
FLOW_TITLES = {Purpose.PAY: "pay", Purpose.CHANGE: "change", Purpose.INFO: "info"}
ENTRY_LIMITS = {Stage.AMOUNT: MAX_AMOUNT_DIGITS, Stage.ID_NUMBER: ID_LENGTH,
                Stage.CONFIRM_AMOUNT: 0}
DEFAULT_TIMEOUT = 30.0  # seconds, like a real PIN pad's prompt
NOTICE_SECONDS = 3.0  # how long 交易已取消 / 操作超时 stays before the menu
MIN_SIZE = (60, 18)  # columns, rows: the pad with its PIN field whole
TRACE_MIN_HEIGHT = 24  # rows: the pad and the APDU trace pane together


class CardChanged(Message):
    def __init__(self, event: CardEvent) -> None:
        super().__init__()
        self.event = event


class CardResult(Message):
    """What a worker got for command number `seq` of flow number `flow_id`."""

    def __init__(self, flow_id: int, seq: int, result: Result, present: bool = True) -> None:
        super().__init__()
        self.flow_id = flow_id
        self.seq = seq
        self.result = result
        self.present = present  # was the card still there when the worker finished


class CardFileProblem(Message):
    """F2 could not put the virtual card in or take it out; `key` says why."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


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
    timeout: float = DEFAULT_TIMEOUT  # the holder's time on a prompt; 0: no limit
    card_timeout: float = DEFAULT_CARD_TIMEOUT  # a card command's deadline
    quiet: bool = False  # no bell


class PosApp(App[None], inherit_bindings=False):
    """The PIN pad. Only its own keys: none of Textual's defaults (palette, Ctrl+C
    prompt, focus keys) reach a holder."""

    CSS_PATH = "terminal.tcss"
    TITLE = "pos-terminal"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("f2", "toggle_card", "card", show=False),
        Binding("f12", "toggle_trace", "APDU", show=False),
        Binding("ctrl+q", "ask_quit", "quit", show=False, priority=True),
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
        self.pending: int | None = None  # the command in flight; keys wait for its answer
        self._seq = 0
        self._timer: Timer | None = None
        self._alerted: View | None = None
        self._toggle_later = False  # F2 pressed while a command ran
        self._pulled_mid_command = False  # ... and its removal is on its way
        self._trace_lock = threading.Lock()
        self._trace_out = open_private_log(options.trace_file) if options.trace_file else None
        reader.trace = self._trace
        reader.subscribe(self._card_event)
        self.desk = Desk(reader, host=options.host, terminal_id=options.terminal_id,
                         receipts=options.receipts, outlet=options.outlet,
                         card_timeout=options.card_timeout)

    # --- text ---------------------------------------------------------------------

    def t(self, key: str, **params: object) -> str:
        return strings.text(self.lang, key, **params)

    def key_labels(self) -> dict[str, str]:
        names = ("confirm", "back", "cancel", "clear", "X")
        return {name: self.t(f"key_{name}") for name in names}

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
        self._fit(self.size.width, self.size.height)
        self.push_screen(MenuScreen())
        if not self.options.virtual:
            watch = getattr(self.reader, "watch", None)
            if watch is not None:
                watch()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        """Under 60x18 the pad would be cut off: the screens say so instead. The APDU
        trace takes 9 rows: under 24 it would push the PIN field off, so it waits."""
        self.set_class(width < MIN_SIZE[0] or height < MIN_SIZE[1], "-small")
        pad = self.pad
        if pad is not None:
            pad.set_trace_visible(self.show_trace and height >= TRACE_MIN_HEIGHT)

    @property
    def trace_shown(self) -> bool:
        return self.show_trace and self.size.height >= TRACE_MIN_HEIGHT

    def on_unmount(self) -> None:
        self.reader.unsubscribe(self._card_event)
        # Let a running card command finish first; a hung reader call gets a moment only.
        with contextlib.suppress(ReaderError):
            self.desk.slot.call(self.reader.close, wait=2.0)
        if self._trace_out:
            self._trace_out.close()

    @property
    def pad(self) -> PadScreen | None:
        """The pad's screen, also while a question is asked over it."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, PadScreen):
                return screen
        return None

    # --- the pad's keys ----------------------------------------------------------------

    def pad_key(self, name: str) -> None:
        """Every key and click, in the order typed, routed by what the terminal is doing."""
        if self.pending is not None:
            return  # a card or host command runs: its answer is shown first, keys wait
        if self.has_class("-small"):
            return  # the pad is not shown: nothing is typed blind
        flow = self.flow
        if flow is None:
            self._menu_key(name)
            return
        view = flow.view
        self._arm_timer()  # the holder is active: the clock starts again
        if view.accepts:
            self._edit(name, view)
        elif view.final:
            if name == "confirm" or (name == "cancel" and not view.keep):
                self.end_flow(self.t(view.lines[0].key) if view.brief else None)
        elif name == "cancel" and view.stage is Stage.INSERT:
            self.cancel_flow()

    def _menu_key(self, name: str) -> None:
        choices = OUTLET_CHOICES if self.options.outlet else MENU_CHOICES
        if name == "cancel":
            self.confirm_quit()
        elif name in choices:
            if self.desk.slot.busy:  # a command that never answered still holds the reader
                self.bell_once()
                self._menu(self.t("reader_busy"))
                return
            choice = choices[name]
            if isinstance(choice, Operation):
                self.start_outlet(choice)
            else:
                self.start_flow(choice)

    def _edit(self, name: str, view: View) -> None:
        stage = view.stage
        limit = ENTRY_LIMITS.get(stage, PIN_LENGTH)
        # X ends some ID numbers: it is taken only as their last character.
        x_ok = name == "X" and stage is Stage.ID_NUMBER and len(self.entry) == ID_LENGTH - 1
        if name.isdigit() or x_ok:
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
        """Escape in a transaction: nothing more is sent, and the screen says so."""
        self._end_briefly("cancelled")

    def _end_briefly(self, key: str) -> None:
        """A notice (交易已取消, 操作超时) that swallows the digits a holder may still be
        typing, then the menu by itself a moment later (or at once with 确认)."""
        flow = self.flow
        if flow is None:
            return
        flow.cancel()
        flow.ended(key)
        self._show(flow.view)

    def end_flow(self, notice: str | None = None) -> None:
        if self.flow is not None:
            self.flow.cancel()  # drops any PIN digits it still holds
        self.flow = None
        self.entry = ""
        self.pending = None
        if self._toggle_later:
            self._toggle_later = False
            self._toggle_virtual_card()
        self.flow_id += 1  # late answers for the old flow are dropped
        self._menu(notice)

    def _menu(self, notice: str | None) -> None:
        self._stop_timer()
        self._switch(MenuScreen(notice))

    def _switch(self, screen: PadScreen) -> None:
        """Replace the pad's screen; a question asked over it is dropped with it."""
        while len(self.screen_stack) > 1 and isinstance(self.screen, ModalScreen):
            self.pop_screen()
        self.switch_screen(screen)

    def _show(self, view: View, new: bool = False) -> None:
        if not view.accepts:
            self.entry = ""  # digits typed for a prompt that is gone are dropped
        if view.alert and view is not self._alerted:
            self._alerted = view
            self.bell_once()
        self._arm_timer()
        cls = SCREENS[view.stage]
        current = self.screen
        same_screen = not new and type(current) is cls and isinstance(current, StageScreen)
        if same_screen and (view.entry or current.view.stage is view.stage):
            current.show(view)
            return
        self._switch(cls(view))

    def bell_once(self) -> None:
        """A wrong PIN, a lock, a refusal (--quiet: silent)."""
        if not self.options.quiet:
            self.bell()

    # --- the holder's time ---------------------------------------------------------------

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _arm_timer(self) -> None:
        """A prompt, an entry or a result waits --timeout seconds for the holder, then the
        terminal goes back to idle; nothing is sent. Never while a command runs."""
        self._stop_timer()
        flow = self.flow
        if flow is None or self.pending is not None:
            return
        if not self.options.timeout and not flow.view.brief:
            return
        timeout = self.options.timeout
        delay = min(NOTICE_SECONDS, timeout or NOTICE_SECONDS) if flow.view.brief else timeout
        if flow.view.timed or flow.view.brief:
            flow_id = self.flow_id
            self._timer = self.set_timer(delay, lambda: self._timed_out(flow_id))

    def _timed_out(self, flow_id: int) -> None:
        flow = self.flow
        if flow_id != self.flow_id or flow is None or self.pending is not None:
            return
        if flow.view.brief:  # the notice has been read: idle, still saying it
            self.end_flow(self.t(flow.view.lines[0].key))
        elif flow.view.final:
            self.end_flow(self.t("timed_out"))
        else:
            self._end_briefly("timed_out")

    # --- card and host commands -------------------------------------------------------------

    def _run(self, command: Command | RunOutlet | None) -> None:
        flow = self.flow
        if flow is None:
            return
        if command is None or (not self.card_present and not isinstance(command, Settle)):
            if not self.card_present and flow.removed():  # pulled while it was asked
                self._show(flow.view)
            return
        if isinstance(command, ReadCard):
            flow.reading()
            self._show(flow.view)
        self._seq += 1
        self.pending = self._seq
        self._stop_timer()
        self._card_work(self.flow_id, self._seq, command)

    @work(thread=True, group="card")
    def _card_work(self, flow_id: int, seq: int, command: Command | RunOutlet) -> None:
        """Blocking reader and host calls, off the UI thread; the answer comes back as a
        message. A card call has a deadline (--card-timeout): see CardSlot."""
        result, present = execute(self.desk, command)
        self.post_message(CardResult(flow_id, seq, result, present))

    def on_card_result(self, message: CardResult) -> None:
        flow = self.flow
        if flow is None or message.flow_id != self.flow_id or message.seq != self.pending:
            return  # an abandoned command's late answer
        self.pending = None
        if self._toggle_later:
            self._toggle_later = False
            self._pulled_mid_command = self.card_present
            self._toggle_virtual_card()
        present = message.present and self.card_present
        command = deliver(flow, message.result, present)
        self._show(flow.view)
        self._run(command)

    # --- the card comes and goes ---------------------------------------------------------

    def _card_event(self, event: CardEvent) -> None:
        """Called from the reader's thread (PC/SC) or ours (virtual): post, never act."""
        self.post_message(CardChanged(event))

    def on_card_changed(self, message: CardChanged) -> None:
        kind = message.event.kind
        pulled_mid_command, self._pulled_mid_command = self._pulled_mid_command, False
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
        if flow is None or self.pending is not None:
            return  # a command in flight: its answer comes first, then the removal counts
        if self.card_present:
            self._run(flow.card_inserted())
        elif flow.view.final and not flow.view.keep and not pulled_mid_command:
            self.end_flow()  # the holder took the card: back to idle
        elif flow.view.final:
            self._show(flow.view)  # what the command did stays, without 请取回卡片
        elif flow.removed():
            self._show(flow.view)

    def action_toggle_card(self) -> None:
        """F2. A virtual card cannot leave in the middle of an APDU: during a card command
        the pull waits for its answer, as the command's effect must be shown."""
        if not isinstance(self.reader, VirtualReader):
            return
        if self.pending is not None:
            self._toggle_later = True
        else:
            self._toggle_virtual_card()

    @work(thread=True, group="card")
    def _toggle_virtual_card(self) -> None:
        """F2: never a crash, whatever the card file or its folder has become."""
        reader = self.reader
        if not isinstance(reader, VirtualReader):
            return
        try:
            self.desk.slot.call(
                reader.remove if reader.card_present() else reader.insert, wait=2.0)
        except store.CardInUseError:
            self.post_message(CardFileProblem("card_in_use"))
        except ReaderBusyError:
            self.post_message(CardFileProblem("reader_busy"))
        except Exception as e:  # a damaged, missing or unreachable card file: rule 1
            log.warning("the virtual card could not be inserted: %s", failure(e))
            self.post_message(CardFileProblem("card_unreadable"))

    def on_card_file_problem(self, message: CardFileProblem) -> None:
        self.bell_once()
        flow = self.flow
        if flow is None:
            self._menu(self.t(message.key))
        elif self.pending is None and flow.view.stage is Stage.INSERT:
            flow.card_failed(message.key)
            self._show(flow.view)
        else:
            self.notify(self.t(message.key), severity="error")

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
            pad.set_trace_visible(self.trace_shown)

    def _fatal_error(self) -> None:
        """Textual's crash report, without local variables: they may hold PIN digits."""
        from rich.traceback import Traceback

        self.bell()
        self._exit_renderables.append(Traceback(show_locals=False, width=None))
        self._close_messages_no_wait()

    def action_ask_quit(self) -> None:
        """Ctrl+Q: asked in every state, never while a card or host command runs. Asked
        after the screen change a key just before it made, which would drop it."""
        self.call_after_refresh(self._ask_quit_now)

    def _ask_quit_now(self) -> None:
        if self.pending is None and not isinstance(self.screen, ModalScreen):
            self.confirm_quit()

    def confirm_quit(self) -> None:
        def done(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(self.t("quit_question"), self.t("quit_hint")), done)


# --- command line --------------------------------------------------------------------------------


def default_card() -> Path:
    """The embedded default: a virtual employee-new card in the user data folder."""
    folder = user_dir() / "cards"
    private_folders(folder)
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
    text = read_small_file(path, "holders file")
    try:
        doc = json.loads(text)
        holders = doc.get("holders") if isinstance(doc, dict) else None
        if not isinstance(holders, list) or not all(isinstance(h, dict) for h in holders):
            raise ValueError
        phones = {h["ssn"]: h["phone"] for h in holders if h.get("phone") is not None}
        if not all(isinstance(v, str) for pair in phones.items() for v in pair):
            raise ValueError
        return phones
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"{path}: not a holders file (JSON with a list 'holders' of "
                         "objects with text 'ssn' and 'phone'); fix it or leave --holders out"
                         ) from None


MAX_HOLDERS_FILE = 1 << 20


def read_small_file(path: Path, what: str) -> str:
    """A small text file given on the command line: never a fifo that would hang us, a
    folder or a device; ValueError with one sentence otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({e.strerror}); check the {what}'s path"
                         ) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file; give the {what}")
        raw = f.read(MAX_HOLDERS_FILE + 1)
    if len(raw) > MAX_HOLDERS_FILE:
        raise ValueError(f"{path} is too large to be a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; give the {what}") from None


def open_private_log(path: Path) -> TextIO:
    """A log or trace: appended, 0600 (it names cards), a regular file, never through a
    symlink; ValueError with one sentence when it cannot be."""
    try:
        private_folders(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0o600)
    except OSError as e:
        reason = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise ValueError(f"{path} cannot be written ({reason}); give a file in a folder "
                         "you can write") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file; give a file to append to")
        os.fchmod(fd, 0o600)  # an older one may have been made wider
        return os.fdopen(fd, "a", encoding="utf-8")
    except OSError as e:
        os.close(fd)
        raise ValueError(f"{path} cannot be made private ({e.strerror}); give a file "
                         "of your own") from None
    except ValueError:
        os.close(fd)
        raise


def start_log(path: Path) -> None:
    """Where the terminal's own log goes (host, outlet, card file problems): Textual owns
    the screen and stderr while it runs."""
    handler = logging.StreamHandler(open_private_log(path))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def receipts_folder(text: str) -> Path:
    """--receipts: a folder we can write into, checked before the first payment."""
    if not text:
        raise ValueError("the --receipts folder is empty; give a folder name")
    path = Path(text)
    try:
        private_folders(path)
    except OSError as e:
        raise ValueError(f"{path} cannot be made a receipts folder ({e.strerror}); give "
                         "a folder you can write") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path} is not a folder you can write; give another --receipts")
    return path


def terminal_id(text: str) -> str:
    """--terminal-id: printed on receipts and stored with every debit."""
    if not (0 < len(text) <= 32 and text.isascii() and all(c.isalnum() or c in "-_"
                                                           for c in text)):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a terminal id: 1 to 32 letters, digits, '-' or '_'")
    return text


def seconds(text: str) -> float:
    """A number of seconds, 0 or more (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"seconds must be from 0 to 86400, not {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="pos-terminal", description="Pharmacy PIN pad.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--card", metavar="PATH", help="a card file (virtual card)")
    where.add_argument("--reader", metavar="NAME|INDEX", help="a PC/SC reader")
    p.add_argument("--upgrade-date", metavar="YYYY-MM-DD", type=dt.date.fromisoformat,
                   default=DEFAULT_UPGRADE_DATE, help="the system upgrade date (S8)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--trace", metavar="FILE", type=Path, help="append the APDU trace here")
    p.add_argument("--holders", metavar="FILE", type=Path, help="holders' phones (JSON)")
    p.add_argument("--timeout", metavar="SECONDS", type=seconds, default=DEFAULT_TIMEOUT,
                   help="how long a prompt or result waits for the holder before going back "
                        f"to idle (default {DEFAULT_TIMEOUT:g}; 0: no limit, for demos)")
    p.add_argument("--card-timeout", metavar="SECONDS", type=seconds,
                   default=DEFAULT_CARD_TIMEOUT,
                   help="how long a card command may take before the card is reported as "
                        f"not responding (default {DEFAULT_CARD_TIMEOUT:g}; 0: no limit)")
    p.add_argument("--quiet", action="store_true", help="no bell on errors")
    p.add_argument("--log", metavar="FILE", type=Path,
                   help="the terminal's own log (default: pos-terminal.log in the user data "
                        "folder); never a PIN")
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
    settle.add_argument("--terminal-id", default="POS-0001", type=terminal_id,
                        help="this terminal's id (1 to 32 letters, digits, '-', '_')")
    settle.add_argument("--receipts", metavar="DIR",
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
    log = args.outlet_log or default_outlet_log()
    outlet.OutletLog(log).check_writable()  # before the first holder, not after
    return OutletSetup(key, args.operator or getpass.getuser(), log)


def build(args: argparse.Namespace) -> PosApp:
    """The app for these arguments; raises ReaderError / StoreError with a clear message."""
    settings = Settings(upgrade_date=args.upgrade_date)  # today: read at each decision
    options = Options(settings, lang=args.lang, virtual=args.reader is None,
                      trace_file=args.trace, phones=load_phones(args.holders),
                      outlet=outlet_setup(args), host=open_host(args.host_db),
                      terminal_id=args.terminal_id,
                      receipts=receipts_folder(args.receipts) if args.receipts is not None
                      else None,
                      timeout=args.timeout, card_timeout=args.card_timeout,
                      quiet=args.quiet)
    reader: Reader
    if args.reader is not None:
        from cardio.readers import pcsc

        reader = pcsc.PcscReader(pcsc.resolve(args.reader))
    else:
        reader = VirtualReader(store.card_path(args.card) if args.card is not None
                               else default_card())
    return PosApp(reader, options)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app = build(args)
        start_log(args.log or user_dir() / "pos-terminal.log")
    except (ReaderError, store.StoreError, CardFileError, OutletError, HostError,
            ValueError) as e:
        print(f"pos-terminal: {one_line(str(e))}", file=sys.stderr)
        bad_input = isinstance(e, (CardFileError, ValueError, store.CardPathError))
        return 2 if bad_input else 1  # as cardio: 2 for what was given, 1 for the rest
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"pos-terminal: {where}{e.strerror or e}; check the path and its permissions",
              file=sys.stderr)
        return 1
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pharmacy's PIN pad for the social security card: the Textual app (`terminal/cli.py`
starts it).

Data flows one way: keypad -> screen -> flow/rules -> reader -> card. Reader calls run
in worker threads and come back as messages, so the screen never freezes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen

from cardio import api_codes
from cardio.api_codes import ApiCode
from cardio.readers.base import EventKind
from cardio.readers.errors import ReaderBusyError, ReaderError
from cardio.resources import open_private_log
from cardio.trace import api_line, failure
from terminal import strings
from terminal.equipment import DEFAULT_CARD_TIMEOUT, Equipment
from terminal.messages import CardChanged, CardFileProblem, CardResult, TraceLine
from terminal.screens.base import PadScreen
from terminal.screens.menu import MenuScreen
from terminal.screens.pos import Chrome

# The first screen is the menu: what only a transaction needs (the flows, the card
# protocol, the outlet, the worker, the stage screens) is imported once it is drawn.
if TYPE_CHECKING:
    from asyncio import AbstractEventLoop
    from pathlib import Path

    from textual import events
    from textual.app import AutopilotCallbackType
    from textual.timer import Timer

    from cardio.keysource import KeySource
    from cardio.outlet import Operation
    from cardio.readers.base import CardEvent, Reader
    from terminal.equipment import OutletSetup
    from terminal.flow.base import CardFlow
    from terminal.flow.clerk import Clerk
    from terminal.flow.commands import Command
    from terminal.flow.pharmacy import PharmacyFlow, Purpose
    from terminal.flow.view import View
    from terminal.rules import Settings
    from terminal.screens.pos import Pos
    from terminal.settlement import PlatformLink

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds, like a real PIN pad's prompt
NOTICE_SECONDS = 3.0  # how long 交易已取消 / 操作超时 stays before the menu
MIN_SIZE = (60, 18)  # columns, rows: the pad with its PIN field whole
TRACE_MIN_HEIGHT = 24  # rows: the pad and the APDU trace pane together
# Seconds from mounting to importing what only a transaction needs: the menu's frames
# are done by then (tens of ms), and a person has not yet pressed a key.
IMPORT_DELAY = 0.25


@dataclass(frozen=True)
class Options:
    settings: Settings
    lang: str = "zh"
    trace_file: Path | None = None
    phones: dict[str, str] | None = None
    outlet: OutletSetup | None = None
    host: PlatformLink | None = None  # None: payments end at the card's authorisation
    keys: KeySource | None = None  # the PSAM each card is checked with; None: no check
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
        # A virtual slot knows now; a PC/SC reader says so through watch()'s first event.
        self.card_present = reader.card_present() if reader.can_toggle else False
        self.show_trace = False
        self.trace_lines: deque[str] = deque(maxlen=400)
        self.flow: CardFlow | None = None
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
        self.equipment = Equipment(
            reader,
            host=options.host,
            keys=options.keys,
            terminal_id=options.terminal_id,
            receipts=options.receipts,
            outlet=options.outlet,
            card_timeout=options.card_timeout,
        )
        menu: tuple[str, ...] = ("menu_pay", "menu_change", "menu_info")
        if options.host is not None and not options.outlet:  # the clerk's: 4 and 5
            menu = (*menu, "menu_setl_cancel", "menu_day_end")
        if options.outlet:
            from terminal.flow.outlet import TITLES as OUTLET_TITLES

            menu = tuple(OUTLET_TITLES.values())
        self.chrome = Chrome(
            title="outlet_title" if options.outlet else "title",
            menu=menu,
            hint=(
                ("hint", "hint_virtual", "hint_trace")
                if reader.can_toggle
                else ("hint", "hint_trace")
            ),
            with_x=options.outlet is not None,
        )

    # --- text ---------------------------------------------------------------------

    def t(self, key: str, **params: object) -> str:
        return strings.text(self.lang, key, **params)

    # --- life -----------------------------------------------------------------------

    def run(
        self,
        *,
        headless: bool = False,
        inline: bool = False,
        inline_no_clear: bool = False,
        mouse: bool = True,
        size: tuple[int, int] | None = None,
        auto_pilot: AutopilotCallbackType | None = None,
        loop: AbstractEventLoop | None = None,
    ) -> None:
        """Textual's run, with what start-up made frozen while the app runs: the modules,
        classes and tables just imported live as long as the program, so the garbage
        collector need not go through them again (gc.freeze). Without it, the first full
        collection falls on building the first screen and goes through them all, about
        30 ms here (bench/bench_terminal.py). Unfrozen when the app ends, so a process
        that runs apps one after another (the snapshot tests) collects as before."""
        gc.freeze()
        try:
            return super().run(
                headless=headless,
                inline=inline,
                inline_no_clear=inline_no_clear,
                mouse=mouse,
                size=size,
                auto_pilot=auto_pilot,
                loop=loop,
            )
        finally:
            gc.unfreeze()

    def on_mount(self) -> None:
        self._fit(self.size.width, self.size.height)
        self.push_screen(MenuScreen())
        self.reader.watch()
        self.set_timer(IMPORT_DELAY, self._import_the_rest)
        if self.options.host is not None:
            self._recover()

    @work(thread=True, group="host")
    def _recover(self) -> None:
        """Settlements an earlier run sent without seeing their answer are reversed first
        (terminal/settlement.py); the host may be away: each payment tries again."""
        link = self.options.host
        if link is None:
            return
        try:
            left = link.recover()
        except Exception as e:  # never a crash at start: the next payment tries again
            log.warning("pending reversals not sent yet: %s", failure(e))
            return
        if left:
            log.warning("%d pending reversal(s) not confirmed yet; retried at each payment", left)

    def _import_the_rest(self) -> None:
        """What a transaction needs (the flows, the worker with the card protocol and the
        outlet, the stage screens, the quit question), imported once the menu is drawn
        and still, so that neither the menu nor, usually, the first key waits for it
        (each use imports what it needs itself, so an early key works all the same)."""
        import terminal.screens.confirm
        import terminal.screens.stages
        import terminal.worker  # noqa: F401

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
            self.equipment.slot.call(self.reader.close, wait=2.0)
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
        from terminal.flow.view import Stage

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
        outlet = self.options.outlet is not None
        choices = menu_choices(outlet=outlet, clerk=self.options.host is not None and not outlet)
        if name == "cancel":
            self.confirm_quit()
        elif name in choices:
            from terminal.flow.clerk import CancelFlow, Clerk, DayEndFlow

            choice = choices[name]
            if isinstance(choice, Clerk):  # the host only: the reader plays no part
                self.start_flow(
                    CancelFlow()
                    if choice is Clerk.CANCEL
                    else DayEndFlow(terminal_id=self.options.terminal_id)
                )
                return
            if self.equipment.slot.busy:  # a command that never answered still holds the reader
                self.bell_once()
                self._menu(self.t("reader_busy"))
                return
            from cardio.outlet import Operation
            from terminal.flow.outlet import OutletFlow

            self.start_flow(
                OutletFlow(choice) if isinstance(choice, Operation) else self._pharmacy_flow(choice)
            )

    def _edit(self, name: str, view: View) -> None:
        from terminal.flow.view import typed

        if name.isdigit() or name == "X":
            text = typed(view.stage, self.entry, name)  # the stage's own input rules
            if text != self.entry:
                self._set_entry(text)
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

    def _pharmacy_flow(self, purpose: Purpose) -> PharmacyFlow:
        from terminal.flow.pharmacy import PharmacyFlow

        return PharmacyFlow(
            purpose,
            self.options.settings,
            phone_of=self._phone_of,
            settles=self.options.host is not None,
            terminal_id=self.options.terminal_id,
        )

    def start_flow(self, flow: CardFlow) -> None:
        self.flow_id += 1
        self.entry = ""
        self.flow = flow
        self._show(flow, new=True)
        self._run(flow.start())

    def _phone_of(self, ssn: str) -> str | None:
        return (self.options.phones or {}).get(ssn)

    def flow_entered(self, text: str) -> None:
        if self.flow is not None:
            command = self.flow.entered(text)
            self._show(self.flow)
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
        from terminal.flow.view import PIN_STAGES

        if flow.view.stage in PIN_STAGES:  # the reader API's -31 / -32 (docs/card.md §8)
            code = ApiCode.PIN_CANCELLED if key == "cancelled" else ApiCode.PIN_TIMEOUT
            self._trace("# api " + api_codes.describe(code))
        flow.cancel()
        flow.ended(key)
        self._show(flow)

    def end_flow(self, notice: str | None = None) -> None:
        if self.flow is not None:
            self.flow.cancel()  # drops any PIN digits it still holds
        self.flow = None
        self.entry = ""
        self.pending = None
        if self._toggle_later:
            self._toggle_later = False
            self._toggle_card()
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

    def _show(self, flow: CardFlow, new: bool = False) -> None:
        from terminal.screens.stages import SCREENS, StageScreen

        view = flow.view
        if not view.accepts:
            self.entry = ""  # digits typed for a prompt that is gone are dropped
        if view.alert and view is not self._alerted:
            self._alerted = view
            self.bell_once()
        self._arm_timer()
        cls = SCREENS[view.stage]
        current = self.screen
        if (
            not new
            and type(current) is cls
            and isinstance(current, StageScreen)
            and (view.entry or current.view.stage is view.stage)
        ):
            current.show(view)
            return
        self._switch(cls(view, flow.title))

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

    def _run(self, command: Command | None) -> None:
        from terminal.flow.clerk import CLERK_COMMANDS
        from terminal.flow.commands import ReadCard, Settle

        flow = self.flow
        if flow is None:
            return
        needs_card = not isinstance(command, (Settle, *CLERK_COMMANDS))
        if command is None or (not self.card_present and needs_card):
            if not self.card_present and flow.removed():  # pulled while it was asked
                self._show(flow)
            return
        if isinstance(command, ReadCard):
            flow.reading()
            self._show(flow)
        self._seq += 1
        self.pending = self._seq
        self._stop_timer()
        self._card_work(self.flow_id, self._seq, command)

    @work(thread=True, group="card")
    def _card_work(self, flow_id: int, seq: int, command: Command) -> None:
        """Blocking reader and host calls, off the UI thread; the answer comes back as a
        message. A card call has a deadline (--card-timeout): see CardSlot."""
        from terminal.worker import execute

        result, present = execute(self.equipment, command)
        line = api_line(result)  # a failure's reader API number (docs/card.md §8)
        if line is not None:
            self._trace(line)
        self.post_message(CardResult(flow_id, seq, result, present))

    def on_card_result(self, message: CardResult) -> None:
        flow = self.flow
        if flow is None or message.flow_id != self.flow_id or message.seq != self.pending:
            return  # an abandoned command's late answer
        self.pending = None
        if self._toggle_later:
            self._toggle_later = False
            self._pulled_mid_command = self.card_present
            self._toggle_card()
        from terminal.worker import deliver

        present = message.present and self.card_present
        command = deliver(flow, message.result, present)
        self._show(flow)
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
            self._show(flow)  # what the command did stays, without 请取回卡片
        elif flow.removed():
            self._show(flow)

    def action_toggle_card(self) -> None:
        """F2. A virtual card cannot leave in the middle of an APDU: during a card command
        the pull waits for its answer, as the command's effect must be shown."""
        if not self.reader.can_toggle:
            return
        if self.pending is not None:
            self._toggle_later = True
        else:
            self._toggle_card()

    @work(thread=True, group="card")
    def _toggle_card(self) -> None:
        """F2: never a crash, whatever the card file or its folder has become."""
        from cardio.card import store

        try:
            self.equipment.slot.call(self.reader.toggle, wait=2.0)
        except store.CardInUseError:
            self.post_message(CardFileProblem("card_in_use"))
        except ReaderBusyError:
            self.post_message(CardFileProblem("reader_busy"))
        except Exception as e:  # a damaged, missing or unreachable card file: rule 1
            log.warning("the virtual card could not be inserted: %s", failure(e))
            self.post_message(CardFileProblem("card_unreadable"))

    def on_card_file_problem(self, message: CardFileProblem) -> None:
        from terminal.flow.view import Stage

        self.bell_once()
        flow = self.flow
        if flow is None:
            self._menu(self.t(message.key))
        elif self.pending is None and flow.view.stage is Stage.INSERT:
            flow.card_failed(message.key)
            self._show(flow)
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
        from terminal.screens.confirm import ConfirmScreen

        def done(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(self.t("quit_question"), self.t("quit_hint")), done)


def menu_choices(*, outlet: bool, clerk: bool = False) -> dict[str, Purpose | Operation | Clerk]:
    """What each key of the menu starts (imported at the first key, not for the menu);
    `clerk`: the pharmacy's 4 and 5, which need a host."""
    if outlet:
        from cardio.outlet import Operation

        return {
            "1": Operation.RESET_PIN,
            "2": Operation.RESTORE_INITIAL,
            "3": Operation.CANCEL_PIN,
            "4": Operation.ACTIVATE,
            "5": Operation.UNBLOCK,
        }
    from terminal.flow.clerk import Clerk
    from terminal.flow.pharmacy import Purpose

    choices: dict[str, Purpose | Operation | Clerk] = {
        "1": Purpose.PAY,
        "2": Purpose.CHANGE,
        "3": Purpose.INFO,
    }
    if clerk:
        choices.update({"4": Clerk.CANCEL, "5": Clerk.DAY_END})
    return choices


_SCREENS_SEE: type[Pos] = PosApp  # mypy checks that the app gives its screens all of Pos

"""Textual's Pilot, waiting for the app instead of for the clock, and not drawing frames
that nobody sees.

Textual's Pilot waits for "idle" after every key and every pause (textual/_wait.py): it
sleeps in 20 ms windows until one window used under 1 ms of the process's CPU, for up to
a second. A key costs at least 40 ms that way, and more while the screen repaints, so a
Pilot test spent half its time asleep. Here "idle" is checked, not guessed: every message
pump of the app (the app, its screens, their widgets) waits on its empty queue, and the
screen has nothing left to lay out or paint; after a timed pause as well. Card workers
run in threads: the tests' `settle` waits for them.

Waiting less shows the PIN pad's key flash (terminal/widgets/keypad.py: a key stays lit
0.2 s; a lit Button ignores clicks): a screenshot taken at once shows the last key lit,
and a second click on a key within 0.2 s is dropped. `lights_out` waits for the flash to
end; `snap_compare` (conftest.py) takes every screenshot after it and Pilot.click waits
for it on the key it clicks, as a person would. So snapshots no longer depend on how
slowly the machine runs.

A headless app (run_test, snapshots) still renders every frame, 60 a second at most,
and App._display then throws it away: that was a third of a Pilot test's CPU. Here the
frame is not drawn; the layout is still computed, and the screen is rendered whenever a
test reads it (terminal_helpers.screen_text, the snapshots' export_screenshot).

Set SHEBAO_TEXTUAL_PILOT=1 to run with Textual's own waits and frames.
"""

from __future__ import annotations

import asyncio
import os
from time import monotonic

import textual
import textual.app
import textual.pilot
from textual._context import active_app
from textual._wait import wait_for_idle as textual_wait_for_idle
from textual.message_pump import MessagePump
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget

# The private names used below are those of this release (pyproject.toml pins it).
TEXTUAL_VERSION = "8.2.8"
FLASH_WAIT = 1.0  # longest a key may stay lit (it is 0.2 s)
SPINS = 50  # event loop turns before waiting 1 ms between looks


def _working(pump: MessagePump) -> bool:
    """Has the pump something to handle, or is it handling a message (or starting)?"""
    if pump._next_callbacks:
        return True
    queue = pump.__dict__.get("_message_queue")
    if queue is not None and queue.values:
        return True
    if pump._running:  # idle only while parked on its empty queue
        return queue is None or not queue.ready_event._waiters
    return pump._task is not None and not pump._task.done()  # composing, mounting


def _screen_outdated(screen: Screen) -> bool:
    return bool(
        screen._layout_required
        or screen._scroll_required
        or screen._repaint_required
        or screen._recompose_required
        or screen._dirty_widgets
    )


async def wait_for_idle(min_sleep: float = 0.0, max_sleep: float = 1.0) -> None:
    """Signature of textual._wait.wait_for_idle; returns when the app has nothing to do
    (or after max_sleep, as Textual's does)."""
    try:
        app = active_app.get()
    except LookupError:
        app = None
    if app is None or app._driver is None or not app.is_headless:
        await textual_wait_for_idle(min_sleep, max_sleep)
        return
    deadline = monotonic() + max_sleep
    spins = 0
    while monotonic() < deadline:
        # A handler awaiting something other than the app (a timer, say) is not spun for.
        await asyncio.sleep(0 if spins < SPINS else 0.001)
        if app._exception is not None or app._exit:
            return
        if app._batch_count or any(_working(pump) for pump in (app, *app._registry)):
            spins += 1
            continue
        try:
            screen = app.screen
        except Exception:  # no screen yet, or the app is closing
            return
        if _screen_outdated(screen):
            screen._on_timer_update()  # what its 60 Hz timer would do next, as Pilot.pause does
            continue
        return


async def _wait_for_screen(self: Pilot, timeout: float = 30.0) -> bool:
    """Pilot._wait_for_screen (the app and the screen's widgets have handled what was
    posted to them), by wait_for_idle: without a callback per widget (each costs an
    inspect.signature)."""
    await wait_for_idle(0, timeout)
    return True


async def lights_out(pilot: Pilot, widget: Widget | None = None) -> None:
    """Until no key of the pad (or `widget`) is lit, on any screen of the stack (a
    question shows the pad under it)."""
    app = pilot.app
    deadline = monotonic() + FLASH_WAIT

    def lit() -> bool:
        if widget is not None:
            return widget.has_class("-active")
        return any(screen.query(".-active") for screen in app.screen_stack)

    while lit() and monotonic() < deadline:
        await pilot.pause(0.02)


_textual_pause = Pilot.pause
_textual_click = Pilot.click


async def _pause(self: Pilot, delay: float | None = None) -> None:
    """Pilot.pause; after a timed pause too, the app has handled what came meanwhile (a
    worker's answer, say), so that a test polling in small pauses sees a finished screen."""
    await _textual_pause(self, delay)
    if delay is not None:
        await wait_for_idle(0)


async def _click(
    self: Pilot, widget: Widget | type[Widget] | str | None = None, *args: object, **kwargs: object
) -> bool:
    """Pilot.click, but never on a key that is still lit from the last click or key."""
    target = None
    if isinstance(widget, Widget):
        target = widget
    elif widget is not None:
        try:
            target = self.app.screen.query_one(widget)  # type: ignore[arg-type]
        except Exception:
            target = None  # Pilot.click says what is wrong
    if target is not None:
        await lights_out(self, target)
    return await _textual_click(self, widget, *args, **kwargs)  # type: ignore[arg-type]


_textual_compositor_refresh = Screen._compositor_refresh


def _compositor_refresh(self: Screen) -> None:
    """Screen._compositor_refresh, less the frame that App._display drops when headless."""
    app = self.app
    if not app.is_headless or app.is_inline or self is not app.screen:
        _textual_compositor_refresh(self)
        return
    self._compositor._dirty_regions.clear()  # as rendering them would
    self._dirty_widgets.clear()
    app._update_mouse_over(self)


def install() -> str | None:
    """Use these waits and frames for every Pilot; None, or why Textual's are kept."""
    if os.environ.get("SHEBAO_TEXTUAL_PILOT") == "1":
        return "SHEBAO_TEXTUAL_PILOT=1"
    if textual.__version__ != TEXTUAL_VERSION:
        return f"textual {textual.__version__} is not {TEXTUAL_VERSION}"
    textual.app.wait_for_idle = wait_for_idle  # App._press_keys, for Pilot.press
    textual.pilot.wait_for_idle = wait_for_idle  # Pilot.pause and the animation waits
    Screen._compositor_refresh = _compositor_refresh  # type: ignore[method-assign]
    Pilot._wait_for_screen = _wait_for_screen  # type: ignore[method-assign]
    Pilot.pause = _pause  # type: ignore[method-assign]
    Pilot.click = _click  # type: ignore[method-assign]
    return None

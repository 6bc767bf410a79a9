"""The terminal's string catalogue: zh and en say the same things, and every key the
code asks for exists (a missing key would be a KeyError in front of a holder)."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from cardio.model import LifeCycle, PinState
from cardio.outlet import Operation
from cardio.pin_policy import Violation
from terminal import strings
from terminal.flow.outlet import TITLES
from terminal.worker import READER_ERROR_KEYS

TERMINAL = Path(__file__).resolve().parent.parent / "terminal"
# Calls whose string arguments are catalogue keys.
KEY_CALLS = {
    "line",
    "t",
    "text",
    "card_failed",
    "ended",
    "_result",
    "_end_briefly",
    "settle_card_failed",
}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_zh_and_en_have_the_same_keys_and_placeholders() -> None:
    assert set(strings.ZH) == set(strings.EN)
    for key in strings.ZH:
        assert placeholders(strings.ZH[key]) == placeholders(strings.EN[key]), key


def _literal_keys() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted(TERMINAL.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in KEY_CALLS:
                continue
            args = node.args[1:] if name == "text" else node.args  # text(lang, key)
            for arg in args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add((f"{path.name}:{node.lineno}", arg.value))
    return found


def test_every_literal_key_the_code_uses_exists() -> None:
    used = _literal_keys()
    assert len(used) > 40  # the scan sees the code's keys, so a miss below is real
    missing = sorted(f"{where} {key}" for where, key in used if key not in strings.ZH)
    assert missing == []


@pytest.mark.parametrize(
    "family",
    ["violations", "pin-states", "life-cycles", "outlet", "reader-errors", "titles", "keys"],
)
def test_every_key_made_at_run_time_exists(family: str) -> None:
    keys = {
        "violations": [f"v_{v.value}" for v in Violation],
        "pin-states": [f"state_{s.value}" for s in PinState] + ["state_LOCKED"],
        "life-cycles": [f"life_{c.value}" for c in LifeCycle],
        "outlet": [f"done_{op.value}" for op in Operation],
        "reader-errors": [*READER_ERROR_KEYS.values(), "reader_failed"],
        "titles": list(TITLES.values()),
        "keys": [f"key_{k}" for k in ("confirm", "back", "cancel", "clear", "X")],
    }[family]
    assert [k for k in keys if k not in strings.ZH] == []


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_chinese_screen_has_no_english_words(lang: str) -> None:
    """zh phrases carry no English words (an English tail is what issue 9 removed); en
    phrases carry no Chinese."""
    for key, text in strings.CATALOGUES[lang].items():
        plain = "".join(c for c in text if c not in "{}")
        for name in placeholders(text):
            plain = plain.replace(name, "")
        if lang == "zh":
            words = [w for w in plain.replace("/", " ").split() if w.isascii() and w.isalpha()]
            allowed = {
                "Enter",
                "Backspace",
                "Esc",
                "Delete",
                "F2",
                "F12",
                "APDU",
                "X",
                "pcscd",
                "x",
            }
            assert set(words) <= allowed, (key, words)
        else:
            assert all(not ("\u4e00" <= c <= "\u9fff") for c in plain), key


async def test_a_crash_report_never_shows_local_variables(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """PosApp._fatal_error: Textual's crash report without locals, which may hold PIN
    digits (the entry, a flow's PINs)."""
    from terminal_helpers import make_app, make_card

    pin = "802613"
    card = make_card(tmp_path, "employee-enabled")
    app = make_app(card)

    def explode(name: str) -> None:
        typed = pin  # a local holding PIN digits, as the entry line does
        raise RuntimeError(f"boom after {len(typed)} digits")

    app.pad_key = explode  # type: ignore[method-assign]
    capfd.readouterr()
    with pytest.raises(RuntimeError):
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("1")
            await pilot.pause()
    captured = capfd.readouterr()
    report = captured.out + captured.err
    assert "RuntimeError" in report and "explode" in report  # the report was printed
    assert pin not in report

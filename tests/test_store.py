"""Durable card files (cardio.card.store): mode, secrets, atomic writes, the lock, damage.

Requirements proven here:
- one card = one readable JSON file, mode 0600, never the PIN digits (salted hash only);
- writes are temp file -> fsync -> rename -> fsync of the directory;
- the decremented try counter is on disk before the PIN is compared;
- one process per card file: the next one is told the pid of the holder, file untouched;
- a damaged file gives one line naming file and field, exit 2, file untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cardio import pin
from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.card.state import CardFileError, CardState, PinHash, PinState

PY = sys.executable
_CARDIO_SCRIPT = Path(PY).parent / "cardio"
CARDIO = [str(_CARDIO_SCRIPT)] if _CARDIO_SCRIPT.exists() else [PY, "-m", "cardio.cli"]

INITIAL = "123456"
ENABLED_PIN = "802613"  # fixtures/README.md: PIN of employee-enabled
NEW_PIN = "975318"
OTHER_PIN = "246801"
WRONG_PIN = "000000"

OK = b"\x90\x00"


def verify_apdu(digits: str) -> bytes:
    return bytes((0x00, 0x20, 0x00, 0x00, 0x03)) + pin.encode(digits)


def change_apdu(old: str, new: str) -> bytes:
    return bytes((0x80, 0x5E, 0x01, 0x00, 0x07)) + pin.change_block(old, new)


def new_card(tmp_path: Path, profile: str = "employee-new", name: str = "card.json") -> Path:
    path = tmp_path / name
    profiles.new_card(profile, path)
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def without_pin_hash(text: str) -> str:
    """The file text with the values of the two random PIN-hash fields blanked out."""
    doc = json.loads(text)
    for key in ("pin_salt", "pin_sha256"):
        value = doc["secrets"][key]
        assert re.fullmatch(r"[0-9a-f]+", value), (key, value)
        text = text.replace(value, "")
    return text


def cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    preexec: Callable[[], Any] | None = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(
        [*CARDIO, *args], capture_output=True, text=True, timeout=60, preexec_fn=preexec
    )


def stray_files(directory: Path, card: Path) -> list[str]:
    """Everything in the folder except the card file and its lock sidecar."""
    keep = {card.name, f".{card.name}.lock"}
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# --- one readable JSON file, mode 0600 -------------------------------------------------


@pytest.mark.parametrize("profile", profiles.names())
def test_new_card_file_is_readable_json_mode_0600(tmp_path: Path, profile: str) -> None:
    path = new_card(tmp_path, profile)
    assert mode_of(path) == 0o600
    text = path.read_text("utf-8")
    doc = json.loads(text)
    assert doc["format"] == "shebao-pos/card"
    assert doc["profile"] == profile
    # readable by a person: indented, one field a line, holder name in clear characters
    assert len(text.splitlines()) > 20
    assert doc["holder"]["name"] in text
    assert store.read(path) == store.decode(path.read_bytes(), str(path))
    assert stray_files(tmp_path, path) == []


@pytest.mark.parametrize("umask", [0o000, 0o002, 0o022])
def test_mode_0600_with_permissive_umask_in_process(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = new_card(tmp_path)
        assert mode_of(path) == 0o600
        with store.FileStore(path) as fs:
            card = VirtualCard(fs.open(), fs)
            assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
            assert card.execute(change_apdu(INITIAL, NEW_PIN)) == OK
        assert mode_of(path) == 0o600
    finally:
        os.umask(old)


def test_mode_0600_with_umask_0_via_cli(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    made = cli("card", "new", "--profile", "employee-new", str(path), umask=0)
    assert made.returncode == 0, made.stderr
    assert mode_of(path) == 0o600
    sent = cli("send", "--card", str(path), verify_apdu(WRONG_PIN).hex(), umask=0)
    assert sent.returncode == 0, sent.stderr
    assert "63 C5" in sent.stdout
    assert store.read(path).tries_left == 5
    assert mode_of(path) == 0o600


def test_save_tightens_a_file_a_person_made_wider(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    os.chmod(path, 0o644)
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
    assert mode_of(path) == 0o600


def test_stale_wide_temp_file_does_not_widen_the_card(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    stale = tmp_path / f".card.json.tmp-{os.getpid()}"  # the name this process will use
    stale.write_text("junk")
    os.chmod(stale, 0o666)
    state = store.read(path)
    store.FileStore(path).save(state.with_(tries_left=3))
    assert mode_of(path) == 0o600
    assert store.read(path).tries_left == 3


# --- never the PIN digits ----------------------------------------------------------------


def test_new_card_holds_a_salted_hash_not_the_initial_pin(tmp_path: Path) -> None:
    a = new_card(tmp_path, name="a.json")
    b = new_card(tmp_path, name="b.json")
    doc_a = json.loads(a.read_text("utf-8"))
    doc_b = json.loads(b.read_text("utf-8"))
    assert INITIAL not in without_pin_hash(a.read_text("utf-8"))
    # a fresh salt for each new card: the same PIN does not give the same hash
    assert doc_a["secrets"]["pin_salt"] != doc_b["secrets"]["pin_salt"]
    assert doc_a["secrets"]["pin_sha256"] != doc_b["secrets"]["pin_sha256"]
    assert store.read(a).pin.matches(INITIAL)


def _assert_no_pin_digits(path: Path, digits: str) -> None:
    text = path.read_text("utf-8")
    doc = json.loads(text)
    assert digits not in without_pin_hash(text)
    salt = bytes.fromhex(doc["secrets"]["pin_salt"])
    assert len(salt) >= 8
    assert doc["secrets"]["pin_sha256"] == hashlib.sha256(salt + digits.encode()).hexdigest()
    assert hashlib.sha256(digits.encode()).hexdigest() not in text  # not an unsalted hash

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    for value in strings(doc):
        assert value != digits


def test_no_pin_digits_after_verify(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
        assert card.execute(verify_apdu(ENABLED_PIN)) == OK
    assert store.read(path).tries_left == 6
    _assert_no_pin_digits(path, ENABLED_PIN)


def test_no_pin_digits_after_change_pin(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        assert card.execute(change_apdu(INITIAL, NEW_PIN)) == OK
    state = store.read(path)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)
    assert not state.pin.matches(INITIAL)
    _assert_no_pin_digits(path, NEW_PIN)
    assert INITIAL not in without_pin_hash(path.read_text("utf-8"))


def test_no_pin_digits_after_change_pin_via_cli(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    sent = cli(
        "send",
        "--card",
        str(path),
        change_apdu(INITIAL, OTHER_PIN).hex(),
        verify_apdu(OTHER_PIN).hex(),
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.count("90 00") == 2, sent.stdout
    state = store.read(path)
    assert state.pin.matches(OTHER_PIN)
    _assert_no_pin_digits(path, OTHER_PIN)
    assert stray_files(tmp_path, path) == []


# --- atomic writes --------------------------------------------------------------------


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    assert stray_files(tmp_path, path) == []
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        for _ in range(3):
            assert card.execute(verify_apdu(WRONG_PIN))[:1] == b"\x63"
        assert card.execute(change_apdu(INITIAL, NEW_PIN)) == OK
        assert stray_files(tmp_path, path) == []
    assert stray_files(tmp_path, path) == []
    assert store.read(path).pin.matches(NEW_PIN)


def test_write_fsyncs_the_file_then_renames_then_fsyncs_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = new_card(tmp_path)
    events: list[tuple[Any, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "?"
        events.append(("fsync", kind, st.st_dev, st.st_ino, st.st_size))
        real_fsync(fd)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        events.append(("replace", Path(src), Path(dst)))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    state = store.read(path)
    store.FileStore(path).save(state.with_(tries_left=4))
    monkeypatch.undo()

    kinds = [e[0] if e[0] == "replace" else f"fsync-{e[1]}" for e in events]
    assert kinds == ["fsync-file", "replace", "fsync-dir"]
    _, _, file_dev, file_ino, file_size = events[0]
    _, src, dst = events[1]
    _, _, dir_dev, dir_ino, _ = events[2]
    final = os.stat(path)
    # the file that was fsynced, complete, is the one renamed onto the card file
    assert (file_dev, file_ino) == (final.st_dev, final.st_ino)
    assert file_size == final.st_size
    assert dst == path
    assert src.parent == path.parent and src != path
    parent = os.stat(path.parent)
    assert (dir_dev, dir_ino) == (parent.st_dev, parent.st_ino)
    assert store.read(path).tries_left == 4


def test_write_through_the_card_is_fsynced_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong VERIFY through FileStore + VirtualCard: one complete fsync'd write."""
    path = new_card(tmp_path)
    kinds: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        monkeypatch.setattr(os, "fsync", fsync)
        assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
        monkeypatch.undo()
    assert kinds == ["file", "dir"]
    assert store.read(path).tries_left == 5


def test_failed_write_leaves_the_old_file_and_spends_no_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = new_card(tmp_path)
    before = path.read_bytes()
    compared: list[str] = []
    real_matches = PinHash.matches

    def matches(self: PinHash, candidate: str) -> bool:
        compared.append(candidate)
        return real_matches(self, candidate)

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        monkeypatch.setattr(PinHash, "matches", matches)
        monkeypatch.setattr(os, "fsync", failing_fsync)
        response = card.execute(verify_apdu(INITIAL))
        monkeypatch.undo()
        assert len(response) == 2
        assert response != OK and response[0] != 0x63  # neither a success nor a comparison
        assert compared == []  # not on disk -> not compared
        assert card.state.tries_left == 6  # the card does not claim what is not on disk
        assert not card.verified
    assert path.read_bytes() == before
    # the next lock holder clears what the failed writer left
    with store.FileStore(path) as fs:
        fs.open()
        assert stray_files(tmp_path, path) == []
    assert path.read_bytes() == before


# --- anti-tearing order: decrement on disk, then compare -------------------------------


class RecordingStore:
    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events
        self.saved: list[CardState] = []

    def save(self, state: CardState) -> None:
        self.saved.append(state)
        self.events.append(("save", state.tries_left))


@pytest.fixture
def compare_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    real = PinHash.matches

    def matches(self: PinHash, candidate: str) -> bool:
        result = real(self, candidate)
        events.append(("compare", result))
        return result

    monkeypatch.setattr(PinHash, "matches", matches)
    return events


def _card(profile: str, events: list[tuple[str, Any]]) -> tuple[VirtualCard, RecordingStore]:
    rec = RecordingStore(events)
    card = VirtualCard(profiles.load(profile), rec)
    card.power_on()
    events.clear()  # profiles.load compares the initial PIN to give it a fresh salt
    return card, rec


def test_wrong_verify_saves_decrement_before_compare(
    compare_log: list[tuple[str, Any]],
) -> None:
    card, rec = _card("employee-new", compare_log)
    assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
    assert compare_log == [("save", 5), ("compare", False)]
    (saved,) = rec.saved
    assert saved == profiles.load("employee-new").with_(tries_left=5, pin=saved.pin)
    assert card.state == saved


def test_right_verify_saves_decrement_compares_then_restores(
    compare_log: list[tuple[str, Any]],
) -> None:
    card, rec = _card("employee-enabled", compare_log)
    assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
    compare_log.clear()
    assert card.execute(verify_apdu(ENABLED_PIN)) == OK
    assert compare_log == [("save", 4), ("compare", True), ("save", 6)]
    assert card.state == rec.saved[-1]


def test_change_pin_saves_decrement_compares_then_one_complete_write(
    compare_log: list[tuple[str, Any]],
) -> None:
    card, rec = _card("employee-new", compare_log)
    assert card.execute(change_apdu(INITIAL, NEW_PIN)) == OK
    # one comparison, the old PIN; the new PIN's hash is made afterwards
    assert compare_log == [("save", 5), ("compare", True), ("save", 6)]
    decremented, complete = rec.saved
    assert decremented.pin_state is PinState.INITIAL
    assert decremented.pin.matches(INITIAL)
    assert complete.pin_state is PinState.ENABLED
    assert complete.tries_left == complete.try_limit == 6
    assert complete.pin.matches(NEW_PIN)


def test_change_pin_wrong_old_saves_decrement_before_compare(
    compare_log: list[tuple[str, Any]],
) -> None:
    card, rec = _card("employee-new", compare_log)
    assert card.execute(change_apdu(WRONG_PIN, NEW_PIN)) == b"\x63\xc5"
    assert compare_log == [("save", 5), ("compare", False)]
    assert rec.saved[0].pin_state is PinState.INITIAL


def test_blocked_card_neither_saves_nor_compares(compare_log: list[tuple[str, Any]]) -> None:
    card, rec = _card("locked", compare_log)
    assert card.execute(verify_apdu(ENABLED_PIN)) == b"\x69\x83"
    assert card.execute(change_apdu(ENABLED_PIN, NEW_PIN)) == b"\x69\x83"
    assert compare_log == []
    assert rec.saved == []


def test_not_activated_card_neither_saves_nor_compares(
    compare_log: list[tuple[str, Any]],
) -> None:
    card, rec = _card("not-activated", compare_log)
    assert card.execute(verify_apdu(INITIAL)) == b"\x69\x85"
    assert card.execute(change_apdu(INITIAL, NEW_PIN)) == b"\x69\x85"
    assert compare_log == []
    assert rec.saved == []


def test_decrement_is_on_disk_when_the_comparison_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = new_card(tmp_path)
    on_disk: list[int] = []
    real = PinHash.matches

    def matches(self: PinHash, candidate: str) -> bool:
        on_disk.append(store.read(path).tries_left)
        return real(self, candidate)

    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        monkeypatch.setattr(PinHash, "matches", matches)
        assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
        assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc4"
        assert card.execute(verify_apdu(INITIAL)) == OK
        assert card.execute(change_apdu(INITIAL, NEW_PIN)) == OK
        monkeypatch.undo()
    assert on_disk == [5, 4, 3, 5]
    assert store.read(path).tries_left == 6


# --- one process at a time --------------------------------------------------------------

_HOLDER = """
import sys
from pathlib import Path
from cardio.card.store import FileStore
s = FileStore(Path(sys.argv[1]))
s.open()
print("ready", flush=True)
sys.stdin.read()
s.close()
"""


@pytest.fixture
def held_by_child(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = new_card(tmp_path)
    child = subprocess.Popen(
        [PY, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        yield path, child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def _names_pid(message: str, pid: int) -> bool:
    return re.search(rf"\bpid {pid}\b", message) is not None


def test_second_process_is_told_the_holder_pid_cli_send(held_by_child: tuple[Path, int]) -> None:
    path, pid = held_by_child
    before = path.read_bytes()
    mtime = os.stat(path).st_mtime_ns
    result = cli("send", "--card", str(path), verify_apdu(WRONG_PIN).hex())
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert _names_pid(lines[0], pid), lines[0]
    assert str(path) in lines[0]
    assert "Traceback" not in result.stderr
    assert "63 C" not in result.stdout  # nothing was sent
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime_ns == mtime


def test_second_process_is_told_the_holder_pid_cli_new_force(
    held_by_child: tuple[Path, int],
) -> None:
    path, pid = held_by_child
    before = path.read_bytes()
    result = cli("card", "new", "--force", "--profile", "employee-enabled", str(path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert _names_pid(lines[0], pid), lines[0]
    assert path.read_bytes() == before


def test_second_file_store_is_told_the_holder_pid(held_by_child: tuple[Path, int]) -> None:
    path, pid = held_by_child
    before = path.read_bytes()
    # a temp file of the holder's, as if it were writing right now: not ours to remove
    in_flight = path.with_name(f".{path.name}.tmp-{pid}")
    in_flight.write_bytes(b"{")
    with pytest.raises(store.CardInUseError) as caught:
        store.FileStore(path).open()
    assert _names_pid(str(caught.value), pid)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == before
    assert in_flight.read_bytes() == b"{"
    in_flight.unlink()


def test_child_is_told_the_pid_of_this_process(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        assert card.execute(verify_apdu(WRONG_PIN)) == b"\x63\xc5"
        before = path.read_bytes()
        result = cli("send", "--card", str(path), verify_apdu(WRONG_PIN).hex())
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert _names_pid(result.stderr, os.getpid()), result.stderr
        assert path.read_bytes() == before
        assert store.read(path).tries_left == 5
    # released: the next process gets the card
    result = cli("send", "--card", str(path), verify_apdu(WRONG_PIN).hex())
    assert result.returncode == 0, result.stderr
    assert "63 C4" in result.stdout
    assert store.read(path).tries_left == 4


def test_lock_is_released_on_close_and_reacquired(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    first = store.FileStore(path)
    first.open()
    with pytest.raises(store.CardInUseError):
        store.FileStore(path).open()
    first.close()
    with store.FileStore(path) as second:
        assert second.open().tries_left == 6


# --- stale temp files --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["card.json", "my card.json", "card [2].json", "卡*?.json"])
def test_next_lock_holder_removes_stale_temps(tmp_path: Path, name: str) -> None:
    path = new_card(tmp_path, name=name)
    before = path.read_bytes()
    stale = [path.with_name(f".{name}.tmp-{n}") for n in (1, 999999, 4242)]
    for s in stale:
        s.write_bytes(b'{"format": "torn')
    neighbour = tmp_path / ".other.json.tmp-4242"  # another card's temp: not ours
    neighbour.write_bytes(b"x")
    with store.FileStore(path) as fs:
        fs.open()
        assert [s for s in stale if s.exists()] == []
    assert neighbour.exists()
    assert path.read_bytes() == before


def test_stale_temp_cleanup_spares_other_cards_temps(tmp_path: Path) -> None:
    """A card whose name has glob characters must not sweep up another card's temp file."""
    path = new_card(tmp_path, name="卡*?.json")
    other = new_card(tmp_path, name="卡xy.json")
    in_flight = other.with_name(f".{other.name}.tmp-4242")
    in_flight.write_bytes(b"{")
    with store.FileStore(path) as fs:
        fs.open()
    assert in_flight.exists(), "the lock holder of another card removed this card's temp file"
    assert in_flight.read_bytes() == b"{"


def test_cli_send_removes_stale_temps(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    stale = tmp_path / ".card.json.tmp-31337"
    stale.write_bytes(b'{"tries_left": 6')
    result = cli("send", "--card", str(path), "80 CA 00 C1 00")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert stray_files(tmp_path, path) == []


# --- damaged files --------------------------------------------------------------------------


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        doc = json.loads(raw)
        change(doc)
        return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")

    return apply


def _set(section: str | None, key: str, value: Any) -> Callable[[bytes], bytes]:
    def change(doc: dict[str, Any]) -> None:
        (doc[section] if section else doc)[key] = value

    return _edit(change)


def _delete(section: str | None, key: str) -> Callable[[bytes], bytes]:
    def change(doc: dict[str, Any]) -> None:
        del (doc[section] if section else doc)[key]

    return _edit(change)


JSON_WHERE = r"line \d+ column \d+"

DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "not-json": (lambda raw: b"tries_left = 6\n", JSON_WHERE),
    "empty": (lambda raw: b"", JSON_WHERE),
    "truncated": (lambda raw: raw[: len(raw) // 2], JSON_WHERE),
    "truncated-last-byte": (lambda raw: raw.rstrip()[:-1], JSON_WHERE),
    "not-utf8": (lambda raw: raw.replace("张伟".encode(), "张伟".encode("gbk")), "the file"),
    "top-level-list": (lambda raw: b"[]", "the top level"),
    "wrong-type-int": (_set(None, "tries_left", "6"), "field 'tries_left'"),
    "wrong-type-float": (_set(None, "tries_left", 6.0), "field 'tries_left'"),
    "wrong-type-bool": (_set(None, "t0_style", "no"), "field 't0_style'"),
    "wrong-type-section": (_set(None, "holder", ["张伟"]), "section 'holder'"),
    "wrong-type-nested": (_set("card", "card_number", 123456789), "field 'card.card_number'"),
    "missing-field": (_delete(None, "pin_state"), "field 'pin_state'"),
    "missing-nested-field": (_delete("holder", "name"), "field 'holder.name'"),
    "missing-section": (_delete(None, "secrets"), "field 'secrets'"),
    "tries-over-limit": (_set(None, "tries_left", 7), "field 'tries_left'"),
    "negative-tries": (_set(None, "tries_left", -1), "field 'tries_left'"),
    "limit-over-15": (_set(None, "try_limit", 16), "field 'try_limit'"),
    "bad-enum": (_set(None, "pin_state", "LOCKED"), "field 'pin_state'"),
    "bad-hex": (_set("secrets", "pin_salt", "zz11"), "field 'secrets.pin_salt'"),
    "odd-hex": (_set("secrets", "pin_salt", "ABC"), "field 'secrets.pin_salt'"),
    "short-key": (_set("secrets", "keys", {"IRK": "00"}), "field 'secrets.keys.IRK'"),
    "key-tries-over": (_set("key_tries", "PUK", 4), "field 'key_tries.PUK'"),
    "short-hex": (_set("card", "identification_code", "3100"), "field 'card.identification_code'"),
    "non-gbk-name": (_set("holder", "name", "😀"), "field 'holder.name'"),
    "hangul-name": (_set("holder", "name", "한국"), "field 'holder.name'"),
    "bad-date": (_set("card", "issue_date", "2019-02-30"), "field 'card.issue_date'"),
    "bad-ssn": (_set("holder", "ssn", "31010419850312217"), "field 'holder.ssn'"),
    "wrong-format": (_set(None, "format", "something/else"), "field 'format'"),
}


def _damaged_card(tmp_path: Path, damage: Callable[[bytes], bytes]) -> tuple[Path, bytes]:
    path = new_card(tmp_path)
    raw = damage(path.read_bytes())
    path.write_bytes(raw)
    os.chmod(path, 0o600)
    return path, raw


def _assert_one_line_error(
    result: subprocess.CompletedProcess[str], path: Path, where: str
) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "Traceback" not in line
    assert str(path) in line, line
    assert re.search(where, line) or where in line, (where, line)
    assert result.stdout == ""


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_file_card_show(tmp_path: Path, kind: str) -> None:
    damage, where = DAMAGE[kind]
    path, raw = _damaged_card(tmp_path, damage)
    result = cli("card", "show", str(path))
    _assert_one_line_error(result, path, where)
    assert path.read_bytes() == raw
    assert mode_of(path) == 0o600


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_file_send(tmp_path: Path, kind: str) -> None:
    damage, where = DAMAGE[kind]
    path, raw = _damaged_card(tmp_path, damage)
    result = cli("send", "--card", str(path), verify_apdu(WRONG_PIN).hex(), "80CA00C100")
    _assert_one_line_error(result, path, where)
    assert path.read_bytes() == raw
    assert mode_of(path) == 0o600
    assert stray_files(tmp_path, path) == []


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_file_store_read_raises_card_file_error(tmp_path: Path, kind: str) -> None:
    damage, where = DAMAGE[kind]
    path, raw = _damaged_card(tmp_path, damage)
    with pytest.raises(CardFileError) as caught:
        store.read(path)
    assert caught.value.path == str(path)
    assert "\n" not in str(caught.value)
    assert re.search(where, str(caught.value)) or where in str(caught.value)
    with pytest.raises(CardFileError), store.FileStore(path) as fs:
        fs.open()
    assert path.read_bytes() == raw


def test_deeply_nested_json_is_a_one_line_error(tmp_path: Path) -> None:
    """A damaged file of nothing but brackets does not parse: the same one-line error."""
    path, raw = _damaged_card(tmp_path, lambda raw: b"[" * 200_000)
    for args in (("card", "show", str(path)), ("send", "--card", str(path), "80CA00C100")):
        result = cli(*args)
        assert result.returncode == 2, (args, result.returncode, result.stderr[-300:])
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr[-300:]
        assert str(path) in lines[0]
        assert path.read_bytes() == raw


def test_valid_card_show_exit_0_and_file_untouched(tmp_path: Path) -> None:
    """The control for the damaged-file cases: the same commands on a good file work."""
    path = new_card(tmp_path)
    raw = path.read_bytes()
    shown = cli("card", "show", "--json", str(path))
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["tries_left"], info["try_limit"], info["pin_state"]) == (6, 6, "INITIAL")
    assert shown.stderr == ""
    assert path.read_bytes() == raw

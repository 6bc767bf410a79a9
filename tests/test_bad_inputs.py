"""Whatever a person gives `cardio`, the answer is one line and a clean exit (issue 13),
and symlinks cannot be used to clobber files (issue 14).

Requirements proven here:
- a bad path (empty, a folder, too long, a device, a fifo, a symlink loop), a script that
  is not UTF-8, a card file whose dates or digits are out of range: one line on stderr,
  `cardio: <what is wrong>; <what to do>`, exit 2 (bad input) or 1 (other failures), no
  traceback, and no file created or changed;
- a read-only folder or a full disk: one line; a card write that cannot be persisted is
  answered 6581 with one log line (no traceback, no PIN), the old card file intact, no
  temp file left, and VERIFY compares no PIN when its decrement cannot be written;
- the temp and lock files never follow a symlink planted at their names; a symlinked
  card is one card with one lock; `--card /dev/null` creates nothing anywhere.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cardio import pin, security
from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.card.state import CardFileError, LifeCycle, PinHash
from cardio.cli import main
from cardio.issuer import KeyName
from cardio.model import Algorithm
from cardio.readers.virtual import VirtualReader
from cardio.resources import data_dir

INITIAL = "123456"
NEW_PIN = "975318"
WRONG_PIN = "000000"
OK = b"\x90\x00"
MEMORY_FAILURE = b"\x65\x81"
GET_PIN_DATA = "80CA00C100"
SSN = "310104198503122174"  # the holder of employee-new (fixtures/README.md)


def verify_apdu(digits: str) -> bytes:
    return bytes((0x00, 0x20, 0x00, 0x00, 0x03)) + pin.encode(digits)


def change_apdu(old: str, new: str) -> bytes:
    return bytes((0x80, 0x5E, 0x01, 0x00, 0x07)) + pin.change_block(old, new)


def cardio(
    *args: str | bytes | os.PathLike[str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`cardio ARGS` in a child process, as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="backslashreplace",
        timeout=60,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def new_card(folder: Path, name: str = "card.json", profile: str = "employee-new") -> Path:
    path = folder / name
    profiles.new_card(profile, path)
    return path


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry under `folder` (hidden ones too): its kind and content."""
    seen: dict[str, Any] = {}
    for entry in sorted(folder.rglob("*")):
        st = entry.lstat()
        name = str(entry.relative_to(folder))
        if stat.S_ISLNK(st.st_mode):
            seen[name] = ("link", os.readlink(entry))
        elif stat.S_ISREG(st.st_mode):
            seen[name] = ("file", stat.S_IMODE(st.st_mode), entry.read_bytes())
        else:
            seen[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return seen


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit `code`, and stderr is one `cardio: <what>; <what to do>` line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("cardio: "), line
    assert "; " in line, line  # what is wrong; what to do
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# --- bad card paths, every command --------------------------------------------------------


def _commands(path: str) -> dict[str, list[str]]:
    return {
        "new": ["card", "new", "--profile", "employee-new", path],
        "new-force": ["card", "new", "--force", "--profile", "employee-new", path],
        "show": ["card", "show", path],
        "send": ["send", "--card", path, GET_PIN_DATA],
        "script": ["script", "--card", path, "script.apdu"],
        "outlet": ["outlet", "activate", "--card", path, "--id", SSN, "--test-key"],
    }


COMMANDS = list(_commands(""))

BAD_PATHS: dict[str, tuple[str, str]] = {
    #  kind: (path, words the one line must hold)
    "empty": ("", "the card path is empty"),
    "folder": ("sub", "sub is a folder"),
    "folder-slash": ("sub/", "names a folder"),
    "dot": (".", "names a folder"),
    "fifo": ("pipe.json", "pipe.json is a named pipe"),
    "name-too-long": ("c" * 300 + ".json", "too long"),
    "symlink-loop": ("loop-a.json", "loop"),
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder holding one good card, a script, a subfolder, a fifo and a symlink loop."""
    new_card(tmp_path)
    (tmp_path / "script.apdu").write_text(GET_PIN_DATA + "\n", "utf-8")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "pipe.json")
    os.symlink("loop-b.json", tmp_path / "loop-a.json")
    os.symlink("loop-a.json", tmp_path / "loop-b.json")
    return tmp_path


@pytest.mark.parametrize("kind", list(BAD_PATHS))
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_card_path_is_one_line_exit_2_nothing_created(
    workdir: Path, command: str, kind: str
) -> None:
    path, words = BAD_PATHS[kind]
    before = snapshot(workdir)
    result = cardio(*_commands(path)[command], cwd=workdir)
    assert_one_line(result, 2, words)
    assert result.stdout == ""
    assert snapshot(workdir) == before


@pytest.mark.parametrize("command", ["new", "send"])
def test_name_just_too_long_for_the_lock_file_is_refused_first(
    tmp_path: Path, command: str
) -> None:
    """A 250-byte name is a legal file name, but '.NAME.tmp-PID' is not: refuse it up
    front rather than fail half-way (a card made, its first write impossible)."""
    name = "c" * 245 + ".json"
    if command == "send":  # a card a person made by hand, under that name
        (tmp_path / name).write_bytes(new_card(tmp_path, "x.json").read_bytes())
    before = snapshot(tmp_path)
    result = cardio(*_commands(name)[command], cwd=tmp_path)
    assert_one_line(result, 2, "too long", "shorter name")
    assert snapshot(tmp_path) == before


def test_a_device_is_refused_and_no_lock_file_appears_beside_it(tmp_path: Path) -> None:
    lock = Path("/dev/.null.lock")
    had_lock = lock.exists()
    for args in (
        ["send", "--card", "/dev/null", GET_PIN_DATA],
        ["card", "show", "/dev/null"],
        ["card", "new", "--profile", "employee-new", "/dev/null"],
        ["outlet", "activate", "--card", "/dev/null", "--id", SSN, "--test-key"],
    ):
        result = cardio(*args, cwd=tmp_path)
        assert_one_line(result, 2, "/dev/null is a device")
    if not had_lock:
        assert not lock.exists(), "cardio made a lock file in /dev"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_new_force_never_replaces_what_is_not_a_file(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "card.json"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    before = snapshot(tmp_path)
    result = cardio("card", "new", "--force", "--profile", "employee-new", target)
    assert_one_line(result, 2, str(target))
    assert snapshot(tmp_path) == before  # still the fifo/device, and no lock or temp file


def test_a_path_with_a_newline_or_escape_is_still_one_line(tmp_path: Path) -> None:
    for name in ("a\nb.json", "x\x1b[31mred.json"):
        result = cardio("card", "show", tmp_path / name)
        line = assert_one_line(result, 1, "no such card file")
        assert "\x1b" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_path_that_is_not_utf8_is_shown_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cardio.cli",
            "card",
            "new",
            "--profile",
            "employee-new",
            os.fsencode(tmp_path) + b"/\xff.json",
        ],
        capture_output=True,
        timeout=60,
    )
    assert b"Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert b"made" in result.stdout
    assert store.read(os.fsdecode(os.fsencode(tmp_path) + b"/\xff.json")).tries_left == 6


def test_a_profile_name_is_not_a_path(tmp_path: Path) -> None:
    result = cardio("card", "new", "--profile", "../cards/employee-new", "c.json", cwd=tmp_path)
    assert_one_line(result, 2, "no profile named", "list-profiles")
    assert list(tmp_path.iterdir()) == []


# --- scripts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, where",
    [
        (b"\xff\xfe0\x000\x00", "script.apdu:2"),  # UTF-16
        (b"# test\n80CA00C100 # caf\xe9\n", "script.apdu:3"),  # Latin-1
    ],
)
def test_script_that_is_not_utf8_is_one_line_exit_2_nothing_sent(
    tmp_path: Path, content: bytes, where: str
) -> None:
    card = new_card(tmp_path)
    script = tmp_path / "script.apdu"
    script.write_bytes(verify_apdu(WRONG_PIN).hex().encode() + b"\n" + content)
    before = snapshot(tmp_path)
    result = cardio("script", "--card", card, "script.apdu", cwd=tmp_path)
    assert_one_line(result, 2, where, "UTF-8")
    assert result.stdout == ""  # nothing sent: the whole script is read first
    assert snapshot(tmp_path) == before
    assert store.read(card).tries_left == 6


@pytest.mark.parametrize("script", ["", "sub", "sub/"])
def test_script_path_that_is_not_a_file(tmp_path: Path, script: str) -> None:
    card = new_card(tmp_path)
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    result = cardio("script", "--card", card, script, cwd=tmp_path)
    assert_one_line(result, 2, "give the file of APDUs")
    assert snapshot(tmp_path) == before


def _master_keys(edit: Callable[[dict[str, Any]], object] | None = None) -> bytes:
    """The test issuer's master-key file (cardio/issuer.py's JSON), edited."""
    doc = json.loads((data_dir("keys") / "TEST-ONLY-issuer.json").read_text("utf-8"))
    if edit is not None:
        edit(doc)
    return json.dumps(doc).encode("utf-8")


# Each message says what is wrong, then what to do (cardio/issuer.py).
BAD_KEY_FILES = [
    pytest.param(
        "０１２３".encode(), "not a JSON master-key file; check the file", id="full-width-digits"
    ),
    pytest.param(
        b"\xff\xfe0\x001\x00", "is not UTF-8 text; give the master-key file", id="not-utf8"
    ),
    pytest.param(
        b"54 45 53 54 2D 4F 4E 4C 59 2D 53 4D 34 4B 45 59\n",
        "not a JSON master-key file; check the file",
        id="old-hex-key-file",
    ),
    pytest.param(b"", "not a JSON master-key file; check the file", id="empty"),
    pytest.param(
        _master_keys(lambda d: d["keys"].update(XYZ="00" * 16)),
        "unknown key 'XYZ'; the keys are IRK, ",
        id="unknown",
    ),
    pytest.param(
        b"[]",
        'not a master-key file; write it as {"algorithm": "SM4", "keys": {',
        id="json-not-an-object",
    ),
    pytest.param(
        _master_keys(lambda d: d.update(algorithm="SSF33")),
        '"algorithm" is not "SM4" or "DES" (SSF33 is unavailable); set one of them',
        id="ssf33",
    ),
    pytest.param(
        _master_keys(lambda d: d["keys"].pop("PUK")),
        "keys missing: PUK; add them to the file",
        id="missing-puk",
    ),
    pytest.param(
        _master_keys(lambda d: d["keys"].update(PUK="0011")),
        "key PUK is not 32 hex digits (16 bytes); write it in full",
        id="short-puk",
    ),
]


@pytest.mark.parametrize(("content", "words"), BAD_KEY_FILES)
def test_a_key_file_that_is_no_master_key_file_is_one_sentence(
    tmp_path: Path, content: bytes, words: str
) -> None:
    card = new_card(tmp_path)
    key = tmp_path / "master.key"
    key.write_bytes(content)
    key.chmod(0o600)
    before = snapshot(tmp_path)
    result = cardio("outlet", "activate", "--card", card, "--id", SSN, "--key", key)
    assert result.stdout == ""
    assert_one_line(result, 1, str(key), words)
    assert snapshot(tmp_path) == before


def _psam_file(folder: Path, edit: Callable[[dict[str, Any]], object] | None = None) -> Path:
    """A PSAM file (cardio/psam), edited."""
    from cardio.issuer import fixture_issuer
    from cardio.psam import state as psam_state
    from cardio.psam import store as psam_store

    path = folder / "psam.json"
    psam_store.create(path, psam_state.make(fixture_issuer()))
    if edit is not None:
        doc = json.loads(path.read_text("utf-8"))
        edit(doc)
        path.write_text(json.dumps(doc), "utf-8")
    return path


BAD_PSAMS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a-user-card": (lambda folder: new_card(folder, "other.json"), "is not a PSAM file; make one"),
    "a-card-file-format-number": (
        lambda folder: _psam_file(folder, lambda d: d.update(format=99)),
        "make it anew with 'cardio card new --profile psam --force",
    ),
    "empty-file": (
        lambda folder: (folder / "empty.json", (folder / "empty.json").touch())[0],
        "is not a PSAM file",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_PSAMS))
def test_a_psam_file_that_is_no_usable_psam_is_one_line_exit_2(tmp_path: Path, kind: str) -> None:
    """`cardio outlet --psam FILE`: one line naming the file and what to do; the card,
    the PSAM file and the outlet log untouched (no log made)."""
    card = new_card(tmp_path)
    make, words = BAD_PSAMS[kind]
    psam = make(tmp_path)
    before = snapshot(tmp_path)
    result = cardio(
        "outlet",
        "activate",
        "--card",
        card,
        "--id",
        SSN,
        "--psam",
        psam,
        "--log",
        tmp_path / "o.log",
    )
    assert result.stdout == ""
    assert_one_line(result, 2, str(psam.name), words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_a_psam_path_that_is_no_file_says_so(tmp_path: Path, kind: str) -> None:
    """A mistyped PSAM file or a folder is a path, not a PC/SC reader's name."""
    card = new_card(tmp_path)
    psam = tmp_path / ("psam.json" if kind == "missing" else "psams")
    if kind == "folder":
        psam.mkdir()
    before = snapshot(tmp_path)
    result = cardio(
        "outlet",
        "activate",
        "--card",
        card,
        "--id",
        SSN,
        "--psam",
        psam,
        "--log",
        tmp_path / "o.log",
    )
    words = "no such PSAM file" if kind == "missing" else "is a folder; give a PSAM file"
    line = assert_one_line(result, 2, str(psam), words, "cardio card new --profile psam")
    assert "PC/SC" not in line  # a path, not taken for a reader's name
    assert snapshot(tmp_path) == before


# --- card file values out of range ---------------------------------------------------------

RAW = "@@raw@@"


def _with(section: str | None, key: str, raw_json: str) -> Callable[[str], str]:
    """The card text with one field's value replaced by `raw_json`, written as is (so it
    may be what json.dumps would never write: 5000 digits, a lone surrogate)."""

    def edit(text: str) -> str:
        doc = json.loads(text)
        (doc[section] if section else doc)[key] = RAW
        return json.dumps(doc, ensure_ascii=False, indent=2).replace(f'"{RAW}"', raw_json)

    return edit


BIG = "1" * 5000
ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in "2019")  # ٢٠١٩
FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in "2019")  # ２０１９

FIELD_DAMAGE: dict[str, tuple[Callable[[str], str], str]] = {
    "year-0999": (_with("card", "issue_date", '"0999-01-01"'), "card.issue_date"),
    "year-0001": (_with("card", "expiry_date", '"0001-01-01"'), "card.expiry_date"),
    "birth-year-0999": (_with("holder", "birth_date", '"0999-12-31"'), "holder.birth_date"),
    "date-arabic-indic": (
        _with("card", "issue_date", f'"{ARABIC_INDIC}-01-01"'),
        "card.issue_date",
    ),
    "date-full-width": (
        _with("holder", "birth_date", f'"{FULL_WIDTH}-01-01"'),
        "holder.birth_date",
    ),
    "date-basic-iso": (_with("card", "issue_date", '"20190101"'), "card.issue_date"),
    "date-week": (_with("card", "issue_date", '"2019-W01-1"'), "card.issue_date"),
    "ssn-full-width": (_with("holder", "ssn", '"' + "３" * 17 + 'X"'), "holder.ssn"),
    "ssn-arabic-indic": (_with("holder", "ssn", '"' + "\u0663" * 18 + '"'), "holder.ssn"),
    "ethnic-arabic-indic": (_with("holder", "ethnic", '"\u0660\u0661"'), "holder.ethnic"),
    "birthplace-full-width": (_with("holder", "birthplace", '"３１０１０４"'), "holder.birthplace"),
    "scheme-full-width": (_with("medical", "scheme", '"３１０"'), "medical.scheme"),
    "card-number-arabic-indic": (
        _with("card", "card_number", '"' + "\u0661" * 9 + '"'),
        "card.card_number",
    ),
    "tries-5000-digits": (_with(None, "tries_left", BIG), "tries_left"),
    "limit-5000-digits": (_with(None, "try_limit", BIG), "try_limit"),
    "version-minus-5000-digits": (_with(None, "version", "-" + BIG), "version"),
    "bool-5000-digits": (_with(None, "t0_style", BIG), "t0_style"),
    "string-field-5000-digits": (_with("card", "card_number", BIG), "card.card_number"),
    "profile-5000-digits": (_with(None, "profile", BIG), "profile"),
    "profile-lone-surrogate": (_with(None, "profile", '"\\ud800"'), "profile"),
    "profile-escape": (_with(None, "profile", '"a\\u001b[2Jb"'), "profile"),
    "profile-newline": (_with(None, "profile", '"a\\nb"'), "profile"),
    "profile-empty": (_with(None, "profile", '""'), "profile"),
    "name-newline": (_with("holder", "name", '"张\\n伟"'), "holder.name"),
}


def _damaged(tmp_path: Path, kind: str) -> tuple[Path, str]:
    damage, field = FIELD_DAMAGE[kind]
    path = new_card(tmp_path)
    path.write_text(damage(path.read_text("utf-8")), "utf-8", errors="surrogatepass")
    path.chmod(0o600)
    return path, field


@pytest.mark.parametrize("kind", list(FIELD_DAMAGE))
def test_out_of_range_field_is_a_card_file_error_naming_it(tmp_path: Path, kind: str) -> None:
    path, field = _damaged(tmp_path, kind)
    with pytest.raises(CardFileError) as caught:
        store.read(path)
    assert caught.value.where == f"field '{field}'"
    assert caught.value.path == str(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", list(FIELD_DAMAGE))
def test_out_of_range_field_send_and_show_one_line_exit_2(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, field = _damaged(tmp_path, kind)
    before = snapshot(tmp_path)
    result = cardio("send", "--card", path, verify_apdu(WRONG_PIN).hex(), GET_PIN_DATA)
    assert_one_line(result, 2, str(path), f"field '{field}'")
    assert result.stdout == ""
    out = io.StringIO()
    assert main(["card", "show", str(path)], out=out) == 2
    assert out.getvalue() == ""
    assert f"field '{field}'" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_file_too_large_to_be_a_card_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (store.MAX_CARD_BYTES + 1))
    result = cardio("card", "show", path)
    assert_one_line(result, 2, str(path), "too large")


# --- a read-only folder ------------------------------------------------------------------------


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A folder of its own tmpfs (16 KB), unmounted after the test; skips if mounting is
    not allowed here."""
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=True)


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder holding card.json on a read-only tmpfs (EROFS: root ignores modes, and a
    0555 folder would still let a card be locked and read). Skips if mounting fails."""
    point = tmp_path / "ro"
    point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the EACCES case is tested in process)")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        new_card(point)
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=True)


@pytest.mark.parametrize("command", ["new", "new-force", "send", "script", "outlet"])
def test_read_only_folder_is_one_line_exit_1(
    read_only_folder: Path, tmp_path: Path, command: str
) -> None:
    (tmp_path / "script.apdu").write_text(GET_PIN_DATA + "\n", "utf-8")
    name = "other.json" if command == "new" else "card.json"
    before = snapshot(read_only_folder)
    result = cardio(*_commands(str(read_only_folder / name))[command], cwd=tmp_path)
    assert_one_line(
        result, 1, str(read_only_folder / name), "Read-only file system", "folder you can write to"
    )
    assert snapshot(read_only_folder) == before


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_card_new_when_the_folder_refuses_writes_in_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
) -> None:
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    target = tmp_path / "card.json"
    assert main(["card", "new", "--profile", "employee-new", str(target)], out=io.StringIO()) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"cardio: {target}"), err
    assert os.strerror(code) in err[0]
    assert list(tmp_path.iterdir()) == []


# --- a full disk: 6581, one log line, old file intact, no temp left --------------------------


FAILURES = {
    "ENOSPC": errno.ENOSPC,
    "EDQUOT": errno.EDQUOT,
    "EROFS": errno.EROFS,
    "EIO": errno.EIO,
}


@pytest.fixture
def card_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="cardio")
    return caplog


def _failing(code: int, where: str = "") -> Callable[..., Any]:
    real_close = os.close

    def fail(*args: Any, **kwargs: Any) -> Any:
        if where == "close":  # as NFS does: the fd is closed, and the error reported
            real_close(*args)
        raise OSError(code, os.strerror(code))

    return fail


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("cardio")]


def _assert_one_memory_failure_line(
    caplog: pytest.LogCaptureFixture, path: Path, code: int, *pins: str
) -> None:
    records = _lines(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    _assert_memory_failure_line(records[0], path, code, *pins)


def _assert_memory_failure_line(
    record: logging.LogRecord, path: Path, code: int, *pins: str
) -> None:
    assert record.levelno == logging.ERROR
    assert record.exc_info is None  # no traceback
    message = record.getMessage()
    assert "\n" not in message
    assert str(path) in message and "6581" in message and os.strerror(code) in message
    for digits in pins:
        assert digits not in message


@pytest.mark.parametrize("where", ["write", "fsync", "close", "replace"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_verify_whose_decrement_cannot_be_written_compares_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    card_log: pytest.LogCaptureFixture,
    failure: str,
    where: str,
) -> None:
    code = FAILURES[failure]
    path = new_card(tmp_path)
    before = snapshot(tmp_path)
    compared: list[str] = []
    real_matches = PinHash.matches

    def matches(self: PinHash, candidate: str) -> bool:
        compared.append(candidate)
        return real_matches(self, candidate)

    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        monkeypatch.setattr(PinHash, "matches", matches)
        monkeypatch.setattr(os, where, _failing(code, where))
        assert card.execute(verify_apdu(INITIAL)) == MEMORY_FAILURE
        assert card.execute(change_apdu(INITIAL, NEW_PIN)) == MEMORY_FAILURE
        monkeypatch.undo()
        assert compared == []  # the decrement is not on disk: no PIN was compared
        assert card.state.tries_left == 6
        assert not card.verified
        assert temps(tmp_path) == []  # cleaned at once, not by the next lock holder
        records = _lines(card_log)
        assert len(records) == 2  # one line per failed command
        for record in records:
            _assert_memory_failure_line(record, path, code, INITIAL, NEW_PIN)
        # the disk is back: the same card goes on working
        assert card.execute(verify_apdu(INITIAL)) == OK
    after = snapshot(tmp_path)
    assert after.keys() == before.keys()


def test_change_pin_whose_final_write_fails_keeps_the_old_pin(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    card_log: pytest.LogCaptureFixture,
) -> None:
    """The decrement is written, the PIN compared; then the new PIN cannot be written:
    6581, and the card holds the old PIN (with the try spent) on disk and in memory."""
    path = new_card(tmp_path)
    writes = 0
    real_replace = os.replace

    def second_replace_fails(src: Any, dst: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs)
        monkeypatch.setattr(os, "replace", second_replace_fails)
        assert card.execute(change_apdu(INITIAL, NEW_PIN)) == MEMORY_FAILURE
        monkeypatch.undo()
        assert card.state.tries_left == 5
        assert card.state.pin.matches(INITIAL)
    on_disk = store.read(path)
    assert on_disk.tries_left == 5 and on_disk.pin.matches(INITIAL)
    assert temps(tmp_path) == []
    _assert_one_memory_failure_line(card_log, path, errno.ENOSPC, INITIAL, NEW_PIN)


def test_outlet_write_failure_is_6581_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    card_log: pytest.LogCaptureFixture,
) -> None:
    """Every write goes through one path: the outlet's ACTIVATE as well as VERIFY."""
    path = new_card(tmp_path, profile="not-activated")
    before = path.read_bytes()
    with store.FileStore(path) as fs:
        state = fs.open()
        card = VirtualCard(state, fs, random=lambda n: bytes(n))
        card.power_on()
        _puk_proved(card, state.keys[KeyName.PUK])
        assert path.read_bytes() == before  # the PUK's counter is back where it was
        challenge = card.execute(GET_CHALLENGE)[:-2]
        command = security.secure_apdu(
            Algorithm.SM4, state.keys[KeyName.PUK], challenge, 0x84, 0x18, 0x00, 0x00, b""
        )
        monkeypatch.setattr(os, "fsync", _failing(errno.ENOSPC))
        assert card.execute(command) == MEMORY_FAILURE
        monkeypatch.undo()
        assert card.state.life_cycle is LifeCycle.NOT_ACTIVATED
    assert path.read_bytes() == before
    assert temps(tmp_path) == []
    _assert_one_memory_failure_line(card_log, path, errno.ENOSPC)


GET_CHALLENGE = bytes.fromhex("0084000008")
PUK_AUTH = bytes.fromhex("0082000610")  # EXTERNAL AUTHENTICATE of the SSSE's PUK
SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF00")


def _puk_auth(card: VirtualCard, puk: bytes) -> bytes:
    """The SSSE selected, a challenge, and the PUK's EXTERNAL AUTHENTICATE APDU for it."""
    assert card.execute(SSSE)[-2:] == OK
    challenge = card.execute(GET_CHALLENGE)[:-2]
    raw = bytes(range(1, 9))
    return PUK_AUTH + security.authentication(Algorithm.SM4, puk, challenge, raw) + raw


def _puk_proved(card: VirtualCard, puk: bytes) -> None:
    assert card.execute(_puk_auth(card, puk)) == OK


@pytest.mark.parametrize("where", ["write", "fsync", "close", "replace"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_external_authenticate_whose_decrement_cannot_be_written_compares_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    card_log: pytest.LogCaptureFixture,
    failure: str,
    where: str,
) -> None:
    """The PUK's counter is decremented on disk before the cryptogram is compared (as the
    PIN's): when that write fails, 6581, nothing compared, the PUK not proved."""
    code = FAILURES[failure]
    path = new_card(tmp_path, profile="not-activated")
    before = snapshot(tmp_path)
    compared: list[bytes] = []
    real_authentication = security.authentication

    def authentication(*args: Any) -> bytes:
        compared.append(args[-1])
        return real_authentication(*args)

    with store.FileStore(path) as fs:
        state = fs.open()
        card = VirtualCard(state, fs)
        card.power_on()
        puk = state.keys[KeyName.PUK]
        auth = _puk_auth(card, puk)  # the right cryptogram
        monkeypatch.setattr(security, "authentication", authentication)
        monkeypatch.setattr(os, where, _failing(code, where))
        assert card.execute(auth) == MEMORY_FAILURE
        monkeypatch.undo()
        assert compared == []  # the decrement is not on disk: no cryptogram was compared
        assert card.state.tries_of(KeyName.PUK) == 3
        assert temps(tmp_path) == []
        # not proved: the outlet's command after it is refused, the card not activated
        challenge = card.execute(GET_CHALLENGE)[:-2]
        command = security.secure_apdu(Algorithm.SM4, puk, challenge, 0x84, 0x18, 0x00, 0x00, b"")
        assert card.execute(command) == b"\x69\x82"
    assert snapshot(tmp_path) == before
    (record,) = _lines(card_log)
    _assert_memory_failure_line(record, path, code)


def _fill(folder: Path) -> None:
    """Take every free byte of the file system `folder` is on."""
    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: close has no rest
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_full_disk_for_real_send_answers_6581_with_one_line(mount_point: Path) -> None:
    path = new_card(mount_point)
    _fill(mount_point)
    before = snapshot(mount_point)
    result = cardio("send", "--card", path, verify_apdu(INITIAL).hex(), GET_PIN_DATA)
    assert result.returncode == 0, result.stderr  # raw exchanges: the card's answer is shown
    assert "< 65 81" in result.stdout.splitlines()
    assert "< C1 04 01 00 06 06 90 00" in result.stdout.splitlines()  # no try was spent
    line = assert_one_line(
        result, 0, str(path), "6581", "No space left on device", "free some disk space"
    )
    assert INITIAL not in line
    assert snapshot(mount_point) == before  # old card intact, no temp file left


def test_full_disk_for_real_new_force_is_one_line(mount_point: Path) -> None:
    path = new_card(mount_point)
    _fill(mount_point)
    before = snapshot(mount_point)
    result = cardio("card", "new", "--force", "--profile", "employee-enabled", path)
    assert_one_line(result, 1, str(path), "No space left on device", "free some disk space")
    assert snapshot(mount_point) == before


# --- symlinks cannot clobber files --------------------------------------------------------------


def test_symlink_planted_at_the_temp_name_is_not_followed(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / f".card.json.tmp-{os.getpid()}")  # the name we will use
    state = store.read(path)
    store.FileStore(path).save(state.with_(tries_left=3))
    assert victim.read_text() == "precious\n"
    assert store.read(path).tries_left == 3
    assert temps(tmp_path) == []  # the planted link was removed itself, not its target
    assert not path.is_symlink()


def test_symlink_planted_at_the_lock_name_is_refused(tmp_path: Path) -> None:
    """The lock file is reused, so it cannot be swapped safely: a link there is refused."""
    path = new_card(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = tmp_path / ".card.json.lock"
    lock.unlink()
    os.symlink(victim, lock)
    before = snapshot(tmp_path)
    result = cardio("send", "--card", path, verify_apdu(WRONG_PIN).hex())
    assert_one_line(result, 1, str(lock), "symbolic link", "remove it")
    assert snapshot(tmp_path) == before


def test_hard_link_at_the_lock_name_is_refused(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = tmp_path / ".card.json.lock"
    lock.unlink()
    os.link(victim, lock)
    before = snapshot(tmp_path)
    result = cardio("card", "new", "--force", "--profile", "employee-enabled", path)
    assert_one_line(result, 1, str(lock), "hard link")
    assert snapshot(tmp_path) == before


@pytest.fixture
def linked_card(tmp_path: Path) -> tuple[Path, Path]:
    """cards/real.json, and links/link.json -> ../cards/real.json."""
    (tmp_path / "cards").mkdir()
    (tmp_path / "links").mkdir()
    real = new_card(tmp_path / "cards", "real.json")
    link = tmp_path / "links" / "link.json"
    os.symlink("../cards/real.json", link)
    return real, link


def test_symlinked_card_is_written_through_and_stays_a_link(
    linked_card: tuple[Path, Path], tmp_path: Path
) -> None:
    real, link = linked_card
    links_before = snapshot(tmp_path / "links")
    result = cardio("send", "--card", link, verify_apdu(WRONG_PIN).hex())
    assert result.returncode == 0, result.stderr
    assert "63 C5" in result.stdout
    assert link.is_symlink()  # not replaced by a copy
    assert store.read(real).tries_left == 5  # the target is the card that was written
    # the lock lives beside the card, and nothing at all appeared beside the link
    assert snapshot(tmp_path / "links") == links_before
    assert (tmp_path / "cards" / ".real.json.lock").exists()


def test_symlinked_card_is_one_card_with_one_lock(linked_card: tuple[Path, Path]) -> None:
    real, link = linked_card
    with store.FileStore(real) as fs:
        fs.open()
        result = cardio("send", "--card", link, verify_apdu(WRONG_PIN).hex())
        assert_one_line(result, 1, f"pid {os.getpid()}")
    with store.FileStore(link) as fs:
        fs.open()
        with pytest.raises(store.CardInUseError):
            store.FileStore(real).open()
    assert store.read(real).tries_left == 6


def test_virtual_reader_resolves_the_card_once(
    linked_card: tuple[Path, Path], tmp_path: Path
) -> None:
    real, link = linked_card
    other = new_card(tmp_path / "cards", "other.json", "locked")
    reader = VirtualReader(link)
    try:
        reader.remove()
        link.unlink()
        os.symlink("../cards/other.json", link)  # repointed while the card is out
        reader.insert()
        assert reader.card is not None
        assert reader.card.state.tries_left == 6  # still real.json, not the locked card
    finally:
        reader.close()
    assert store.read(other).tries_left == 0


def test_new_force_through_a_link_to_a_card_replaces_the_card(
    linked_card: tuple[Path, Path],
) -> None:
    real, link = linked_card
    result = cardio("card", "new", "--force", "--profile", "employee-enabled", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink()
    assert store.read(real).profile == "employee-enabled"


@pytest.mark.parametrize("target", ["victim.txt", "missing.json"])
def test_new_never_writes_through_a_link_to_something_else(tmp_path: Path, target: str) -> None:
    """'replace this card' must not become 'overwrite (or make) whatever the link names'."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(target, tmp_path / "card.json")
    before = snapshot(tmp_path)
    result = cardio(
        "card", "new", "--force", "--profile", "employee-new", "card.json", cwd=tmp_path
    )
    assert_one_line(result, 1, "card.json is a symbolic link")
    assert snapshot(tmp_path) == before


# --- the last resort: whatever else goes wrong is one line too ---------------------------------


def test_an_unexpected_error_is_one_line_without_its_message(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError(f"PIN {INITIAL} leaked")

    monkeypatch.setattr(profiles, "names", broken)
    assert main(["card", "list-profiles"], out=io.StringIO()) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cardio: unexpected error (RuntimeError")
    assert INITIAL not in line


def test_ctrl_c_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(profiles, "names", interrupted)
    assert main(["card", "list-profiles"], out=io.StringIO()) == 130  # as a shell reports SIGINT
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("cardio: interrupted")


def test_output_to_a_closed_pipe_is_no_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `cardio card list-profiles | true`
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cardio.cli", "card", "list-profiles"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == ""

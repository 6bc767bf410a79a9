"""The `cardio` command, run for real as a subprocess and in process through `main`.

Each test pins one behaviour from README.md / the brief: output, exit status, and what
the card file holds afterwards.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cardio.card import store
from cardio.cli import main

PROFILES = [
    "employee-new",
    "employee-enabled",
    "resident-new",
    "pension-new",
    "legacy-medical",
    "not-activated",
    "locked",
    "disabled",
    "t0-employee-new",
]

# fixtures/README.md
EXPECTED_STATE = {
    #  profile:          (scheme, category, life cycle,     PIN state,  tries, limit)
    "employee-new": ("310", "1", "ACTIVE", "INITIAL", 6, 6),
    "employee-enabled": ("310", "1", "ACTIVE", "ENABLED", 6, 6),
    "resident-new": ("390", "1", "ACTIVE", "INITIAL", 6, 6),
    "pension-new": ("170", "1", "ACTIVE", "INITIAL", 6, 6),
    "legacy-medical": ("310", "L", "ACTIVE", "INITIAL", 6, 6),
    "not-activated": ("310", "1", "NOT_ACTIVATED", "INITIAL", 6, 6),
    "locked": ("310", "1", "ACTIVE", "ENABLED", 0, 6),
    "disabled": ("310", "1", "ACTIVE", "DISABLED", 6, 6),
    "t0-employee-new": ("310", "1", "ACTIVE", "INITIAL", 6, 6),
}

INITIAL_PIN = "123456"
ENABLED_PIN = "802613"  # employee-enabled, fixtures/README.md

SELECT_SSSE = "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"
# its FCI (part 5 table 36), sent with or without a Le (docs/card.md §3)
SSSE_FCI_LINE = (
    "< 6F 1C 84 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"
    " A5 09 88 01 0F 9F 0C 03 86 01 03 90 00"
)
VERIFY_RIGHT = "00 20 00 00 03 12 34 56"
VERIFY_WRONG = "00 20 00 00 03 12 34 57"
VERIFY_STATUS = "00 20 00 00"
GET_PIN_DATA = "80 CA 00 C1 00"
CHANGE_PIN = "80 5E 01 00 07 12 34 56 FF 65 43 21"  # 123456 -> 654321

VERIFY_MASKED = "> 00 20 00 00 03 ** ** **"
CHANGE_MASKED = "> 80 5E 01 00 07 ** ** ** FF ** ** **"
ATR_LINE = "< 3B 6D 00 00 00 00 53 42 50 00 00 31 00 37 2A 9F A8"  # employee-new

COMMAND_LINE = re.compile(r"> (?:[0-9A-F]{2}|\*\*)(?: (?:[0-9A-F]{2}|\*\*))*")
RESPONSE_LINE = re.compile(r"< [0-9A-F]{2}(?: [0-9A-F]{2})*")


# --- helpers ------------------------------------------------------------------------


def cardio(
    *args: str | os.PathLike[str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`cardio ARGS` in a child process (python -m cardio.cli with this interpreter)."""
    env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        cwd=cwd,
        env=env,
    )


def run_main(argv: list[str]) -> tuple[int, str]:
    """`cardio ARGV` in this process; returns (exit status, stdout)."""
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def new_card(tmp_path: Path, profile: str = "employee-new", name: str | None = None) -> Path:
    path = tmp_path / (name or f"{profile}.json")
    code, _ = run_main(["card", "new", "--profile", profile, str(path)])
    assert code == 0
    return path


def card_json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text("utf-8"))


def tries_left(path: Path) -> int:
    value = card_json(path)["tries_left"]
    assert isinstance(value, int)
    return value


def pin_forms(pin: str) -> list[str]:
    """Every way the PIN's digits could show up in hex output."""
    pairs = [pin[i : i + 2] for i in range(0, len(pin), 2)]
    return [pin, " ".join(pairs), ":".join(pairs)]


def assert_no_pin(text: str, *pins: str) -> None:
    compact = re.sub(r"\s+", "", text)
    for pin in pins:
        for form in pin_forms(pin):
            assert form not in text, f"PIN {pin} shows in the output: {text!r}"
        assert pin not in compact, f"PIN {pin} shows in the output: {text!r}"


def assert_trace_format(stdout: str) -> None:
    """Every line is '> ' + hex (or '> reset') or '< ' + hex, upper case, single spaces."""
    lines = stdout.splitlines()
    assert lines, "no output"
    for line in lines:
        if line.startswith(">"):
            assert line == "> reset" or COMMAND_LINE.fullmatch(line), line
        else:
            assert RESPONSE_LINE.fullmatch(line), line


# --- console script / python -m ---------------------------------------------------


def test_console_script_next_to_the_interpreter_runs() -> None:
    script = Path(sys.executable).parent / "cardio"
    if not script.exists():
        pytest.skip("the cardio console script is not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "card", "list-profiles"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=dict(os.environ, PYTHONUTF8="1"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == cardio("card", "list-profiles").stdout


# --- card list-profiles -------------------------------------------------------------


def test_list_profiles_lists_every_profile_with_a_description() -> None:
    result = cardio("card", "list-profiles")
    assert result.returncode == 0
    assert result.stderr == ""
    described: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _, description = line.partition(" ")
        described[name] = description.strip()
    for profile in PROFILES:
        assert profile in described, f"{profile} missing from {result.stdout!r}"
        assert len(described[profile]) >= 10, f"{profile} has no description"
    # the descriptions are the profiles' own, not a placeholder repeated
    assert len({described[p] for p in PROFILES}) == len(PROFILES)


def test_list_profiles_in_process_matches_the_command() -> None:
    code, out = run_main(["card", "list-profiles"])
    assert code == 0
    assert out == cardio("card", "list-profiles").stdout


# --- card new -------------------------------------------------------------------------


def test_new_makes_a_private_card_file(tmp_path: Path) -> None:
    path = tmp_path / "my.json"
    result = cardio("card", "new", "--profile", "employee-new", path)
    assert result.returncode == 0, result.stderr
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = card_json(path)
    assert doc["profile"] == "employee-new"
    assert (doc["life_cycle"], doc["pin_state"], doc["tries_left"], doc["try_limit"]) == (
        "ACTIVE",
        "INITIAL",
        6,
        6,
    )
    assert str(path) in result.stdout
    assert "employee-new" in result.stdout
    # no temp file or stray files next to it besides the lock sidecar
    leftovers = {p.name for p in tmp_path.iterdir()} - {"my.json", ".my.json.lock"}
    assert leftovers == set()


def test_new_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "open.json"
    old = os.umask(0)
    try:
        code, _ = run_main(["card", "new", "--profile", "resident-new", str(path)])
    finally:
        os.umask(old)
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("profile", PROFILES)
def test_new_from_every_profile(tmp_path: Path, profile: str) -> None:
    path = tmp_path / "card.json"
    code, out = run_main(["card", "new", "--profile", profile, str(path)])
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert card_json(path)["profile"] == profile
    _, _, life, pin_state, tries, limit = EXPECTED_STATE[profile]
    assert out == f"made {path} from profile {profile} ({pin_state}, {tries}/{limit} tries)\n"


def test_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new", "card.json")
    assert cardio("send", "--card", path, VERIFY_WRONG).returncode == 0
    before = path.read_bytes()
    assert tries_left(path) == 5

    result = cardio("card", "new", "--profile", "resident-new", path)
    assert result.returncode == 1
    assert "--force" in result.stderr
    assert str(path) in result.stderr
    assert result.stdout == ""
    assert path.read_bytes() == before

    result = cardio("card", "new", "--profile", "resident-new", path, "--force")
    assert result.returncode == 0, result.stderr
    assert path.read_bytes() != before
    doc = card_json(path)
    assert doc["profile"] == "resident-new"
    assert doc["tries_left"] == 6
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_new_unknown_profile_exits_2_naming_list_profiles(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    result = cardio("card", "new", "--profile", "no-such-profile", path)
    assert result.returncode == 2
    assert "list-profiles" in result.stderr
    assert "no-such-profile" in result.stderr
    assert "Traceback" not in result.stderr
    assert not path.exists()


def test_new_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "card.json"
    result = cardio("card", "new", "--profile", "employee-new", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(path.parent) in result.stderr
    assert "no such folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not path.parent.exists()


# --- card show ------------------------------------------------------------------------


SECRET_KEYS = ("pin_salt", "pin_sha256")


def assert_nothing_secret(text: str, path: Path) -> None:
    doc = card_json(path)
    holder, secrets = doc["holder"], doc["secrets"]
    assert isinstance(holder, dict) and isinstance(secrets, dict)
    assert holder["ssn"] not in text
    assert holder["name"] not in text
    for key in SECRET_KEYS:
        value = str(secrets[key])
        assert value.lower() not in text.lower(), key
        assert key not in text
    keys = secrets["keys"]
    assert isinstance(keys, dict)
    for name, value in keys.items():  # the card's own keys: never shown
        assert str(value).lower() not in text.lower(), name
    assert_no_pin(text, INITIAL_PIN, ENABLED_PIN)


def test_show_prints_state_and_masked_holder(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new")
    result = cardio("card", "show", path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^life cycle\s+ACTIVE$", out, re.M), out
    assert re.search(r"^PIN state\s+INITIAL$", out, re.M), out
    assert re.search(r"^tries left\s+6 of 6$", out, re.M), out
    assert re.search(r"^card number\s+A93230742$", out, re.M), out
    assert re.search(r"^holder\s+张\*\s+3101\*{10}2174$", out, re.M), out
    assert_nothing_secret(out + result.stderr, path)


def test_show_of_a_locked_card_says_blocked(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    result = cardio("card", "show", path)
    assert result.returncode == 0
    assert re.search(r"^tries left\s+0 of 6 \(blocked\)$", result.stdout, re.M), result.stdout
    assert re.search(r"^PIN state\s+ENABLED$", result.stdout, re.M)
    assert_nothing_secret(result.stdout, path)


def test_show_json_is_one_object(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new")
    result = cardio("card", "show", path, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    info = json.loads(result.stdout)
    assert isinstance(info, dict)
    assert info["life_cycle"] == "ACTIVE"
    assert info["pin_state"] == "INITIAL"
    assert info["tries_left"] == 6
    assert info["try_limit"] == 6
    assert info["card_number"] == "A93230742"
    assert info["holder"] == {"name": "张*", "ssn": "3101**********2174"}
    assert_nothing_secret(result.stdout, path)


@pytest.mark.parametrize("profile", PROFILES)
def test_show_json_for_every_profile(tmp_path: Path, profile: str, capsys) -> None:
    path = new_card(tmp_path, profile)
    capsys.readouterr()
    code, out = run_main(["card", "show", str(path), "--json"])
    assert code == 0
    info = json.loads(out)
    scheme, category, life, pin_state, tries, limit = EXPECTED_STATE[profile]
    assert info["life_cycle"] == life
    assert info["pin_state"] == pin_state
    assert info["tries_left"] == tries
    assert info["try_limit"] == limit
    assert info["scheme"] == scheme
    assert info["category"] == category
    assert info["blocked"] is (tries == 0)
    assert info["t0_style"] is (profile == "t0-employee-new")
    assert info["spec_version"] == "2.00"
    assert info["real_only"] is False
    assert_nothing_secret(out, path)
    # the plain form tells the same numbers
    code, plain = run_main(["card", "show", str(path)])
    assert code == 0
    assert re.search(rf"^life cycle\s+{life}$", plain, re.M), plain
    assert re.search(rf"^PIN state\s+{pin_state}$", plain, re.M), plain
    assert re.search(rf"^tries left\s+{tries} of {limit}\b", plain, re.M), plain
    assert_nothing_secret(plain, path)


@pytest.mark.parametrize(
    ("profile", "key", "value"),
    [
        ("locked", "tries_left", 0),
        ("not-activated", "life_cycle", "NOT_ACTIVATED"),
        ("disabled", "pin_state", "DISABLED"),
    ],
)
def test_show_json_special_states_as_a_subprocess(
    tmp_path: Path, profile: str, key: str, value: object
) -> None:
    path = new_card(tmp_path, profile)
    result = cardio("card", "show", "--json", path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[key] == value


def test_show_follows_the_card_file(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new")
    assert cardio("send", "--card", path, VERIFY_WRONG, VERIFY_WRONG).returncode == 0
    info = json.loads(cardio("card", "show", path, "--json").stdout)
    assert (info["tries_left"], info["try_limit"]) == (4, 6)


def test_show_missing_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    result = cardio("card", "show", path)
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "cardio card new" in result.stderr
    assert result.stdout == ""


def test_show_damaged_file_exits_2_and_leaves_it(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new")
    doc = card_json(path)
    doc["tries_left"] = 99
    damaged = json.dumps(doc).encode()
    path.write_bytes(damaged)
    result = cardio("card", "show", path)
    assert result.returncode == 2
    assert "tries_left" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == damaged


# --- send -------------------------------------------------------------------------------


def test_send_prints_commands_and_responses(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new")
    result = cardio(
        "send",
        "--card",
        path,
        "00A404000F7378312E73682EC9E7BBE1B1A3D5CF",  # no spaces
        "00 b2 07 2c 00",  # lower case, spaces; Le 00 -> 6Cxx (part 5 §6.10.4)
        "00 b2 07 2c 0b",
        GET_PIN_DATA,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "> " + SELECT_SSSE,
        SSSE_FCI_LINE,
        "> 00 B2 07 2C 00",
        "< 6C 0B",  # raw exchanges: send does not resend
        "> 00 B2 07 2C 0B",
        "< 07 09 41 39 33 32 33 30 37 34 32 90 00",  # record 07: card number A93230742
        "> 80 CA 00 C1 00",
        "< C1 04 01 00 06 06 90 00",
    ]
    assert result.stderr == ""
    assert_trace_format(result.stdout)


def test_send_accepts_odd_spacing(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    code, out = run_main(["send", "--card", str(path), "  80  ca 00c1   00 ", "80\tCA00 C1\t00"])
    assert code == 0
    assert out.splitlines() == ["> 80 CA 00 C1 00", "< C1 04 01 00 06 06 90 00"] * 2


def test_send_masks_verify_and_change_pin(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-new")
    result = cardio(
        "send",
        "--card",
        path,
        VERIFY_WRONG,
        VERIFY_RIGHT,
        VERIFY_STATUS,
        CHANGE_PIN,
        "00 20 00 00 03 65 43 21",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        VERIFY_MASKED,
        "< 63 C5",
        VERIFY_MASKED,
        "< 90 00",
        "> 00 20 00 00",
        "< 90 00",
        CHANGE_MASKED,
        "< 90 00",
        VERIFY_MASKED,
        "< 90 00",
    ]
    assert_trace_format(result.stdout)
    assert_no_pin(result.stdout + result.stderr, "123456", "123457", "654321")
    doc = card_json(path)
    assert (doc["pin_state"], doc["tries_left"]) == ("ENABLED", 6)


def test_send_masks_the_enabled_pin(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    result = cardio("send", "--card", path, "00200000 03 802613", "00 20 00 00 03 80 26 14")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [VERIFY_MASKED, "< 90 00", VERIFY_MASKED, "< 63 C5"]
    assert_no_pin(result.stdout + result.stderr, "802613", "802614")


@pytest.mark.parametrize(
    ("apdu", "response"),
    [
        (VERIFY_WRONG, "< 63 C5"),  # wrong PIN
        ("00 10 00 00", "< 6D 00"),  # unknown INS
        ("A0 A4 00 00", "< 6E 00"),  # unknown CLA
        ("00 A4", "< 67 00"),  # too short
        ("00 A4 00 00 02 DF 99", "< 6A 82"),  # no such file
    ],
)
def test_send_exits_0_whatever_the_status_word(tmp_path: Path, apdu: str, response: str) -> None:
    path = new_card(tmp_path)
    result = cardio("send", "--card", path, apdu)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == response
    assert len(result.stdout.splitlines()) == 2


def test_send_to_a_blocked_and_a_not_activated_card(tmp_path: Path) -> None:
    locked = new_card(tmp_path, "locked")
    result = cardio("send", "--card", locked, "00 20 00 00 03 80 26 13", VERIFY_STATUS)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [VERIFY_MASKED, "< 69 83", "> 00 20 00 00", "< 69 83"]
    assert tries_left(locked) == 0
    inactive = new_card(tmp_path, "not-activated")
    result = cardio("send", "--card", inactive, VERIFY_WRONG)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [VERIFY_MASKED, "< 69 85"]
    assert tries_left(inactive) == 6


@pytest.mark.parametrize("bad", ["00A4040", "00 A4 04 0", "00 ZZ 04 00", "hello", "", "0x00A40400"])
def test_send_malformed_argument_exits_2_before_sending(tmp_path: Path, bad: str) -> None:
    path = new_card(tmp_path)
    before = path.read_bytes()
    result = cardio("send", "--card", path, VERIFY_WRONG, bad, GET_PIN_DATA)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "APDU 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert tries_left(path) == 6
    assert path.read_bytes() == before
    assert_no_pin(result.stderr, "123457")


def test_send_malformed_argument_in_process(tmp_path: Path, capsys) -> None:
    path = new_card(tmp_path)
    capsys.readouterr()
    code, out = run_main(["send", "--card", str(path), VERIFY_WRONG, "00 A4 0"])
    assert code == 2
    assert out == ""
    err = capsys.readouterr().err
    assert err.startswith("cardio: APDU 2: ")
    assert "odd number of hex digits" in err
    assert tries_left(path) == 6


def test_send_missing_card_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    result = cardio("send", "--card", path, GET_PIN_DATA)
    assert result.returncode == 1
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert "cardio card new" in result.stderr
    assert not path.exists()


def test_send_to_a_card_in_use_exits_1_naming_the_holder(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    before = path.read_bytes()
    holder = store.FileStore(path)
    holder.open()
    try:
        result = cardio("send", "--card", path, VERIFY_WRONG)
    finally:
        holder.close()
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"pid {os.getpid()}" in result.stderr
    assert "in use" in result.stderr
    assert path.read_bytes() == before
    # released: the next one gets it
    result = cardio("send", "--card", path, VERIFY_WRONG)
    assert result.returncode == 0
    assert tries_left(path) == 5


def test_send_state_persists_between_runs(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    first = cardio("send", "--card", path, VERIFY_WRONG)
    assert first.returncode == 0
    assert first.stdout.splitlines() == [VERIFY_MASKED, "< 63 C5"]
    second = cardio("send", "--card", path, GET_PIN_DATA)
    assert second.returncode == 0
    assert second.stdout.splitlines() == ["> 80 CA 00 C1 00", "< C1 04 01 00 05 06 90 00"]


def test_send_each_run_starts_a_fresh_session(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    first = cardio("send", "--card", path, VERIFY_RIGHT, VERIFY_STATUS)
    assert first.returncode == 0
    assert first.stdout.splitlines() == [VERIFY_MASKED, "< 90 00", "> 00 20 00 00", "< 90 00"]
    second = cardio("send", "--card", path, VERIFY_STATUS)
    assert second.returncode == 0
    assert second.stdout.splitlines() == ["> 00 20 00 00", "< 63 C6"]


def test_send_needs_at_least_one_apdu_and_a_card(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    assert cardio("send", "--card", path).returncode == 2
    assert cardio("send", GET_PIN_DATA).returncode == 2


# --- script -----------------------------------------------------------------------------


SCRIPT = f"""\
# a session, scriptor style
{SELECT_SSSE}   # select SSSE

00200000 03 123456
  00 20 00 00     # status: verified
reset
# after the reset the session is gone
00 20 00 00
80ca00c100
exit
{VERIFY_WRONG}
{VERIFY_WRONG}
"""


def test_script_runs_a_scriptor_file(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    script = tmp_path / "session.apdu"
    script.write_text(SCRIPT, "utf-8")
    result = cardio("script", "--card", path, script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "> " + SELECT_SSSE,
        SSSE_FCI_LINE,
        VERIFY_MASKED,
        "< 90 00",
        "> 00 20 00 00",
        "< 90 00",
        "> reset",
        ATR_LINE,
        "> 00 20 00 00",
        "< 63 C6",
        "> 80 CA 00 C1 00",
        "< C1 04 01 00 06 06 90 00",
    ]
    assert result.stderr == ""
    assert_trace_format(result.stdout)
    assert_no_pin(result.stdout + result.stderr, "123456", "123457")
    assert tries_left(path) == 6  # nothing after 'exit' was sent


def test_script_output_matches_send(tmp_path: Path) -> None:
    a = new_card(tmp_path, "employee-new", "a.json")
    b = new_card(tmp_path, "employee-new", "b.json")
    apdus = [SELECT_SSSE, VERIFY_WRONG, CHANGE_PIN, "00 B2 07 2C 00", "00 10 00 00"]
    script = tmp_path / "s.apdu"
    script.write_text("\n".join(apdus) + "\n", "utf-8")
    sent = cardio("send", "--card", a, *apdus)
    scripted = cardio("script", "--card", b, script)
    assert sent.returncode == scripted.returncode == 0
    assert scripted.stdout == sent.stdout
    assert CHANGE_MASKED in scripted.stdout.splitlines()
    assert_no_pin(scripted.stdout, "123456", "123457", "654321")


def test_script_in_process(tmp_path: Path) -> None:
    path = new_card(tmp_path)
    script = tmp_path / "s.apdu"
    script.write_text(f"{VERIFY_RIGHT}\nRESET\n{VERIFY_STATUS}\n", "utf-8")
    code, out = run_main(["script", "--card", str(path), str(script)])
    assert code == 0
    assert out.splitlines() == [
        VERIFY_MASKED,
        "< 90 00",
        "> reset",
        ATR_LINE,
        "> 00 20 00 00",
        "< 63 C6",
    ]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [("00 A4 04 0", "odd number of hex digits"), ("SELECT SSSE", "is not a hex digit")],
)
def test_script_malformed_line_exits_2_with_file_and_line(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = new_card(tmp_path)
    before = path.read_bytes()
    script = tmp_path / "bad.apdu"
    script.write_text(
        f"# wrong PIN first\n{VERIFY_WRONG}\n\n{GET_PIN_DATA}  # fine\n"
        f"{bad_line}\n{VERIFY_WRONG}\n",
        "utf-8",
    )
    result = cardio("script", "--card", path, script)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{script}:5" in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert tries_left(path) == 6
    assert path.read_bytes() == before


def test_script_missing_card_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "s.apdu"
    script.write_text(GET_PIN_DATA + "\n", "utf-8")
    result = cardio("script", "--card", tmp_path / "missing.json", script)
    assert result.returncode == 1
    assert result.stdout == ""


# --- usage ------------------------------------------------------------------------------


USAGE_ERRORS = [
    # (argv, the prog that complains)
    ([], "cardio"),
    (["frobnicate"], "cardio"),
    (["card"], "cardio card"),
    (["card", "explode"], "cardio card"),
    (["card", "new", "x.json"], "cardio card new"),
    (["card", "new"], "cardio card new"),
    (["card", "show"], "cardio card show"),
    (["script", "--card", "x.json"], "cardio script"),
    (["send", "--card", "x.json", "--reader", "0", "00 84 00 00 08"], "cardio send"),
    (["outlet", "explode", "--card", "x.json", "--id", "1", "--test-key"], "cardio outlet"),
    (["--bogus"], "cardio"),
]


@pytest.mark.parametrize(
    ("argv", "prog"), USAGE_ERRORS, ids=[" ".join(a) or "none" for a, _ in USAGE_ERRORS]
)
def test_usage_errors_are_one_line_exit_2(tmp_path: Path, argv: list[str], prog: str) -> None:
    """Not the usage block: `PROG: what is wrong; see PROG --help`."""
    result = cardio(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{prog}: ")
    assert result.stderr.endswith(f"; see {prog} --help\n")
    assert "usage:" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_missing_argument_of_card_new_names_it(tmp_path: Path) -> None:
    result = cardio("card", "new", cwd=tmp_path)
    assert result.stderr == (
        "cardio card new: the following arguments are required: "
        "--profile, path; see cardio card new --help\n"
    )


@pytest.mark.parametrize("argv", [[], ["frobnicate"]])
def test_usage_errors_in_process(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv, out=io.StringIO())
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cardio: ") and "usage:" not in err


def test_show_tells_the_version_and_real_only(tmp_path: Path, capsys) -> None:
    path = tmp_path / "strict.json"
    code, _ = run_main(
        [
            "card",
            "new",
            "--profile",
            "employee-new",
            "--spec-version",
            "3.00",
            "--real-only",
            str(path),
        ]
    )
    assert code == 0
    capsys.readouterr()
    code, out = run_main(["card", "show", str(path), "--json"])
    info = json.loads(out)
    assert (info["spec_version"], info["real_only"]) == ("3.00", True)
    code, plain = run_main(["card", "show", str(path)])
    assert re.search(r"^version\s+3\.00 \(real-only: no extensions\)$", plain, re.M), plain

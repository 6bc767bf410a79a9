"""Protocol names once (issue 10): the wire values behind the names, pinned here by hand.

CLA/INS bytes, file ids, SFIs, record tags, the wire bytes of the card's states, and the
scheme and category codes are named in `cardio.model`; status words in `cardio.sw`.
Every other module uses the names. These tests pin each name's value (renaming or
reordering a member must never change a byte the card answers) and scan the sources
so that the literals cannot creep back.
"""

from __future__ import annotations

import ast
from enum import Enum
from pathlib import Path

import pytest
from card_helpers import h, send

from cardio import sw
from cardio.card.card import VirtualCard
from cardio.card.profiles import load
from cardio.model import (
    LIFE_CYCLE_BYTES,
    PIN_STATE_BYTES,
    PIN_STATE_OF_BYTE,
    PIN_STATUS_LENGTH,
    PIN_STATUS_TAG,
    Algorithm,
    Category,
    CipherOp,
    Cla,
    DirTag,
    Fid,
    Ins,
    LifeCycle,
    MedicalTag,
    PinState,
    PsamCla,
    PsamFid,
    PsamIns,
    RecordMode,
    Scheme,
    SelectBy,
    SelectResponse,
    Sfi,
    Tag,
)
from cardio.sw import MEANINGS, Sw

ROOT = Path(__file__).resolve().parent.parent

# --- the values, written out by hand (docs/card.md §2, §3) ---------------------------

WIRE: dict[type[Enum], dict[str, int | str]] = {
    Sw: {
        "OK": 0x9000,
        "MEMORY_FAILURE": 0x6581,
        "WRONG_LENGTH": 0x6700,
        "NOT_ACCEPTED": 0x6901,
        "INCOMPATIBLE_FILE": 0x6981,
        "SECURITY_NOT_SATISFIED": 0x6982,
        "PIN_BLOCKED": 0x6983,
        "NO_CHALLENGE": 0x6984,
        "CONDITIONS_NOT_SATISFIED": 0x6985,
        "NO_CURRENT_EF": 0x6986,
        "MAC_MISSING": 0x6987,
        "MAC_WRONG": 0x6988,
        "WRONG_DATA": 0x6A80,
        "FUNCTION_NOT_SUPPORTED": 0x6A81,
        "FILE_NOT_FOUND": 0x6A82,
        "RECORD_NOT_FOUND": 0x6A83,
        "LC_INCONSISTENT": 0x6A85,
        "WRONG_P1P2": 0x6A86,
        "DATA_NOT_FOUND": 0x6A88,
        "WRONG_OFFSET": 0x6B00,
        "INS_NOT_SUPPORTED": 0x6D00,
        "CLA_NOT_SUPPORTED": 0x6E00,
        "NO_DIAGNOSIS": 0x6F00,
        "APPLICATION_BLOCKED": 0x9303,
    },
    Cla: {"ISO": 0x00, "PROPRIETARY": 0x80, "SECURE_MESSAGING": 0x84},
    Ins: {
        "VERIFY": 0x20,
        "CHANGE_REFERENCE": 0x24,
        "RESET_RETRY": 0x2C,
        "CHANGE_PIN": 0x5E,
        "GET_CHALLENGE": 0x84,
        "OUTLET_ACTIVATE": 0x18,
        "APPLICATION_BLOCK": 0x1E,
        "EXTERNAL_AUTHENTICATE": 0x82,
        "INTERNAL_AUTHENTICATE": 0x88,
        "SELECT": 0xA4,
        "READ_BINARY": 0xB0,
        "READ_RECORD": 0xB2,
        "UPDATE_RECORD": 0xDC,
        "GET_RESPONSE": 0xC0,
        "GET_DATA": 0xCA,
    },
    Fid: {
        "MF": 0x3F00,
        "EF05": 0xEF05,
        "EF06": 0xEF06,
        "EF07": 0xEF07,
        "EF08": 0xEF08,
        "DF04": 0xDF04,
    },
    Sfi: {"EF05": 0x05, "EF06": 0x06, "EF07": 0x07, "EF08": 0x08, "DIR": 0x0F},
    Tag: {
        "IDENTIFICATION_CODE": 0x01,
        "CATEGORY": 0x02,
        "SPEC_VERSION": 0x03,
        "ISSUER": 0x04,
        "ISSUE_DATE": 0x05,
        "EXPIRY_DATE": 0x06,
        "CARD_NUMBER": 0x07,
        "SSN": 0x08,
        "NAME": 0x09,
        "NAME_EXTENSION": 0x4E,
        "SEX": 0x0A,
        "ETHNIC": 0x0B,
        "BIRTHPLACE": 0x0C,
        "BIRTH_DATE": 0x0D,
    },
    MedicalTag: {"SCHEME": 0x81, "INSURED_REGION": 0x84},
    DirTag: {"APPLICATION": 0x61, "AID": 0x4F, "LABEL": 0x50},
    PsamCla: {"ISO": 0x00, "PROPRIETARY": 0x80, "ENVIRONMENT": 0xBF},
    PsamIns: {
        "SELECT": 0xA4,
        "READ_BINARY": 0xB0,
        "GET_CHALLENGE": 0x84,
        "GET_RESPONSE": 0xC0,
        "INITIALIZE_ENVIRONMENT": 0xEC,
        "DELIVERY_SESSION_KEY": 0xDE,
        "CIPHER_DATA": 0xFA,
    },
    PsamFid: {"MF": 0x3F00, "ADF": 0xDF01, "INFO": 0x0015, "TERMINAL": 0x0016, "SERIAL": 0x0019},
    CipherOp: {
        "ENCRYPT": 0x00,
        "ENCRYPT_MORE": 0x02,
        "MAC": 0x05,
        "MAC_FIRST": 0x07,
        "MAC_NEXT": 0x03,
        "MAC_LAST": 0x01,
    },
    RecordMode: {
        "FIRST": 0b000,
        "LAST": 0b001,
        "NEXT": 0b010,
        "PREVIOUS": 0b011,
        "NUMBER": 0b100,
        "NUMBER_TO_LAST": 0b101,
        "LAST_TO_NUMBER": 0b110,
    },
    SelectBy: {"FID": 0x00, "CHILD_DF": 0x01, "EF": 0x02, "NAME": 0x04},
    SelectResponse: {"FCI": 0x00, "NEXT": 0x02, "NO_FCI": 0x0C},
    Algorithm: {"DES": 0x01, "SSF33": 0x02, "SM4": 0x03},
    Category: {"SOCIAL_SECURITY": "1", "OLD_MEDICAL": "L"},
    Scheme: {"EMPLOYEE_MEDICAL": "310", "RESIDENT_MEDICAL": "390", "RESIDENT_PENSION": "170"},
    LifeCycle: {"NOT_ACTIVATED": "NOT_ACTIVATED", "ACTIVE": "ACTIVE"},
    PinState: {"INITIAL": "INITIAL", "ENABLED": "ENABLED", "DISABLED": "DISABLED"},
}
LIFE_CYCLE_WIRE = {"NOT_ACTIVATED": 0x00, "ACTIVE": 0x01}
PIN_STATE_WIRE = {"INITIAL": 0x00, "ENABLED": 0x01, "DISABLED": 0x02}


@pytest.mark.parametrize("enum", list(WIRE), ids=lambda e: e.__name__)
def test_every_name_has_its_wire_value_and_no_other(enum: type[Enum]) -> None:
    assert {name: m.value for name, m in enum.__members__.items()} == WIRE[enum]


@pytest.mark.parametrize("enum", list(WIRE), ids=lambda e: e.__name__)
def test_no_two_names_share_a_value(enum: type[Enum]) -> None:
    """An alias would answer with the other name (`Tag.X is Tag.Y`): none allowed."""
    assert len(enum.__members__) == len(list(enum))


def test_the_state_bytes_are_explicit_mappings_not_enum_order() -> None:
    assert {s.name: b for s, b in LIFE_CYCLE_BYTES.items()} == LIFE_CYCLE_WIRE
    assert {s.name: b for s, b in PIN_STATE_BYTES.items()} == PIN_STATE_WIRE
    assert {b: s.name for b, s in PIN_STATE_OF_BYTE.items()} == {
        b: name for name, b in PIN_STATE_WIRE.items()
    }
    assert (PIN_STATUS_TAG, PIN_STATUS_LENGTH) == (0xC1, 4)


@pytest.mark.parametrize("pin_state", list(PinState))
@pytest.mark.parametrize("life_cycle", list(LifeCycle))
def test_get_data_answers_the_pinned_bytes(pin_state: PinState, life_cycle: LifeCycle) -> None:
    state = load("employee-new").with_(pin_state=pin_state, life_cycle=life_cycle)
    card = VirtualCard(state)
    card.power_on()
    answer = bytes(
        (0xC1, 0x04, LIFE_CYCLE_WIRE[life_cycle.name], PIN_STATE_WIRE[pin_state.name], 6, 6)
    )
    assert send(card, "80 CA 00 C1 00") == answer + h("90 00")


# --- status words: meanings and families ---------------------------------------------


def test_every_status_word_has_one_meaning() -> None:
    assert set(MEANINGS) == set(Sw)
    assert all(MEANINGS[s] for s in Sw)
    assert len(set(MEANINGS.values())) == len(MEANINGS)
    for s in Sw:
        assert sw.meaning(s) == sw.meaning(int(s)) == MEANINGS[s]
        assert str(sw.CardError(s)) == f"{int(s):04X} {MEANINGS[s]}"
        assert sw.split(s) == int(s).to_bytes(2, "big")


def test_the_families_are_built_and_read_back() -> None:
    assert [sw.wrong_pin(n) for n in (0, 5, 15)] == [0x63C0, 0x63C5, 0x63CF]
    assert [sw.bytes_available(n) for n in (0, 0x13, 256)] == [0x6100, 0x6113, 0x6100]
    assert [sw.wrong_le(n) for n in (0, 8, 0xFF)] == [0x6C00, 0x6C08, 0x6CFF]
    for n in range(16):
        assert sw.tries_left(sw.wrong_pin(n)) == n
        assert sw.meaning(sw.wrong_pin(n)) == f"wrong PIN, {n} tries left"
    for n in range(256):
        assert sw.available(sw.bytes_available(n)) == n
        assert sw.right_le(sw.wrong_le(n)) == n
    assert sw.meaning(0x6100) == "256 bytes available"
    assert sw.meaning(0x6C08) == "wrong Le, use 08"
    assert sw.meaning(0x6400) == "unknown status"


def test_no_family_member_is_a_fixed_word() -> None:
    family = {sw.wrong_pin(n) for n in range(16)}
    family |= {sw.bytes_available(n) for n in range(256)} | {sw.wrong_le(n) for n in range(256)}
    assert not family & set(Sw)
    for s in Sw:
        assert (sw.tries_left(s), sw.available(s), sw.right_le(s)) == (None, None, None)


# --- the sources: no literal where a name exists --------------------------------------

SCANNED = ("cardio", "host", "terminal")
NAME_HOMES = {ROOT / "cardio" / "model.py", ROOT / "cardio" / "sw.py"}
FILE_IDS = {0x3F00, 0xDF04, 0xEF05, 0xEF06, 0xEF07, 0xEF08}
SCHEME_CODES = {"310", "390", "170"}
# Files known to still spell a scheme code out, each with the reason. The test fails as
# soon as one no longer needs its entry, so the list can only shrink.
SCHEME_LITERALS_PENDING: dict[str, str] = {}  # file -> why it still spells codes out
# Calls whose protocol bytes must be names: the function, and which positional
# arguments (None: all) must not be an int literal.
NAMED_ARGUMENTS: dict[str, tuple[int, ...] | None] = {
    "command": (0, 1),  # CLA, INS
    "secure_apdu": (3, 4),  # (alg|key, key|card, challenge, CLA, INS, ...)
    "Ef": None,  # fid, sfi
    "Df": None,
    "_record": None,  # sfi, tag
    "_text": None,
}


def _sources() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py") if p not in NAME_HOMES)


def _is_int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _status_word_like(value: int) -> bool:
    return value == 0x9000 or 0x6100 <= value <= 0x6FFF


def _findings(path: Path, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(literals that have a name, scheme codes spelled out) in one source file, each
    as 'file:line: what'."""
    where = path.relative_to(root).as_posix()
    literals: list[str] = []
    schemes: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), where)):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if _status_word_like(node.value):
                literals.append(f"{where}:{node.lineno}: status word {node.value:04X} (Sw)")
            elif node.value in FILE_IDS:
                literals.append(f"{where}:{node.lineno}: file id {node.value:04X} (Fid)")
        elif isinstance(node, ast.Constant) and node.value in SCHEME_CODES:
            schemes.append(f"{where}:{node.lineno}: scheme {node.value} (Scheme)")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in NAMED_ARGUMENTS:
                continue
            positions = NAMED_ARGUMENTS[name]
            for i, arg in enumerate(node.args):
                if (positions is None or i in positions) and _is_int(arg):
                    literals.append(f"{where}:{node.lineno}: {name}() argument {i} is a literal")
            if name == "Ef" and len(node.args) > 2 and isinstance(node.args[2], ast.Dict):
                literals += [
                    f"{where}:{node.lineno}: Ef record tag is a literal"
                    for key in node.args[2].keys
                    if key is not None and _is_int(key)
                ]
    return literals, schemes


def test_the_scan_sees_what_it_looks_for(tmp_path: Path) -> None:
    """The scan itself: each kind of literal it forbids is found in a made-up file."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "if status == 0x9000 or status == 0x6A82: raise CardError(0x6985)\n"
        "command(0x00, 0xA4, 0x00, 0x00, (0xDF04).to_bytes(2, 'big'))\n"
        "secure_apdu(alg, key, challenge, 0x84, 0x24, 0, 0, b'')\n"
        "Ef(0xEF05, 0x05, {0x01: b''})\n"
        "x._text(0x05, 0x02)\n"
        "forced = scheme == '310'\n",
        "utf-8",
    )
    literals, schemes = _findings(bad, tmp_path)
    lines = [int(line.split(":")[1]) for line in literals]
    # 3 status words; CLA, INS and a file id; CLA, INS; fid (twice: a file id, and an
    # argument), sfi, a tag; sfi, tag. The scheme on the last line.
    assert sorted(lines) == [1] * 3 + [2] * 3 + [3] * 2 + [4] * 4 + [5] * 2, literals
    assert [int(line.split(":")[1]) for line in schemes] == [6]


def test_no_status_word_file_id_or_protocol_byte_is_spelled_out() -> None:
    found = [line for path in _sources() for line in _findings(path)[0]]
    assert found == [], "use the names in cardio.model / cardio.sw:\n" + "\n".join(found)


def test_no_scheme_code_is_spelled_out() -> None:
    found: dict[str, list[str]] = {}
    for path in _sources():
        schemes = _findings(path)[1]
        if schemes:
            found[path.relative_to(ROOT).as_posix()] = schemes
    unexpected = [
        line
        for where, lines in found.items()
        if where not in SCHEME_LITERALS_PENDING
        for line in lines
    ]
    assert unexpected == [], "use cardio.model.Scheme:\n" + "\n".join(unexpected)
    stale = sorted(set(SCHEME_LITERALS_PENDING) - set(found))
    assert stale == [], f"no scheme literal left in {stale}: remove it from the pending list"

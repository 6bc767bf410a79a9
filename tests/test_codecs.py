"""The plain codecs: cardio.apdu, cardio.pin, cardio.trace, cardio.identity (the
security algorithms' own known answers: tests/test_security.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardio import identity, pin, trace
from cardio.apdu import Apdu, HexError, command, parse_hex, split_response, to_hex
from cardio.sw import CardError

# ---------------------------------------------------------------------------
# cardio.apdu
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00 A4 04 00", b"\x00\xa4\x04\x00"),
        ("00a40400", b"\x00\xa4\x04\x00"),
        ("00:A4:04:00", b"\x00\xa4\x04\x00"),
        ("  00 a4\t04\n00  ", b"\x00\xa4\x04\x00"),
        ("ff", b"\xff"),
    ],
)
def test_parse_hex_accepts_spaces_colons_and_case(text, expected):
    assert parse_hex(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no bytes"),
        ("   ", "no bytes"),
        (": :", "no bytes"),
        ("0", "odd number of hex digits (1)"),
        ("00 A", "odd number of hex digits (3)"),
        ("0g", "'g' is not a hex digit"),
        ("0x00", "'x' is not a hex digit"),
        ("00-A", "'-' is not a hex digit"),
    ],
)
def test_parse_hex_errors_say_why(text, reason):
    with pytest.raises(HexError) as info:
        parse_hex(text)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_to_hex_is_upper_case_space_separated():
    assert to_hex(b"\x00\xa4\x04\x00\x0f") == "00 A4 04 00 0F"
    assert to_hex(b"") == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00 20 00 00", Apdu(0x00, 0x20, 0x00, 0x00)),  # case 1
        ("80 CA 00 C1 06", Apdu(0x80, 0xCA, 0x00, 0xC1, le=6)),  # case 2
        ("80 CA 00 C1 00", Apdu(0x80, 0xCA, 0x00, 0xC1, le=256)),  # Le 00 = 256
        ("00 A4 00 00 02 3F 00", Apdu(0x00, 0xA4, 0x00, 0x00, b"\x3f\x00")),  # case 3
        ("00 A4 04 00 02 3F 00 00", Apdu(0x00, 0xA4, 0x04, 0x00, b"\x3f\x00", 256)),  # case 4
        ("00 A4 04 00 01 3F 10", Apdu(0x00, 0xA4, 0x04, 0x00, b"\x3f", 0x10)),
    ],
)
def test_apdu_parse_the_four_cases(raw, expected):
    parsed = Apdu.parse(parse_hex(raw))
    assert parsed == expected
    assert parsed.to_bytes() == parse_hex(raw)


def test_apdu_lc_and_has_data():
    a = Apdu.parse(parse_hex("80 5E 01 00 07 12 34 56 FF 65 43 21"))
    assert (a.cla, a.ins, a.p1, a.p2) == (0x80, 0x5E, 0x01, 0x00)
    assert a.lc == 7 and a.has_data and a.le is None
    b = Apdu.parse(parse_hex("00 84 00 00 08"))
    assert b.lc == 0 and not b.has_data and b.le == 8


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00",
        "00 A4",
        "00 A4 04",
        "00 A4 00 00 03 3F 00",  # Lc longer than the data
        "00 A4 00 00 01 3F 00 00 00",  # data longer than Lc + Le
        "00 B2 01 2C 00 00 20",  # extended Le
        "00 A4 04 00 00 00 02 3F 00",  # extended Lc
        "00 B2 01 2C 00 20",  # Lc 00: an extended field, cut short
    ],
)
def test_apdu_parse_refuses_with_6700(raw):
    with pytest.raises(CardError) as info:
        Apdu.parse(parse_hex(raw) if raw else b"")
    assert info.value.sw == 0x6700


def test_command_builds_short_apdus():
    assert command(0x00, 0xA4, 0x04, 0x00, b"\x3f\x00") == parse_hex("00 A4 04 00 02 3F 00")
    assert command(0x00, 0x84, 0x00, 0x00, le=8) == parse_hex("00 84 00 00 08")
    assert command(0x80, 0xCA, 0x00, 0xC1, le=256) == parse_hex("80 CA 00 C1 00")
    assert command(0x00, 0x20, 0x00, 0x00) == parse_hex("00 20 00 00")
    assert command(0x00, 0xB0, 0, 0, bytes(255), le=0x10)[4] == 0xFF


def test_command_refuses_more_than_255_data_bytes():
    with pytest.raises(ValueError):
        command(0x00, 0xD6, 0x00, 0x00, bytes(256))


@given(
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=255),
    le=st.none() | st.integers(1, 256),
)
def test_apdu_build_parse_round_trip(cla, ins, p1, p2, data, le):
    raw = command(cla, ins, p1, p2, data, le)
    assert Apdu.parse(raw) == Apdu(cla, ins, p1, p2, data, le)
    assert Apdu.parse(raw).to_bytes() == raw
    assert len(raw) == 4 + (1 + len(data) if data else 0) + (1 if le is not None else 0)


@given(st.binary(min_size=1, max_size=64))
def test_parse_hex_to_hex_round_trip(data):
    assert parse_hex(to_hex(data)) == data
    assert parse_hex(data.hex()) == data


def test_split_response():
    assert split_response(parse_hex("C1 04 01 00 06 06 90 00")) == (
        parse_hex("C1 04 01 00 06 06"),
        0x9000,
    )
    assert split_response(b"\x63\xc5") == (b"", 0x63C5)
    with pytest.raises(ValueError):
        split_response(b"\x90")


# ---------------------------------------------------------------------------
# cardio.pin
# ---------------------------------------------------------------------------


def test_pin_encode_is_packed_bcd():
    assert pin.encode("123456") == b"\x12\x34\x56"
    assert pin.encode("000000") == b"\x00\x00\x00"
    assert pin.encode("999999") == b"\x99\x99\x99"
    assert pin.encode("802613") == b"\x80\x26\x13"


def test_pin_decode():
    assert pin.decode(b"\x12\x34\x56") == "123456"
    assert pin.decode(b"\x00\x00\x01") == "000001"


@pytest.mark.parametrize(
    "block",
    [b"\x12\x34\x5a", b"\xf2\x34\x56", b"\x12\xff\x56", b"\x12\x34", b"\x12\x34\x56\x78", b""],
)
def test_pin_decode_refuses_non_digit_nibbles_and_wrong_length(block):
    assert pin.decode(block) is None


@given(st.integers(0, 999_999))
def test_pin_encode_decode_round_trip(n):
    text = f"{n:06d}"
    block = pin.encode(text)
    assert len(block) == 3
    assert pin.decode(block) == text


@pytest.mark.parametrize(
    "bad",
    ["12345", "1234567", "", "12345a", "12 456", "１２３４５６", "١٢٣٤٥٦", "+12345", "12345\n"],
)
def test_pin_check_format_refuses_without_showing_the_digits(bad):
    with pytest.raises(pin.PinFormatError) as info:
        pin.check_format(bad)
    message = str(info.value)
    assert bad.strip() == "" or bad not in message
    assert not any(ch.isdigit() and ch != "6" for ch in message)  # only "6 digits"
    with pytest.raises(pin.PinFormatError):
        pin.encode(bad)


def test_pin_check_format_accepts_six_ascii_digits():
    for good in ("123456", "000000", "999999"):
        assert pin.check_format(good) is None


def test_pin_change_block():
    assert pin.change_block("123456", "654321") == bytes.fromhex("123456FF654321")
    with pytest.raises(pin.PinFormatError):
        pin.change_block("123456", "65432")
    with pytest.raises(pin.PinFormatError):
        pin.change_block("12345x", "654321")


# ---------------------------------------------------------------------------
# cardio.trace
# ---------------------------------------------------------------------------


def test_mask_verify():
    assert trace.mask_command(parse_hex("00 20 00 00 03 12 34 56")) == "00 20 00 00 03 ** ** **"


def test_mask_verify_status_query_has_nothing_to_hide():
    assert trace.mask_command(parse_hex("00 20 00 00")) == "00 20 00 00"


def test_mask_change_pin_keeps_only_the_separator():
    cmd = parse_hex("80 5E 01 00 07 12 34 56 FF 65 43 21")
    assert trace.mask_command(cmd) == "80 5E 01 00 07 ** ** ** FF ** ** **"


def test_mask_change_pin_without_separator_hides_everything():
    cmd = parse_hex("80 5E 01 00 07 12 34 56 00 65 43 21")
    assert trace.mask_command(cmd) == "80 5E 01 00 07 ** ** ** ** ** ** **"


def test_mask_outlet_reset_hides_the_new_pin_and_its_mac():
    """The tester's finding: with the MAC shown, the card's challenge (in the same trace)
    and the issuer key give the new PIN back by trying all 10^6 of them."""
    cmd = parse_hex("84 5E 00 00 07 65 43 21 AA 3B 5C BF")
    assert trace.mask_command(cmd) == "84 5E 00 00 07 ** ** ** ** ** ** **"
    assert trace.command_line(cmd) == "> 84 5E 00 00 07 ** ** ** ** ** ** **"


@pytest.mark.parametrize(
    ("cmd", "shown"),
    [
        ("84 5E 00 01 04 12 34 56 78", "84 5E 00 01 04 ** ** ** **"),  # restore
        ("84 5E 00 02 04 12 34 56 78", "84 5E 00 02 04 ** ** ** **"),  # cancel
        ("84 5E 00 07 07 65 43 21 AA 3B 5C BF", "84 5E 00 07 07 ** ** ** ** ** ** **"),
        ("84 18 00 00 04 12 34 56 78", "84 18 00 00 04 ** ** ** **"),  # activate
        ("84 5E 00 00 07 65 43 21 AA 3B 5C BF 00", "84 5E 00 00 07 ** ** ** ** ** ** ** **"),
        # a MAC starting FF is not the separator of a plain CHANGE PIN
        ("84 5E 00 00 07 65 43 21 FF 3B 5C BF", "84 5E 00 00 07 ** ** ** ** ** ** **"),
        ("84 5E 01 00 07 12 34 56 FF 65 43 21", "84 5E 01 00 07 ** ** ** ** ** ** **"),
        # wrong Lc: where Lc should be may be a digit, so it goes too
        ("84 5E 00 00 08 65 43 21 AA 3B 5C BF", "84 5E 00 00 ** ** ** ** ** ** ** **"),
        ("84 5E 00 00 65 43 21 AA 3B 5C BF", "84 5E 00 00 ** ** ** ** ** ** **"),
        ("84 5E 00 00 07 65 43", "84 5E 00 00 ** ** **"),
        # extended length: 00 00 07, then the data
        ("84 5E 00 00 00 00 07 65 43 21 AA 3B 5C BF", "84 5E 00 00 00 00 07 ** ** ** ** ** ** **"),
        (
            "84 5E 00 00 00 00 07 65 43 21 AA 3B 5C BF 00 00",
            "84 5E 00 00 00 00 07 ** ** ** ** ** ** ** ** **",
        ),
        ("84 5E 00 00 00 00 09 65 43 21 AA 3B 5C BF", "84 5E 00 00 ** ** ** ** ** ** ** ** ** **"),
        ("00 20 00 00 00 00 03 12 34 56", "00 20 00 00 00 00 03 ** ** **"),
        ("84 5E 00 00 00 65 43", "84 5E 00 00 ** ** **"),
        ("84 5E 00 00 00", "84 5E 00 00 00"),  # a lone Le 00: nothing to hide
        ("84 5E 00 00 07", "84 5E 00 00 **"),
        ("8C 5E 00 00 04 12 34 56 78", "8C 5E 00 00 04 ** ** ** **"),  # other SM CLAs too
        ("0C 20 00 00 04 12 34 56 78", "0C 20 00 00 04 ** ** ** **"),
        ("64 B0 00 00 02 12 34", "64 B0 00 00 02 ** **"),
    ],
)
def test_mask_hides_every_data_byte_of_mac_and_pin_commands(cmd, shown):
    assert trace.mask_command(parse_hex(cmd)) == shown


@given(
    st.integers(100_000, 999_999),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 255),
    st.binary(max_size=3),
)
def test_mask_no_outlet_byte_after_the_header_is_ever_shown(new_n, mac_bytes, p2, tail):
    """Whatever P2, Lc or trailing bytes: of an 84 command only the header and a true Lc
    show. (From 100000: a PIN starting 000 could pass for an extended length, which
    shows as the length it is, like a true short Lc.)"""
    new = pin.encode(f"{new_n:06d}")
    for lc in (7, 4, 8, 0, 255):
        raw = bytes((0x84, 0x5E, 0x00, p2, lc)) + new + mac_bytes + tail
        cells = trace.mask_command(raw).split(" ")
        assert cells[:4] == to_hex(raw[:4]).split(" ")
        assert cells[5:] == ["**"] * (len(raw) - 5)


def test_mask_line_helpers():
    assert trace.command_line(parse_hex("00 20 00 00 03 12 34 56")) == "> 00 20 00 00 03 ** ** **"
    assert trace.response_line(parse_hex("63 C5")) == "< 63 C5"
    assert trace.response_line(parse_hex("C1 04 01 00 06 06 90 00")) == "< C1 04 01 00 06 06 90 00"


def _pin_cells(text: str) -> list[str]:
    return text.split(" ")[5:]


@given(st.integers(0, 999_999), st.integers(0, 999_999), st.binary(min_size=4, max_size=4))
def test_mask_no_pin_digit_ever_visible(old_n, new_n, mac_bytes):
    old, new = f"{old_n:06d}", f"{new_n:06d}"
    verify = bytes.fromhex("0020000003") + pin.encode(old)
    assert _pin_cells(trace.mask_command(verify)) == ["**"] * 3
    change = bytes.fromhex("805E010007") + pin.change_block(old, new)
    assert _pin_cells(trace.mask_command(change)) == ["**"] * 3 + ["FF"] + ["**"] * 3
    reset = bytes.fromhex("845E000007") + pin.encode(new) + mac_bytes
    assert _pin_cells(trace.mask_command(reset)) == ["**"] * 7
    # with a trailing Le byte too
    assert _pin_cells(trace.mask_command(verify + b"\x00")) == ["**"] * 4


@pytest.mark.parametrize(
    "cmd",
    [
        "00 20 00 00 12 34 56",  # Lc forgotten: the card reads 12 as Lc
        "00 20 00 00 12 34 56 00",
        "00 20 00 00 06 31 32 33 34 35 36",  # ASCII digits instead of BCD
        "00 20 00 00 04 12 34 56 FF",
    ],
)
def test_mask_no_pin_digit_visible_in_malformed_verify(cmd):
    """Whatever follows the VERIFY header can be PIN digits a person typed: none may show."""
    raw = parse_hex(cmd)
    cells = trace.mask_command(raw).split(" ")
    assert cells[:4] == ["00", "20", "00", "00"]
    assert len(cells) == len(raw)
    for i, cell in enumerate(cells[4:], start=4):
        if i == 4 and raw[4] == len(raw) - 5:
            continue  # a true Lc, which is no PIN digit
        assert cell == "**", f"byte {i} of {cmd} shown as {cell}"


@pytest.mark.parametrize(
    "cmd",
    [
        "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF",
        "00 A4 00 00 02 EF 05",
        "00 B2 01 2C 00",
        "80 CA 00 C1 00",
        "00 84 00 00 08",
        "00 C0 00 00 20",
        "84 18 00 00 00",  # a lone Le 00
    ],
)
def test_mask_other_commands_are_not_masked(cmd):
    raw = parse_hex(cmd)
    assert trace.mask_command(raw) == to_hex(raw)


# ---------------------------------------------------------------------------
# cardio.identity
# ---------------------------------------------------------------------------

# GB 11643-1999's own examples, and the fixture holders.
KNOWN_GOOD_IDS = [
    "11010519491231002X",
    "440524188001010014",
    "310104198503122174",
    "310101197911020480",
    "310106197012050397",
]

_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def _independent_check(first17: str) -> str:
    """ISO 7064 MOD 11-2 as printed in GB 11643: (12 - sum mod 11) mod 11, 10 -> X."""
    value = (12 - sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11) % 11
    return "X" if value == 10 else str(value)


@pytest.mark.parametrize("number", KNOWN_GOOD_IDS)
def test_identity_known_good_ids_are_valid(number):
    assert identity.check_digit(number[:17]) == number[17]
    assert _independent_check(number[:17]) == number[17]
    assert identity.id_problem(number) is None


def test_identity_check_digit_x():
    assert identity.check_digit("11010519491231002") == "X"


@given(st.integers(0, 10**17 - 1))
def test_identity_check_digit_matches_independent_formula(n):
    first17 = f"{n:017d}"
    assert identity.check_digit(first17) == _independent_check(first17)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("11010519491231002", "18 characters"),
        ("11010519491231002XX", "18 characters"),
        ("110105194912310021", "wrong check digit"),
        ("11010519491231002x", "digit or X"),
        ("1101051949123100X2", "digit or X"),
        ("A1010519491231002X", "digit or X"),
    ],
)
def test_identity_id_problem_says_why(number, reason):
    problem = identity.id_problem(number)
    assert problem is not None
    assert reason in problem


def test_identity_impossible_birth_date():
    first17 = "11010519490231002"  # 31 February 1949
    number = first17 + _independent_check(first17)
    assert identity.id_problem(number) == "has an impossible birth date"


def test_identity_birth_date_of():
    import datetime as dt

    assert identity.birth_date_of("11010519491231002X") == dt.date(1949, 12, 31)


def test_identity_mask_id_shows_first_4_and_last_4():
    assert identity.mask_id("11010519491231002X") == "1101**********002X"
    assert identity.mask_id("310104198503122174") == "3101**********2174"
    assert identity.mask_id("12345678") == "********"
    assert identity.mask_id("123456789") == "1234*6789"


def test_identity_mask_name():
    assert identity.mask_name("张伟") == "张*"
    assert identity.mask_name("李秀英") == "李**"
    assert identity.mask_name("欧阳娜娜") == "欧阳**"
    assert identity.mask_name("李") == "李"
    assert identity.mask_name("") == ""


def test_identity_query_password_is_last_8_with_final_x_as_0():
    assert identity.query_password("11010519491231002X") == "12310020"
    assert identity.query_password("440524188001010014") == "01010014"
    assert identity.query_password("310104198503122174") == "03122174"


def test_trace_hides_a_psam_cipher_data_pin_block():
    """80 FA (part 9 §9.8) carries the PIN block a terminal has a PSAM encrypt: hidden."""
    block = bytes.fromhex("0312345680") + bytes(11)
    line = trace.mask_command(bytes.fromhex("80FA000010") + block)
    assert line == "80 FA 00 00 10" + " **" * 16
    assert "12 34 56" not in line
    # the same bytes to a user card (CLA 00) are no PSAM command: shown
    assert "12 34 56" in trace.mask_command(bytes.fromhex("00FA000010") + block)


def test_a_psam_answer_to_cipher_data_is_hidden_with_its_get_responses():
    """The PSAM's encryption of a PIN block decrypts back to the PIN with the issuer key
    and the card's challenge: its data is hidden in traces, the status words shown."""
    responses = trace.Responses()
    cipher = bytes.fromhex("80FA000010") + bytes(16)
    assert responses.line(cipher, bytes.fromhex("6110")) == "< 61 10"
    hidden = responses.line(bytes.fromhex("00C0000010"), bytes(range(16)) + b"\x90\x00")
    assert hidden == "< " + "** " * 16 + "90 00"
    # the next command's answer is shown again
    shown = responses.line(bytes.fromhex("0084000008"), bytes(range(8)) + b"\x90\x00")
    assert shown == "< 00 01 02 03 04 05 06 07 90 00"

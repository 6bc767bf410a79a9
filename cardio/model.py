"""What the card application is, for both its sides: the emulated card and the host.

The host side (protocol, terminal rules) needs these names but not the emulator. Each
protocol name (CLA and INS bytes, file ids, SFIs, record tags, wire bytes of the card's
states, scheme and category codes) is written here once, and every other module uses
the name (docs/card.md §2 and §3). Status words live beside their families and their
meanings in `cardio.sw`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

SSSE_NAME = "sx1.sh.社会保障".encode("gbk")  # DF name of the social security application
# The medical-insurance application's AID (V2.0 notice §5.1 table 2: RID D1 56 00 00 05 + 03)
MEDICAL_AID = bytes.fromhex("D15600000503")
# Its application label in the same table, "社会保险信息区2", written in GBK (15 bytes;
# the directory entry's `50` holds 1-16 bytes, part 3 §6.3 table 3)
MEDICAL_LABEL = "社会保险信息区2".encode("gbk")
SPEC_VERSIONS = ("1.00", "2.00", "3.00")  # EF05 tag 03 (V2.0 §8.1.1.3)
DEFAULT_SPEC_VERSION = "2.00"  # 3.00's protected EF06 reads come with issue 12


class LifeCycle(StrEnum):
    NOT_ACTIVATED = "NOT_ACTIVATED"
    ACTIVE = "ACTIVE"


class PinState(StrEnum):
    INITIAL = "INITIAL"
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class Cla(IntEnum):
    """The class bytes the card answers; any other is 6E00."""

    ISO = 0x00
    PROPRIETARY = 0x80  # CHANGE PIN, GET DATA
    SECURE_MESSAGING = 0x84  # MAC-protected commands (part 4 §8.1: b4-b3 = 01)


class Ins(IntEnum):
    """The instruction bytes the card and its host side use, named once."""

    VERIFY = 0x20
    CHANGE_REFERENCE = 0x24  # the standard's PIN CHANGE/UNBLOCK (84 24)
    RESET_RETRY = 0x2C
    CHANGE_PIN = 0x5E  # 80 5E (part 5 §6.3)
    GET_CHALLENGE = 0x84
    OUTLET_ACTIVATE = 0x18  # 84 18 (ours): activation, under PIN CHANGE/UNBLOCK's rules
    APPLICATION_BLOCK = 0x1E  # 84 1E (part 5 §6.1)
    EXTERNAL_AUTHENTICATE = 0x82  # part 5 §6.4
    INTERNAL_AUTHENTICATE = 0x88  # part 5 §6.7
    SELECT = 0xA4
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    UPDATE_RECORD = 0xDC  # part 5 §6.13
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA


CHANGE_PIN = Ins.CHANGE_PIN  # with CLA 80: the holder's CHANGE PIN
PIN_INS = frozenset((Ins.VERIFY, Ins.CHANGE_REFERENCE, Ins.RESET_RETRY, Ins.CHANGE_PIN))

# GET DATA C1 (ours): the wire byte of each state, fixed here so that reordering the
# enums can never change what the card answers.
LIFE_CYCLE_BYTES: dict[LifeCycle, int] = {LifeCycle.NOT_ACTIVATED: 0x00, LifeCycle.ACTIVE: 0x01}
PIN_STATE_BYTES: dict[PinState, int] = {
    PinState.INITIAL: 0x00,
    PinState.ENABLED: 0x01,
    PinState.DISABLED: 0x02,
}
PIN_STATE_OF_BYTE = {byte: state for state, byte in PIN_STATE_BYTES.items()}

PIN_STATUS_TAG = 0xC1  # GET DATA 80 CA 00 C1 (ours): its P2, and the tag of its answer
PIN_STATUS_LENGTH = 4  # its value: life cycle, PIN state, tries left, try limit


class Fid(IntEnum):
    """File identifiers (docs/card.md §2). The SSSE has none: it is selected by name.

    EF05 names two files: the SSSE's card data, and the medical record under DF04.
    """

    MF = 0x3F00
    EF05 = 0xEF05
    EF06 = 0xEF06
    EF07 = 0xEF07  # the SSSE's fingerprint file (transparent)
    EF08 = 0xEF08  # the SSSE's photo file (transparent, 2.00 and later)
    DF04 = 0xDF04  # medical insurance


class Sfi(IntEnum):
    """Short file identifiers, READ RECORD's P2 b8-b4: `(SFI << 3) | mode` (`RecordMode`)."""

    EF05 = 0x05  # the SSSE's card data; under DF04, the basic medical-insurance data
    EF06 = 0x06  # the SSSE's holder data
    EF07 = 0x07
    EF08 = 0x08
    # The SSSE's directory file (part 3 §6.3: an SFI from 5 to 15, named in the SSSE's
    # FCI tag 88). 15, the end of the range: clear of EF05-EF08 and of files a later
    # notice would number after them.
    DIR = 0x0F


class RecordMode(IntEnum):
    """READ RECORD P2 b3-b1 (part 5 §6.10.2 table 32, part 3 §5.3)."""

    FIRST = 0b000  # first occurrence of identifier P1
    LAST = 0b001  # last occurrence
    NEXT = 0b010  # next occurrence after the record pointer
    PREVIOUS = 0b011  # previous occurrence
    NUMBER = 0b100  # record number P1 (00 = the current record)
    NUMBER_TO_LAST = 0b101  # records P1 .. last
    LAST_TO_NUMBER = 0b110  # records last .. P1


class SelectBy(IntEnum):
    """SELECT P1 (part 5 §6.11.2 table 35; 01 from ISO 7816-4)."""

    FID = 0x00  # MF or DF by file id; an EF of the current DF too (what terminals send)
    CHILD_DF = 0x01  # a DF under the current DF
    EF = 0x02  # an EF under the current DF
    NAME = 0x04  # a DF by DF name (AID)


class SelectResponse(IntEnum):
    """SELECT P2 (part 5 table 34; 0C from ISO 7816-4)."""

    FCI = 0x00  # first or only occurrence, FCI returned for a DF
    NEXT = 0x02  # next occurrence of a partial DF name
    NO_FCI = 0x0C


class Algorithm(IntEnum):
    """The algorithm identifier in the SSSE's FCI, `9F0C { 86 01 xx }` (reader API §10.1)."""

    DES = 0x01
    SSF33 = 0x02
    SM4 = 0x03


class Tag(IntEnum):
    """Record identifiers (tags) of the SSSE's EF05 (01-07) and EF06 (08-0D, 4E)."""

    IDENTIFICATION_CODE = 0x01  # 卡识别码: derives the card's MAC key
    CATEGORY = 0x02  # 卡类别 (`Category`)
    SPEC_VERSION = 0x03  # 规范版本
    ISSUER = 0x04  # 初始化机构编号
    ISSUE_DATE = 0x05  # 发卡日期
    EXPIRY_DATE = 0x06  # 卡有效期
    CARD_NUMBER = 0x07  # 卡号
    SSN = 0x08  # 社会保障号码
    NAME = 0x09  # 姓名
    NAME_EXTENSION = 0x4E  # 姓名扩展, 2.00 and later: the name's bytes past the 30th
    SEX = 0x0A  # 性别
    ETHNIC = 0x0B  # 民族
    BIRTHPLACE = 0x0C  # 出生地
    BIRTH_DATE = 0x0D  # 出生日期


class DirTag(IntEnum):
    """The directory file's entries (part 3 §6.3 tables 2 and 3): one application
    template per record, holding the application's AID and label."""

    APPLICATION = 0x61
    AID = 0x4F
    LABEL = 0x50


class MedicalTag(IntEnum):
    """Record tags of DF04's EF05 (V2.0 notice table 9, §8.5.1)."""

    SCHEME = 0x81  # an 8: scheme code (`Scheme`, 3 digits) and 5 flag characters '0'/'1'
    INSURED_REGION = 0x84  # cn 3: region code of the place insured


class Category(StrEnum):
    """The card category, EF05 tag 02: one ASCII character (the first contract's codes)."""

    SOCIAL_SECURITY = "1"  # a 社会保障卡
    OLD_MEDICAL = "L"  # a 旧医保卡, the city's old medical insurance card


class Scheme(StrEnum):
    """National insurance scheme codes, DF04/EF05 tag 81 characters 1-3: three ASCII digits.

    The ones the terminal knows by name; a card file may hold any three digits.
    """

    EMPLOYEE_MEDICAL = "310"  # 职工基本医疗保险
    RESIDENT_MEDICAL = "390"  # 城乡居民基本医疗保险
    RESIDENT_PENSION = "170"  # 城乡居民基本养老保险 (no medical scheme)


# The PSAM's (part 9 §9): named here, where the host side (cardio.keysource) and the
# virtual PSAM (cardio.psam) both find them.


class PsamCla(IntEnum):
    ISO = 0x00  # SELECT, READ BINARY, GET CHALLENGE, GET RESPONSE
    PROPRIETARY = 0x80  # CIPHER DATA
    ENVIRONMENT = 0xBF  # INITIALIZE ENVIRONMENT, DELIVERY SESSION KEY


class PsamIns(IntEnum):
    SELECT = 0xA4
    READ_BINARY = 0xB0
    GET_CHALLENGE = 0x84
    GET_RESPONSE = 0xC0
    INITIALIZE_ENVIRONMENT = 0xEC
    DELIVERY_SESSION_KEY = 0xDE
    CIPHER_DATA = 0xFA


class PsamFid(IntEnum):
    MF = 0x3F00
    ADF = 0xDF01
    INFO = 0x0015  # 卡片公共信息文件, part 9 §5.2
    TERMINAL = 0x0016  # 终端信息文件, part 9 §5.3
    SERIAL = 0x0019  # 终端交易序号文件, part 9 §5.4


class CipherOp(IntEnum):
    """CIPHER DATA's P1, part 9 §9.8.3 table 25."""

    ENCRYPT = 0x00  # no further block
    ENCRYPT_MORE = 0x02  # further blocks follow
    MAC = 0x05  # the only block: IV, then the data
    MAC_FIRST = 0x07  # IV, then the first blocks
    MAC_NEXT = 0x03
    MAC_LAST = 0x01

"""What the card application is, for both its sides: the emulated card and the host.

The host side (protocol, terminal rules) needs these names but not the emulator.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

SSSE_NAME = "sx1.sh.社会保障".encode("gbk")  # DF name of the social security application


class LifeCycle(StrEnum):
    NOT_ACTIVATED = "NOT_ACTIVATED"
    ACTIVE = "ACTIVE"


class PinState(StrEnum):
    INITIAL = "INITIAL"
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class Ins(IntEnum):
    """The instruction bytes the card and its host side use, named once."""

    VERIFY = 0x20
    CHANGE_REFERENCE = 0x24  # the standard's PIN CHANGE/UNBLOCK (84 24)
    RESET_RETRY = 0x2C
    OUTLET_PIN = 0x5E  # 80 5E CHANGE PIN; 84 5E the outlet's reset/restore/cancel (ours)
    GET_CHALLENGE = 0x84
    OUTLET_ACTIVATE = 0x18  # 84 18 (ours)
    SELECT = 0xA4
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA


CHANGE_PIN = Ins.OUTLET_PIN  # with CLA 80: the holder's CHANGE PIN
PIN_INS = frozenset((Ins.VERIFY, Ins.CHANGE_REFERENCE, Ins.RESET_RETRY, Ins.OUTLET_PIN))

# GET DATA C1 (ours): the wire byte of each state, fixed here so that reordering the
# enums can never change what the card answers.
LIFE_CYCLE_BYTES: dict[LifeCycle, int] = {LifeCycle.NOT_ACTIVATED: 0x00, LifeCycle.ACTIVE: 0x01}
PIN_STATE_BYTES: dict[PinState, int] = {PinState.INITIAL: 0x00, PinState.ENABLED: 0x01,
                                         PinState.DISABLED: 0x02}
PIN_STATE_OF_BYTE = {byte: state for state, byte in PIN_STATE_BYTES.items()}
